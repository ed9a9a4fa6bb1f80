"""Write scikit-learn's handwritten digits as specc data sets: data/digits_train.npz and data/digits_test.npz.

    python tools/digits.py [--out DIR]

The digits ship inside the scikit-learn package (1,797 8×8 grey images, no download). Arrays: `image`
float32 [n, 1, 8, 8] scaled to [0, 1] and `label` int64 [n]; the test file is a fixed, stratified 20%
(seed 0). The partition is the one the built-in source `builtin:digits` gives (runtime.data.digits), so

    train: {data: {train: data/digits_train.npz, test: data/digits_test.npz}}

and

    train: {data: {train: "builtin:digits", test: "builtin:digits"}}

train and test on the same images. Paths in a spec are relative to the spec file's folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from compiler.errors import UserError  # noqa: E402
from compiler.files import atomic_write  # noqa: E402
from runtime.data import digits  # noqa: E402


def write(out_dir: str | Path = "data") -> list[Path]:
    """Write digits_train.npz and digits_test.npz into out_dir; returns their paths."""
    out = Path(out_dir)
    paths = []
    for part in ("train", "test"):
        arrays = digits(part)
        path = out / f"digits_{part}.npz"

        def save(tmp: str, arrays=arrays) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)

        atomic_write(path, save, make_parents=True)    # folder errors: a message, no traceback
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="data", help="folder to write into (default: data)")
    args = p.parse_args(argv)
    try:
        paths = write(args.out)
    except UserError as e:
        print(e.render(), file=sys.stderr)
        return 1
    for path in paths:
        with np.load(path) as z:
            print(f"wrote {path}: image {list(z['image'].shape)} float32, label {list(z['label'].shape)} int64")
    return 0


if __name__ == "__main__":
    sys.exit(main())
