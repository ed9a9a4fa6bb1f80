"""`specc saliency`: which pixels a class score is most sensitive to (Simonyan et al. 2013).

    specc saliency SPEC --weights CKPT --input image=x.npy [--class K] [--output NAME] -o OUT.png

The gradient of the class score (the logit, before any softmax) with respect to the input, its absolute
value, and the maximum over the channels: one map per image, [N, H, W]. The class is `--class`, by
default the predicted one. OUT.png shows each map over its image; OUT.npy beside it holds the maps.
"""
from __future__ import annotations

import argparse

import numpy as np

from compiler.errors import UserError

from ..model import Model
from ..tensor import Tensor
from .common import (beside, check_inputs, classifier, guard_picture, image_input, input_files, load_model, parse_values,
                     save_npy)
from .plots import figure, heat_maps, to_images


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


def cmd_saliency(args: argparse.Namespace) -> int:
    guard_picture(args.out, ".npy", (args.spec, args.weights, *input_files(args.input)))
    model = load_model(args.spec, args.weights, args.set)
    inputs = parse_values(args.input)
    check_inputs(model, inputs)
    if not inputs:
        raise UserError("no input given: --input NAME=FILE.npy", code=2)
    output, _ = classifier(model, args.output)
    name = image_input(model, args.input_name)
    if name not in inputs:
        raise UserError(f"missing input '{name}'", hint=f"pass --input {name}=FILE.npy", code=2)
    maps, classes = saliency(model, inputs, name, output, args.cls)
    npy = beside(args.out, ".npy")
    save_npy(npy, maps)
    for i, c in enumerate(classes[:16]):
        at = tuple(int(j) for j in np.unravel_index(maps[i].argmax(), maps[i].shape))
        print(f"{i}: class {int(c)}, saliency max {maps[i].max():.4g} at {at}")
    shown = min(len(maps), 8)
    heats = maps[:shown] if maps.ndim == 3 else None
    if heats is None:
        print(f"note: the input is not an image ({list(inputs[name].shape)}); wrote {npy} only")
        return 0
    images = to_images(inputs[name][:shown])
    if figure(args.out, npy, heat_maps(images, heats, [f"class {c}" for c in classes[:shown]]),
              size=(1.8 * shown + 1, 4.0)):
        print(f"wrote {args.out} and {npy}")
    return 0
