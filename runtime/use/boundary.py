"""`specc boundary`: the decision regions of a classifier of 2-D points, with the data on top.

    specc boundary SPEC --weights CKPT [--data SRC] [--resolution 200] -o OUT.png

The model's class (argmax of the scores; for one score, score > 0 or > 0.5 after a sigmoid) on a grid
over the data's range plus a margin; OUT.npz beside the picture holds the grid (xx, yy, classes) and the
points. The input must be [N, 2]; the data is `--data`, else the spec's test set, else its training data.
"""
from __future__ import annotations

import numpy as np

from ..model import Model


def classes_of(scores: np.ndarray, sigmoid_output: bool) -> np.ndarray:
    if scores.ndim == 2 and scores.shape[1] > 1:
        return scores.argmax(1)
    s = scores.reshape(len(scores))
    return (s > (0.5 if sigmoid_output else 0.0)).astype(np.int64)


def sigmoid_output(model: Model, output: str) -> bool:
    node = model.resolve(output).node
    return model.graph.has_node(node) and model.graph.node(node).op in ("sigmoid", "step")


def predict(model: Model, name: str, output: str, x: np.ndarray) -> np.ndarray:
    sig = sigmoid_output(model, output)
    return np.concatenate([classes_of(model(outputs=[output], **{name: x[s:s + 4096]})[output], sig)
                           for s in range(0, len(x), 4096)])


def region_grid(model: Model, name: str, output: str, points: np.ndarray,
                resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = points.min(0), points.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    xx, yy = np.meshgrid(xs, ys)
    flat = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    return xx, yy, predict(model, name, output, flat).reshape(xx.shape)
