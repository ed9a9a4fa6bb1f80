"""Peak memory of training on a data set larger than the memory it is allowed: a memory-mapped .npy folder.

    python tools/data_memory.py [--gb 4] [--features 1024] [--dir DIR] [--keep]

Writes DIR/x.npy (float32 [N, features], `--gb` gigabytes, written block by block) and DIR/label.npy,
then runs `specc train` on an MLP (features -> 32 -> 10) for one epoch over that folder in a fresh process
and prints that process's peak resident set size (ru_maxrss) and wall time. The folder is deleted
afterwards unless --keep. Result: docs/benchmarks.md, "Data larger than memory"."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
specc: 1
name: big_mlp
inputs: {{x: [N, {f}], label: {{shape: [N], dtype: int64}}}}
layers:
  - {{op: linear, name: fc1, in: x, out_features: 32}}
  - {{op: relu, name: act}}
  - {{op: linear, name: fc2, out_features: 10}}
  - {{op: cross_entropy, name: loss, in: [fc2, label]}}
outputs: [fc2]
train:
  objective: loss
  optimizer: {{type: sgd, lr: 0.01}}
  batch_size: 512
  epochs: 1
  data: {{train: arrays}}
"""

CHILD = """\
import resource, sys, time
sys.path.insert(0, {root!r})
from cli.main import main
t0 = time.perf_counter()
code = main(["train", {spec!r}, "--out", {out!r}])
wall = time.perf_counter() - t0
print(f"RESULT code={{code}} maxrss_kb={{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}} wall={{wall:.1f}}")
"""


def generate(folder: Path, gb: float, features: int) -> int:
    """x.npy float32 [n, features] of about `gb` GiB and label.npy, written 64 MB at a time."""
    n = int(gb * (1 << 30)) // (features * 4)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    step = max(1, (64 << 20) // (features * 4))
    with open(folder / "x.npy", "wb") as f:           # plain writes: the generator stays small too
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, features)})
        for s in range(0, n, step):
            f.write(rng.standard_normal((min(step, n - s), features), dtype=np.float32).tobytes())
    np.save(folder / "label.npy", rng.integers(0, 10, n))
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=4.0, help="size of the float32 array in GiB (default 4)")
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the arrays (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated folder")
    args = ap.parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="specc-bigdata-"))
    try:
        t0 = time.perf_counter()
        n = generate(work / "arrays", args.gb, args.features)
        size = (work / "arrays" / "x.npy").stat().st_size
        print(f"wrote {work / 'arrays'}: x float32 [{n}, {args.features}] ({size / (1 << 30):.2f} GiB), "
              f"label int64 [{n}] in {time.perf_counter() - t0:.0f}s")
        (work / "big.yaml").write_text(SPEC.format(f=args.features))
        code = textwrap.dedent(CHILD).format(root=str(ROOT), spec=str(work / "big.yaml"), out=str(work / "run"))
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return 1
        fields = dict(kv.split("=") for kv in line.split()[1:])
        rss = int(fields["maxrss_kb"]) / 1024
        print(f"one epoch of specc train over {size / (1 << 30):.2f} GiB: peak RSS {rss:.0f} MiB "
              f"({rss / (size / (1 << 20)) * 100:.1f}% of the data), {fields['wall']} s")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
