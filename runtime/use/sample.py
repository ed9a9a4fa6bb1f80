"""`specc sample` and `specc interpolate`: a VAE's decoder or a GAN's generator fed with latent codes.

    specc sample SPEC --weights CKPT [--n 16] [--class K] [--seed S] [--latent NAME] [--output NAME] -o OUT.png
    specc interpolate SPEC --weights CKPT --input NAME=a.npy --input2 NAME=b.npy [--steps 8] -o OUT.png

The latent code is `--latent` (a node or an input), by default the spec's only `train.noise` input (a GAN's
noise) or its only `reparameterize` node (a VAE's z). `sample` draws codes from N(0, I) and decodes them;
`interpolate` encodes two inputs (in eval mode a VAE's z is its mean; a GAN's noise input is its own code),
then decodes the codes on the straight line between them. The picture is the first output that depends
on the code (`--output` picks another); a class-conditional generator (an int64 label input, or a float
one-hot [N, C] input besides the code) gets `--class K`, or every class in turn (one column per class).
OUT.png is a grid; OUT.npz beside it holds the arrays (outputs, codes, labels).
"""
from __future__ import annotations

import math
import sys

import numpy as np

from compiler.errors import UserError

from .common import beside, save_npz
from .plots import to_images, write_grid
from .runner import Key, Runner


def latent_key(r: Runner, name: str | None) -> Key:
    g = r.graph
    if name:
        return r.key(name)
    noise = list(g.train.noise) if g.train is not None else []
    reparam = [n.name for n in g.nodes if n.op == "reparameterize"]
    if len(noise) == 1 and not reparam:
        return (noise[0], None)
    if len(reparam) == 1 and not noise:
        return (reparam[0], None)
    raise UserError(f"which node or input of '{g.name}' holds the latent code?",
                    hint="pass --latent NAME (a node such as a bottleneck layer, or a noise input)", code=2)


def output_key(r: Runner, latent: Key, name: str | None) -> Key:
    if name:
        key = r.key(name)
        if latent[0] not in r.upstream(key):
            raise UserError(f"output '{name}' does not depend on the latent code '{latent[0]}'", code=2)
        return key
    for out in r.graph.output_refs:
        key = r.key(out)
        if latent[0] in r.upstream(key) and key != latent and r.type_of(key).dtype == "float32":
            return key
    raise UserError(f"no output of '{r.graph.name}' depends on the latent code '{latent[0]}'",
                    hint="pass --output NODE (the decoder's or generator's last layer)", code=2)


def conditions(r: Runner, latent: Key, out: Key) -> list[str]:
    """Inputs besides the code that the decoder reads (a cGAN's class label)."""
    return [k for k in r.graph.inputs if k in r.upstream(out, frozenset([latent])) and k != latent[0]]


def num_classes(r: Runner, name: str) -> int | None:
    t = r.graph.inputs[name]
    if t.dtype == "float32" and t.rank == 2 and isinstance(t.shape[1], int):
        return t.shape[1]
    for n in r.graph.nodes:
        if n.inputs and n.inputs[0] is not None and n.inputs[0].node == name:
            for attr in ("num_embeddings", "num_classes"):
                if hasattr(n.attrs, attr):
                    return int(getattr(n.attrs, attr))
    return None


def labels_for(r: Runner, conds: list[str], n: int, cls: int | None) -> tuple[dict[str, np.ndarray], np.ndarray | None, int]:
    """The condition inputs for n samples, the class of each, and the columns of the grid."""
    if not conds:
        if cls is not None:
            raise UserError("--class applies to a class-conditional generator; this one reads only its code",
                            code=2)
        return {}, None, max(1, math.isqrt(n - 1) + 1) if n > 1 else 1
    if len(conds) > 1:
        raise UserError(f"the generator reads inputs {', '.join(conds)} besides its code; specc sample fills "
                        "one class-label input", code=2)
    name = conds[0]
    c = num_classes(r, name)
    if cls is None and c is None:
        raise UserError(f"the generator reads '{name}': pass --class K", code=2)
    if cls is not None and c is not None and not 0 <= cls < c:
        raise UserError(f"--class {cls} is out of range: '{name}' has {c} classes (0 to {c - 1})", code=2)
    labels = np.full(n, cls) if cls is not None else np.arange(n) % c
    t = r.graph.inputs[name]
    arr = np.eye(c, dtype=np.float32)[labels] if t.dtype == "float32" else labels.astype(np.int64)
    return {name: arr}, labels, (c if cls is None else max(1, math.isqrt(n - 1) + 1))


def latent_shape(r: Runner, latent: Key, n: int) -> tuple[int, ...]:
    t = r.type_of(latent)
    rest = t.shape[1:]
    if not t.rank or not all(isinstance(d, int) for d in rest):
        raise UserError(f"the latent code '{latent[0]}' has shape {t}; sampling needs fixed sizes after the "
                        "batch dimension", code=2)
    return (n, *rest)


def decode(r: Runner, latent: Key, out: Key, z: np.ndarray, conds: dict[str, np.ndarray]) -> np.ndarray:
    return r.run([out], conds, {latent: z.astype(np.float32)})[out]


def write_outputs(path: str, images: np.ndarray, cols: int, arrays: dict[str, np.ndarray]) -> None:
    npz = beside(path, ".npz")
    save_npz(npz, arrays)
    pics = to_images(images)
    if pics is None:
        print(f"note: the output has shape {list(images.shape)}, which is not a picture; wrote {npz} only",
              file=sys.stderr)
        return
    write_grid(path, pics, cols)
    print(f"wrote {path} ({len(pics)} images) and {npz}")


def encode(r: Runner, latent: Key, given: dict[str, np.ndarray]) -> np.ndarray:
    if latent[0] in r.graph.inputs and latent[0] in given:
        return np.asarray(given[latent[0]], dtype=np.float32)
    return r.run([latent], given)[latent]
