"""Convolution kernels side by side: NumPy's im2col, MLAS (runtime/mlas_conv.py) and PyTorch, per layer.

    python tools/bench_mlas.py                    # every layer shape, 2 threads, median of 15
    python tools/bench_mlas.py --threads 1 --only vgg_bn,resnet18
    python tools/bench_mlas.py --steps lenet5,vgg_bn     # whole training steps of tools/bench.py's models

For each layer of the benchmark models (tools/bench_models.py) it times the conv kernel's forward pass
alone and forward + backward as a training step runs it (a first layer computes no input gradient),
with SPECC_CONV_KERNEL=numpy (im2col + OpenBLAS, shifted views where they apply) and with the default
dispatch (MLAS where it applies), beside torch.nn.functional's forward and autograd backward. Wall time
at --threads threads for all three (BLAS, onnxruntime, torch), interleaved in every repeat (the order
alternates), medians; before each NumPy run the one-thread hold on OpenBLAS that follows an onnxruntime
kernel is lifted (see _select). Printed as Markdown tables for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

_THREADS = "2"
for _i, _a in enumerate(sys.argv):                  # BLAS reads its thread count when NumPy loads
    if _a == "--threads" and _i + 1 < len(sys.argv):
        _THREADS = sys.argv[_i + 1]
    elif _a.startswith("--threads="):
        _THREADS = _a.split("=", 1)[1]
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = _THREADS
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from compiler.ops import OPS  # noqa: E402
from runtime import kernels  # noqa: E402

# (model, layer, op, input [N, C, H, W], out channels, kernel, stride, padding, first layer)
SHAPES = [
    ("lenet5", "conv2d_1", "conv2d", (64, 1, 28, 28), 6, 5, 1, 2, True),
    ("lenet5", "conv2d_2", "conv2d", (64, 6, 14, 14), 16, 5, 1, 0, False),
    ("vgg_bn", "stage1.conv.0", "conv2d", (32, 3, 32, 32), 32, 3, 1, 1, True),
    ("vgg_bn", "stage1.conv.1", "conv2d", (32, 32, 32, 32), 32, 3, 1, 1, False),
    ("vgg_bn", "stage2.conv.1", "conv2d", (32, 64, 16, 16), 64, 3, 1, 1, False),
    ("vgg_bn", "stage3.conv.1", "conv2d", (32, 128, 8, 8), 128, 3, 1, 1, False),
    ("resnet18", "conv1 (7×7/2)", "conv2d", (8, 3, 224, 224), 64, 7, 2, 3, True),
    ("resnet18", "layer1 3×3", "conv2d", (8, 64, 56, 56), 64, 3, 1, 1, False),
    ("resnet18", "layer2.0.conv1 (3×3/2)", "conv2d", (8, 64, 56, 56), 128, 3, 2, 1, False),
    ("resnet18", "layer3 3×3", "conv2d", (8, 256, 14, 14), 256, 3, 1, 1, False),
    ("resnet18", "layer4 3×3", "conv2d", (8, 512, 7, 7), 512, 3, 1, 1, False),
    ("conv_autoencoder", "enc2 (3×3/2)", "conv2d", (32, 16, 14, 14), 32, 3, 2, 1, False),
    ("conv_autoencoder", "dec1 (transposed, /2)", "conv_transpose2d", (32, 32, 7, 7), 16, 3, 2, 1, False),
]


def _specc(op, x, w, b, attrs, first):
    a = OPS[op].attrs.model_validate(attrs)
    train = kernels.Ctx(a, True, needs=(not first, True, True))
    infer = kernels.Ctx(a, False, needs=(False, False, False))
    gy = np.random.default_rng(1).standard_normal(kernels.KERNELS[op](infer, x, w, b)[0].shape).astype(np.float32)

    def forward():
        kernels.KERNELS[op](infer, x, w, b)

    def step():
        _, back = kernels.KERNELS[op](train, x, w, b)
        back(gy)
    return forward, step


def _torch(op, x, w, b, stride, pad, out_pad, first, threads: int):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    xt = torch.from_numpy(x).requires_grad_(not first)
    wt, bt = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
    extra = {"output_padding": out_pad} if op == "conv_transpose2d" else {}
    fn = F.conv2d if op == "conv2d" else F.conv_transpose2d

    def forward():
        with torch.inference_mode():
            fn(xt.detach(), wt.detach(), bt.detach(), stride=stride, padding=pad, **extra)

    def step():
        y = fn(xt, wt, bt, stride=stride, padding=pad, **extra)
        y.backward(torch.ones_like(y))
    return forward, step


def _select(name: str) -> None:
    """SPECC_CONV_KERNEL for the next run; before a NumPy run the hold that keeps OpenBLAS on one thread
    after an onnxruntime kernel (runtime.threads.other_pool_used) is lifted, so NumPy's GEMMs get every
    thread as they would in a process that never used MLAS (MLAS runs then meet OpenBLAS's spinning
    threads: this favours NumPy)."""
    from runtime import threads
    os.environ["SPECC_CONV_KERNEL"] = "numpy" if name == "numpy" else "auto"
    if name == "numpy":
        threads._other_pool_until = 0.0


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def measure(op, shape, out_ch, k, stride, pad, first, repeats: int, threads: int, kinds) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    wshape = (out_ch, shape[1], k, k) if op == "conv2d" else (shape[1], out_ch, k, k)
    w = (rng.standard_normal(wshape) * 0.1).astype(np.float32)
    b = np.zeros(out_ch, np.float32)
    out_pad = 1 if op == "conv_transpose2d" else 0
    attrs = {"out_channels": out_ch, "kernel_size": k, "stride": stride, "padding": pad}
    if op == "conv_transpose2d":
        attrs["output_padding"] = out_pad
    fwd, step = _specc(op, x, w, b, attrs, first)
    tf, ts = _torch(op, x, w, b, stride, pad, out_pad, first, threads)
    runs = {("numpy", "fwd"): fwd, ("numpy", "step"): step, ("mlas", "fwd"): fwd, ("mlas", "step"): step,
            ("torch", "fwd"): tf, ("torch", "step"): ts}
    runs = {key: fn for key, fn in runs.items() if key[0] in kinds}
    times: dict = {key: [] for key in runs}
    order = list(runs)
    for r in range(repeats + 1):                     # the first round warms up and is dropped
        for key in (order if r % 2 else order[::-1]):
            _select(key[0])
            t = _ms(runs[key])
            if r:
                times[key].append(t)
    os.environ.pop("SPECC_CONV_KERNEL", None)
    return {key: statistics.median(v) for key, v in times.items() if v}


def measure_steps(key: str, repeats: int, threads: int, kinds) -> dict:
    """Median wall ms of a training step of tools/bench.py's model `key`: NumPy kernels, MLAS, PyTorch."""
    from tools.bench import BY_KEY, Side
    side = Side(BY_KEY[key])
    side.torch.set_num_threads(threads)
    times: dict[str, list] = {k: [] for k in kinds}
    for r in range(repeats + 1):
        for name in (list(times) if r % 2 else list(times)[::-1]):
            _select(name)
            t = _ms(side.torch_train if name == "torch" else side.specc_train)
            if r:
                times[name].append(t)
    os.environ.pop("SPECC_CONV_KERNEL", None)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2, help="BLAS, onnxruntime and torch threads (default 2)")
    ap.add_argument("--only", default="", help="comma-separated models (lenet5, vgg_bn, resnet18, conv_autoencoder)")
    ap.add_argument("--steps", default="", help="time whole training steps of these tools/bench.py models instead")
    ap.add_argument("--kernel", choices=("both", "numpy", "mlas"), default="both",
                    help="which specc kernels to time beside PyTorch (one per process keeps the other's thread "
                         "pool out of the measurement: on 2 cores OpenBLAS's spinning threads slow every "
                         "library that runs after them, PyTorch included)")
    args = ap.parse_args(argv)
    kinds = (("numpy", "mlas") if args.kernel == "both" else (args.kernel,)) + ("torch",)

    def cell(t: dict, key) -> str:
        return f"{t[key]:.2f}" if key in t else "—"

    from runtime import mlas_conv
    print(f"MLAS NCHWc block size: {mlas_conv.block_size()} (0: unavailable); load average at start: "
          f"{os.getloadavg()[0]:.2f}; wall ms, {args.threads} thread(s), median of {args.repeats}\n")
    if args.steps:
        print("| model | NumPy kernels ms | MLAS ms | PyTorch ms | NumPy / MLAS | MLAS / PyTorch |")
        print("|---|---:|---:|---:|---:|---:|")
        for key in args.steps.split(","):
            t = measure_steps(key, args.repeats, args.threads, kinds)
            gain = f"{t['numpy'] / t['mlas']:.2f}×" if "numpy" in t and "mlas" in t else "—"
            vs = f"{t['mlas'] / t['torch']:.2f}×" if "mlas" in t else "—"
            print(f"| {key} | {cell(t, 'numpy')} | {cell(t, 'mlas')} | {t['torch']:.2f} | {gain} | {vs} |", flush=True)
    else:
        only = {m for m in args.only.split(",") if m}
        print("| model | layer | input → out, kernel/stride | fwd NumPy | fwd MLAS | fwd PyTorch | fwd+bwd NumPy "
              "| fwd+bwd MLAS | fwd+bwd PyTorch | MLAS / PyTorch (fwd+bwd) |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for model, layer, op, shape, out_ch, k, stride, pad, first in SHAPES:
            if only and model not in only:
                continue
            t = measure(op, shape, out_ch, k, stride, pad, first, args.repeats, args.threads, kinds)
            dims = "×".join(map(str, shape))
            cells = " | ".join(cell(t, (lib, part)) for part in ("fwd", "step") for lib in ("numpy", "mlas", "torch"))
            ratio = f"{t[('mlas', 'step')] / t[('torch', 'step')]:.2f}×" if ("mlas", "step") in t else "—"
            print(f"| {model} | {layer} | {dims} → {out_ch}, {k}×{k}/{stride} | {cells} | {ratio} |", flush=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
