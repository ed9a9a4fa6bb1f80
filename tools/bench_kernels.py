"""Per-op CPU time of batch_norm (training), max_pool2d, relu, add and linear: specc's kernels now, the
same kernels as on a git ref (default `main`), and PyTorch, forward and backward at the conv nets' shapes.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python tools/bench_kernels.py [--ref main] [--repeats 15] [--write]

Prints the markdown table of docs/benchmarks.md "Batch norm, pooling, activations". Times are CPU
time (time.process_time) of the calling process on one thread, so that other processes on a shared
machine change them little; old, new and torch run interleaved in one process and each cell is the
median of the repeats. The reference kernels are `git show REF:runtime/kernels/<file>.py` loaded as a
sibling module of runtime.kernels (their @kernel registrations go to a throwaway table).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler import ops  # noqa: E402
from runtime import kernels  # noqa: E402
from runtime.kernels import registry  # noqa: E402

# (label, op, attrs, input shape): the VGG (small, BN) and ResNet-18 training shapes of the profile
CASES = [
    ("VGG bn 32×64×32×32", "batch_norm", {}, (32, 64, 32, 32)),
    ("VGG bn 32×256×8×8", "batch_norm", {}, (32, 256, 8, 8)),
    ("R18 bn 8×64×112×112", "batch_norm", {}, (8, 64, 112, 112)),
    ("R18 bn 8×64×56×56", "batch_norm", {}, (8, 64, 56, 56)),
    ("R18 bn 8×256×14×14", "batch_norm", {}, (8, 256, 14, 14)),
    ("VGG pool 2/2 32×64×32×32", "max_pool2d", {"kernel_size": 2}, (32, 64, 32, 32)),
    ("VGG pool 2/2 32×256×8×8", "max_pool2d", {"kernel_size": 2}, (32, 256, 8, 8)),
    ("R18 pool 3/2 p1 8×64×112×112", "max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1},
     (8, 64, 112, 112)),
    ("VGG relu 32×64×32×32", "relu", {}, (32, 64, 32, 32)),
    ("R18 relu 8×64×112×112", "relu", {}, (8, 64, 112, 112)),
    ("R18 add 8×64×56×56", "add", {}, (8, 64, 56, 56)),
    ("LeNet linear 64×400→120", "linear", {"out_features": 120}, (64, 400)),
]

FILES = {"batch_norm": "normalisation", "max_pool2d": "convolution", "relu": "activation",
         "add": "tensor", "linear": "dense"}


def load_ref(ref: str, name: str):
    """runtime/kernels/<name>.py as on git ref `ref`, as a module; None if it cannot be read."""
    try:
        src = subprocess.run(["git", "show", f"{ref}:runtime/kernels/{name}.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"runtime.kernels._ref_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    saved, registry.KERNELS = registry.KERNELS, {}
    try:
        spec.loader.exec_module(mod)
        table = registry.KERNELS
    except Exception as e:                              # noqa: BLE001 - e.g. it imports a module this tree lacks
        print(f"  {ref}:runtime/kernels/{name}.py does not load in this tree ({e}): its column is left empty",
              file=sys.stderr)
        return None
    finally:
        registry.KERNELS = saved
    return table


def specc_step(fn, op: str, attrs: dict, x: np.ndarray, params: list, gy: np.ndarray, training: bool):
    """(forward s, backward s) of one call of kernel fn, CPU time."""
    a = ops.OPS[op].attrs.model_validate(attrs)
    args = [x] + ([x.copy()] if op == "add" else []) + [p.copy() for p in params]
    ctx = kernels.Ctx(a, training=training, needs=tuple(np.asarray(v).dtype.kind == "f" for v in args))
    t0 = time.process_time()
    y, bwd = fn(ctx, *args)
    t1 = time.process_time()
    bwd(gy)
    t2 = time.process_time()
    return t1 - t0, t2 - t1


def torch_step(op: str, attrs: dict, x: np.ndarray, params: list, gy: np.ndarray):
    import torch
    import torch.nn.functional as F
    xt = torch.from_numpy(x.copy()).requires_grad_()
    g = torch.from_numpy(gy)
    if op == "batch_norm":
        w, b = (torch.from_numpy(p.copy()).requires_grad_() for p in params[:2])
        rm, rv = (torch.from_numpy(p.copy()) for p in params[2:4])
        f = lambda: F.batch_norm(xt, rm, rv, w, b, training=True)  # noqa: E731
    elif op == "max_pool2d":
        f = lambda: F.max_pool2d(xt, attrs["kernel_size"], attrs.get("stride"), attrs.get("padding", 0))  # noqa: E731
    elif op == "relu":
        f = lambda: F.relu(xt)  # noqa: E731
    elif op == "add":
        x2 = torch.from_numpy(x.copy()).requires_grad_()
        f = lambda: xt + x2  # noqa: E731
    else:
        w, b = (torch.from_numpy(p.copy()).requires_grad_() for p in params)
        f = lambda: F.linear(xt, w, b)  # noqa: E731
    t0 = time.process_time()
    y = f()
    t1 = time.process_time()
    y.backward(g)
    t2 = time.process_time()
    return t1 - t0, t2 - t1


def measure(repeats: int, ref: str, with_torch: bool) -> list[tuple]:
    from tests.opcheck import make_params
    refs = {op: load_ref(ref, f) for op, f in FILES.items()}
    if with_torch:
        import torch
        torch.set_num_threads(1)
    rows = []
    for label, op, attrs, shape in CASES:
        r = np.random.default_rng(0)
        x = r.standard_normal(shape).astype(np.float32)
        params = make_params(op, attrs, [x] * (2 if op == "add" else 1), dtype=np.float32)
        params = [p.astype(np.float32) if p.dtype == np.float64 else p for p in params]
        fn = kernels.KERNELS[op]
        old = refs[op][op] if refs[op] else None
        a = ops.OPS[op].attrs.model_validate(attrs)
        y, _ = fn(kernels.Ctx(a, training=True), *([x] + ([x] if op == "add" else []) + [p.copy() for p in params]))
        gy = r.standard_normal(y.shape).astype(np.float32)
        times = {"new": [], "old": [], "torch": []}
        for f in (fn, old):                             # warm up: first calls page in code and buffers
            if f is not None:
                specc_step(f, op, attrs, x, params, gy, True)
        if with_torch:
            torch_step(op, attrs, x, params, gy)
        for i in range(repeats):
            order = [("new", fn), ("old", old)] if old is not None else [("new", fn)]
            for key, f in (order if i % 2 else order[::-1]):       # alternate which runs first
                times[key].append(specc_step(f, op, attrs, x, params, gy, True))
            if with_torch:
                times["torch"].append(torch_step(op, attrs, x, params, gy))
        med = {k: np.median(np.array(v), axis=0) * 1e3 if v else (np.nan, np.nan) for k, v in times.items()}
        rows.append((label, med["old"], med["new"], med["torch"]))
        print(f"  {label}: old {med['old']}, new {med['new']}, torch {med['torch']}", file=sys.stderr)
    return rows


def table(rows: list[tuple], ref: str) -> str:
    def f(v: float) -> str:
        return "–" if np.isnan(v) else f"{v:.2f}"
    out = [f"| op, shape (float32) | {ref} fwd | now fwd | torch fwd | {ref} bwd | now bwd | torch bwd "
           f"| now / {ref} (fwd+bwd) | now / torch |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, old, new, tch in rows:
        so, sn, st = sum(old), sum(new), sum(tch)
        out.append(f"| {label} | {f(old[0])} | {f(new[0])} | {f(tch[0])} | {f(old[1])} | {f(new[1])} "
                   f"| {f(tch[1])} | {f(sn / so) if so else '–'} | {f(sn / st) if st else '–'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", default="main",
                   help="git ref of the kernels to compare with, e.g. a branch point (default: main)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--only", help="run only the rows whose op name contains this")
    p.add_argument("--write", action="store_true", help="update the table in docs/benchmarks.md")
    args = p.parse_args(argv)
    if args.only:
        CASES[:] = [c for c in CASES if args.only in c[1]]
    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    rows = measure(args.repeats, args.ref, with_torch)
    text = (f"{start}, load average {load0:.1f} → {os.getloadavg()[0]:.1f}, median of {args.repeats}, "
            f"CPU ms, 1 thread, numpy {np.__version__}\n\n{table(rows, args.ref)}")
    print(text)
    if args.write:
        write_doc(text)
    return 0


def write_doc(text: str) -> None:
    """Replace the table between the bench-kernels markers of docs/benchmarks.md."""
    doc = ROOT / "docs" / "benchmarks.md"
    s = doc.read_text()
    begin, end = "<!-- bench-kernels:begin -->", "<!-- bench-kernels:end -->"
    i, j = s.find(begin), s.find(end)
    if i < 0 or j < i:
        raise SystemExit(f"{doc}: no {begin} … {end} section to update")
    doc.write_text(s[:i + len(begin)] + "\n" + text + "\n" + s[j:])


if __name__ == "__main__":
    sys.exit(main())
