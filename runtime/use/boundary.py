"""`specc boundary`: the decision regions of a classifier of 2-D points, with the data on top.

    specc boundary SPEC --weights CKPT [--data SRC] [--resolution 200] -o OUT.png

The model's class (argmax of the scores; for one score, score > 0 or > 0.5 after a sigmoid) on a grid
over the data's range plus a margin; OUT.npz beside the picture holds the grid (xx, yy, classes) and the
points. The input must be [N, 2]; the data is `--data`, else the spec's test set, else its training data.
"""
from __future__ import annotations

import argparse

import numpy as np

from compiler.errors import UserError

from ..model import Model
from .common import beside, classifier, guard_picture, image_input, load_data, load_model, save_npz
from .plots import figure


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


def cmd_boundary(args: argparse.Namespace) -> int:
    guard_picture(args.out, ".npz", (args.spec, args.weights, args.data))
    model = load_model(args.spec, args.weights, args.set)
    output, label = classifier(model, args.output)
    name = image_input(model, args.input_name)
    t = model.graph.inputs[name]
    if t.rank != 2 or t.shape[1] != 2:
        raise UserError(f"input '{name}' is {t}; a decision-boundary plot needs 2-D points [N, 2]", code=2)
    ds = load_data(model, args.spec, args.data, [name] + ([label] if label else []))
    points = ds.arrays[name]
    xx, yy, cls = region_grid(model, name, output, points, args.resolution)
    labels = ds.arrays.get(label) if label else None
    if labels is not None and labels.ndim == 2 and labels.shape[1] == 1:    # a [N, 1] 0/1 target (bce)
        labels = labels[:, 0].round().astype(np.int64)
    npz = beside(args.out, ".npz")
    save_npz(npz, {"xx": xx, "yy": yy, "classes": cls, "points": points,
                   **({"labels": labels} if labels is not None else {})})
    if labels is not None:
        pred = predict(model, name, output, points.astype(np.float32))
        print(f"accuracy on {ds.source} ({len(points)} points): {float((pred == labels).mean()):.4f}")

    def draw(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        k = int(max(cls.max(), labels.max() if labels is not None else 0)) + 1
        ax.contourf(xx, yy, cls, levels=np.arange(k + 1) - 0.5, cmap="coolwarm" if k <= 2 else "tab10", alpha=0.35)
        ax.scatter(points[:, 0], points[:, 1], c=labels if labels is not None else "k", s=12,
                   cmap="coolwarm" if k <= 2 else "tab10", vmin=0, vmax=max(k - 1, 1), edgecolors="k", linewidths=0.3)
        ax.set_title(f"{model.graph.name}: decision regions")

    if figure(args.out, npz, draw, size=(5, 4.5)):
        print(f"wrote {args.out} and {npz}")
    return 0
