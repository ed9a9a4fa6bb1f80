"""Stride-1 convolutions: the shifted-view path against the im2col path and PyTorch, one BLAS thread.

    python tools/bench_conv.py                 # every shape, median of 7
    python tools/bench_conv.py --repeats 15 --only vgg_bn
    python tools/bench_conv.py --force         # the shifted path for every shape (to tune the dispatch)
    python tools/bench_conv.py --steps vgg_bn,lenet5     # whole training steps (tools/bench.py's models)

Times one forward + backward of the conv2d kernel (runtime/kernels/convolution.py) per shape, as a
training step runs it (a network's first layer needs no input gradient), with the shifted-view path
switched off ("old": im2col) and on ("new": the dispatch decides; "=" when it keeps im2col), and
torch.nn.functional.conv2d forward + autograd backward with torch.set_num_threads(1). CPU time
(time.process_time) of this process at one BLAS thread, so that other jobs on a shared machine disturb
it little; the three run interleaved in every repeat and the medians are printed as a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"      # before NumPy loads
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from runtime import kernels  # noqa: E402
from runtime.kernels import convolution as conv  # noqa: E402

# (model, layer, input [N, C, H, W], out channels, kernel, padding, first layer)
SHAPES = [
    ("lenet5", "conv2d_1", (64, 1, 28, 28), 6, 5, 2, True),
    ("lenet5", "conv2d_2", (64, 6, 14, 14), 16, 5, 0, False),
    ("vgg_bn", "stage1.conv.0", (32, 3, 32, 32), 32, 3, 1, True),
    ("vgg_bn", "stage1.conv.1", (32, 32, 32, 32), 32, 3, 1, False),
    ("vgg_bn", "stage2.conv.0", (32, 32, 16, 16), 64, 3, 1, False),
    ("vgg_bn", "stage2.conv.1", (32, 64, 16, 16), 64, 3, 1, False),
    ("vgg_bn", "stage3.conv.0", (32, 64, 8, 8), 128, 3, 1, False),
    ("vgg_bn", "stage3.conv.1", (32, 128, 8, 8), 128, 3, 1, False),
    ("resnet18", "layer1 3×3", (8, 64, 56, 56), 64, 3, 1, False),
    ("resnet18", "layer2 3×3", (8, 128, 28, 28), 128, 3, 1, False),
    ("resnet18", "layer3 3×3", (8, 256, 14, 14), 256, 3, 1, False),
    ("resnet18", "layer4 3×3", (8, 512, 7, 7), 512, 3, 1, False),
    ("conv_autoencoder", "conv3 (7×7 → 1×1)", (32, 32, 7, 7), 64, 7, 0, False),
]


def _specc(x, w, b, pad, first):
    from compiler.ops import OPS
    attrs = OPS["conv2d"].attrs.model_validate({"out_channels": w.shape[0], "kernel_size": w.shape[2], "padding": pad})
    ctx = kernels.Ctx(attrs, needs=(not first, True, True))
    rng = np.random.default_rng(1)

    def step():
        y, back = kernels.KERNELS["conv2d"](ctx, x, w, b)
        back(gy[0])
    gy = [rng.standard_normal(kernels.KERNELS["conv2d"](ctx, x, w, b)[0].shape).astype(np.float32)]
    return step


def _torch(x, w, b, pad, first):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    xt = torch.from_numpy(x).requires_grad_(not first)
    wt, bt = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()

    def step():
        y = F.conv2d(xt, wt, bt, padding=pad)
        y.backward(torch.ones_like(y))
    return step


def _cpu_ms(fn) -> float:
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) * 1e3


def measure(shape, out_ch, k, pad, first, repeats: int) -> tuple[float, float | None, float | None, bool]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((out_ch, shape[1], k, k)) * 0.1).astype(np.float32)
    b = np.zeros(out_ch, np.float32)
    taken = conv._shifted_ok(x, w, (1, 1), (1, 1), 1, ((pad, pad),) * 2)
    specc = _specc(x, w, b, pad, first)
    try:
        torch_step = _torch(x, w, b, pad, first)
    except ImportError:
        torch_step = None
    times: dict[str, list] = {"old": [], "new": [], "torch": []}
    for r in range(repeats + 1):                     # the first round warms up and is dropped
        for name in (("old", "new", "torch") if r % 2 else ("torch", "new", "old")):
            if name == "torch" and torch_step is None:
                continue
            if name == "new" and not taken:
                continue
            conv._shift_enabled = name != "old"
            t = _cpu_ms(torch_step if name == "torch" else specc)
            if r:
                times[name].append(t)
    conv._shift_enabled = True
    med = {k_: statistics.median(v) if v else None for k_, v in times.items()}
    return med["old"], med["new"], med["torch"], taken


def measure_steps(key: str, repeats: int) -> tuple[float, float, float]:
    """Median CPU ms of a training step of tools/bench.py's model `key`: im2col only, dispatch, PyTorch."""
    from tools.bench import BY_KEY, Side
    side = Side(BY_KEY[key])
    side.torch.set_num_threads(1)
    times: dict[str, list] = {"old": [], "new": [], "torch": []}
    for r in range(repeats + 1):
        for name in (("old", "new", "torch") if r % 2 else ("torch", "new", "old")):
            conv._shift_enabled = name != "old"
            t = _cpu_ms(side.torch_train if name == "torch" else side.specc_train)
            if r:
                times[name].append(t)
    conv._shift_enabled = True
    return tuple(statistics.median(times[k]) for k in ("old", "new", "torch"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", default="", help="comma-separated models (lenet5, vgg_bn, resnet18, conv_autoencoder)")
    ap.add_argument("--force", action="store_true", help="take the shifted path for every shape (thresholds off)")
    ap.add_argument("--steps", default="", help="time whole training steps of these tools/bench.py models instead")
    args = ap.parse_args(argv)
    if args.steps:
        print(f"load average at start: {os.getloadavg()[0]:.2f}; CPU ms of a training step, 1 thread, "
              f"median of {args.repeats}\n")
        print("| model | im2col only ms | with shifted views ms | PyTorch ms |\n|---|---:|---:|---:|")
        for key in args.steps.split(","):
            old, new, ref = measure_steps(key, args.repeats)
            print(f"| {key} | {old:.1f} | {new:.1f} | {ref:.1f} |", flush=True)
        print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
        return 0
    if args.force:
        conv._SHIFT_MIN_CH, conv._SHIFT_MAX_CH, conv._SHIFT_MAX_POS, conv._SHIFT_WASTE = 1, 1 << 30, 1 << 30, float("inf")
    only = {m for m in args.only.split(",") if m}
    print(f"load average at start: {os.getloadavg()[0]:.2f}; CPU ms of forward + backward, 1 thread, "
          f"median of {args.repeats}\n")
    print("| model | layer | input → out, kernel, pad | old (im2col) ms | new ms | PyTorch ms | old / new |")
    print("|---|---|---|---:|---:|---:|---:|")
    for model, layer, shape, out_ch, k, pad, first in SHAPES:
        if only and model not in only:
            continue
        old, new, ref, taken = measure(shape, out_ch, k, pad, first, args.repeats)
        new_s = f"{new:.2f}" if taken else "= (im2col)"
        ratio = f"{old / new:.2f}×" if taken else "—"
        ref_s = "—" if ref is None else f"{ref:.2f}"
        dims = "×".join(map(str, shape))
        print(f"| {model} | {layer} | {dims} → {out_ch}, {k}×{k}, {pad} | {old:.2f} | {new_s} | {ref_s} | {ratio} |",
              flush=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
