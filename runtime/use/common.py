"""What the `specc generate/sample/saliency/attack/...` commands share: loading a trained model, reading
`--input` values, finding a classifier's logits and labels, loading `--data`, naming output files."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import UserError, did_you_mean

from ..model import Model

TOKENS_RE = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")


def load_model(spec: str, weights: str, sets: list[str] | None = None) -> Model:
    """The spec's model with the checkpoint's weights, in eval mode (dropout off, batch-norm running stats)."""
    from compiler.overrides import load_graph

    from ..checkpoint import load, warn_nonfinite
    graph = load_graph(spec, sets)
    if not Path(weights).is_file():
        raise UserError(f"checkpoint '{weights}' not found", hint="train first: specc train SPEC (best.npz)")
    model = Model(graph, seed=0)
    meta = load(model, weights)
    warn_nonfinite(model.state_dict(), weights)
    if meta.get("spec_hash") and meta["spec_hash"] != graph.spec_hash:
        print(f"warning: '{weights}' was made from a different version of this spec (or other --set params); "
              "its weights fit, but results may differ", file=sys.stderr)
    return model.eval()


def parse_values(items: list[str] | None) -> dict[str, np.ndarray]:
    """--input NAME=FILE.npy (or .npz) as `specc run` reads it, plus NAME=1,5,7: one sequence of token ids."""
    from ..inference import parse_inputs
    tokens: dict[str, np.ndarray] = {}
    files: list[str] = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if sep and TOKENS_RE.match(value) and not Path(value.strip()).exists():
            if name.strip() in tokens:
                raise UserError(f"input '{name.strip()}' is given twice", code=2)
            tokens[name.strip()] = np.array([[int(v) for v in value.split(",")]], dtype=np.int64)
        else:
            files.append(item)
    arrays, _ = parse_inputs(files)
    for k in tokens:
        if k in arrays:
            raise UserError(f"input '{k}' is given twice", code=2)
    return {**arrays, **tokens}


def input_files(items: list[str] | None) -> tuple[str, ...]:
    """The files named by --input items (so that -o never replaces one of them)."""
    out = []
    for item in items or []:
        _, sep, value = item.partition("=")
        out.append(value.strip() if sep else item)
    return tuple(out)


def check_inputs(model: Model, given: dict[str, np.ndarray], allowed: list[str] | None = None) -> None:
    names = allowed if allowed is not None else list(model.graph.inputs)
    for k in given:
        if k not in names:
            raise UserError(f"unknown input '{k}'", hint=did_you_mean(k, names) or
                            f"this command reads: {', '.join(names) or 'no inputs'}", code=2)


def classifier(model: Model, output: str | None = None) -> tuple[str, str | None]:
    """(logits ref, label input or None): `--output`, else train.predict, else the first output; the label
    is train.target or the int64 [N] input that a cross_entropy/nll_loss compares with the logits."""
    g = model.graph
    cfg = g.train
    ref = output or (cfg.predict if cfg is not None and cfg.predict else None) or next(iter(g.output_refs), None)
    if ref is None:
        raise UserError(f"'{g.name}' has no outputs to read class scores from", hint="pass --output NODE")
    model.resolve(ref)          # a clear error for an unknown name; a block instance (VGG's classifier) is known
    label = cfg.target if cfg is not None and cfg.target in g.inputs else None
    if label is None:
        for n in g.nodes:
            if n.op in ("cross_entropy", "nll_loss") and n.inputs[1] is not None and n.inputs[1].node in g.inputs:
                label = n.inputs[1].node
                break
    return ref, label


def image_input(model: Model, name: str | None = None) -> str:
    """The float input a picture or a gradient is taken of: `name`, or the spec's only float input."""
    g = model.graph
    floats = [k for k, t in g.inputs.items() if t.dtype == "float32"]
    if name is not None:
        if name not in g.inputs:
            raise UserError(f"unknown input '{name}'", hint=did_you_mean(name, list(g.inputs)), code=2)
        return name
    if len(floats) != 1:
        raise UserError(f"'{g.name}' has {len(floats)} float inputs ({', '.join(floats)}); say which one",
                        hint="pass --input-name NAME", code=2)
    return floats[0]


def load_data(model: Model, spec: str, data: str | None, needed: list[str]):
    """--data SRC (as `specc eval` reads it), else the spec's test set, else its training data."""
    from .. import data as D
    g = model.graph
    if data is not None:
        return D.load(g, data, needed, role="test")
    if g.train is not None:
        for want in ("test", "train"):
            splits = D.load_splits(g, g.train.data, Path(spec).parent, needed, seed=g.train.seed, want=(want,))
            ds = getattr(splits, want)
            if ds is not None:
                return ds
    raise UserError("no data: give --data PATH.npz" + (" (or builtin:digits)" if D.digits_fit(g, needed) is None
                                                       else "") + ", or train.data in the spec", code=2)


def beside(path: str | Path, suffix: str) -> Path:
    """The file written next to an output picture: OUT.png -> OUT.npz / OUT.npy."""
    return Path(path).with_suffix(suffix)


def guard(path: str, suffix: str, reads: tuple = ()) -> None:
    from compiler.files import guard_output
    guard_output(path, suffix, reads)


def guard_picture(path: str, side: str, reads: tuple = ()) -> Path:
    """Check -o OUT.png and the arrays file written beside it (OUT.npz / OUT.npy); returns the latter."""
    from compiler.files import same_file
    guard(path, ".png", reads)
    arrays = beside(path, side)
    for f in reads:
        if f and same_file(arrays, f):
            raise UserError(f"-o '{path}' would write its arrays to '{arrays}', which is one of the command's "
                            "input files; refusing to overwrite it", hint="choose another -o name", code=2)
    guard(str(arrays), side, ())
    return arrays


def save_npz(path: str | Path, arrays: dict[str, Any]) -> None:
    from compiler.files import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})

    atomic_write(path, write)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    from compiler.files import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array))

    atomic_write(path, write)


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
