"""`specc saliency`: which pixels a class score is most sensitive to (Simonyan et al. 2013).

    specc saliency SPEC --weights CKPT --input image=x.npy [--class K] [--output NAME] -o OUT.png

The gradient of the class score (the logit, before any softmax) with respect to the input, its absolute
value, and the maximum over the channels: one map per image, [N, H, W]. The class is `--class`, by
default the predicted one. OUT.png shows each map over its image; OUT.npy beside it holds the maps.
"""
from __future__ import annotations

import numpy as np

from compiler.errors import UserError

from ..model import Model
from ..tensor import Tensor


def input_gradient(model: Model, inputs: dict[str, np.ndarray], name: str, output: str,
                   weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores [N, C], d(Σ weights·scores)/d input) with the model as it is (eval mode for a trained one)."""
    x = Tensor(np.asarray(inputs[name], dtype=np.float32), requires_grad=True)
    out = model.forward(outputs=[output], **{**inputs, name: x})[output]
    scores = out.data.copy()
    out.backward(weights.astype(scores.dtype))
    if x.grad is None:
        raise UserError(f"output '{output}' does not depend on input '{name}'", code=2)
    return scores, x.grad


def saliency(model: Model, inputs: dict[str, np.ndarray], name: str, output: str,
             cls: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps: max over channels of |d score_class / d input|, the classes used)."""
    scores = model(outputs=[output], **inputs)[output]
    if scores.ndim != 2:
        raise UserError(f"'{output}' has shape {list(scores.shape)}; saliency needs class scores [N, C]",
                        hint="pass --output NODE naming the classifier's logits", code=2)
    if cls is not None and not 0 <= cls < scores.shape[1]:
        raise UserError(f"--class {cls} is out of range: '{output}' has {scores.shape[1]} classes", code=2)
    classes = np.full(len(scores), cls) if cls is not None else scores.argmax(1)
    onehot = np.eye(scores.shape[1])[classes]
    _, grad = input_gradient(model, inputs, name, output, onehot)
    g = np.abs(grad)
    maps = g.max(axis=1) if g.ndim == 4 else g
    return maps, classes
