"""Benchmarks: specc's NumPy runtime, its ONNX export, its compiler and a whole training run, side by side
with PyTorch.

    python tools/bench.py --runtime            # training step and inference, specc vs torch, 8 models
    python tools/bench.py --onnx               # onnxruntime: specc's export vs torch.onnx.export's
    python tools/bench.py --compiler           # `specc check` start-up, expansion+inference scaling
    python tools/bench.py --digits             # the whole specs/digits_cnn.yaml training run, specc vs torch
    python tools/bench.py --all --write        # everything, and update docs/benchmarks.md
    python tools/bench.py --runtime --quick --models lenet5,mlp
    python tools/bench.py --profile resnet18   # where a training step's and an inference's time goes, per op
    python tools/bench.py --runtime --profile all --write   # THE table: 8 models train+infer, memory, bounds
    python tools/bench.py --data-throughput    # image-folder decoding (images/s) vs training step; CSV reading

Method. The PyTorch side is what a user writes: the torch.nn modules of tools/bench_models.py
(nn.Linear, nn.Conv2d + nn.BatchNorm2d, a torchvision-style ResNet-18, nn.LSTM, nn.TransformerEncoderLayer),
with specc's state_dict loaded into them (the names match; tools/torch_ref.py, an interpreter of the IR, is
kept for parity tests and the ONNX export comparison). Both sides get the same weights, the same inputs and shapes, float32, 2 threads (torch.set_num_threads(2); OpenBLAS and OpenMP capped
at 2 through the environment before NumPy loads; onnxruntime intra_op_num_threads=2). Every
measurement warms up first, then runs N repeats in which the specc and the PyTorch call alternate
(the order flips every repeat), so that load from other processes on the machine hits both alike.
Reported: the median time of each, and the median of the per-repeat ratios specc/torch (a paired
ratio, robust to the machine's load drifting during the run); geometric means over the models.

A training step is forward + loss + backward + SGD(momentum 0.9) update + zero_grad, on both sides
(runtime.optim.SGD / torch.optim.SGD). Inference is eval mode without a tape (specc's Model.__call__, which
runs the inference plan of runtime/inference_plan.py unless --no-plan; the torch module in eval() under
torch.inference_mode(), so nn.TransformerEncoderLayer takes its fused fast path). Runtime tables are keyed
by the CPU (model, vendor, SIMD level): a run on another CPU adds a table to docs/benchmarks.md.

Peak memory (LeNet-5 training, batch 64) is measured in fresh subprocesses, one per library: after
imports, model, optimiser and data are set up and garbage-collected, the kernel's peak-RSS counter is
reset (writing 5 to /proc/self/clear_refs), five training steps run, and the peak RSS (VmHWM) minus
the RSS at the reset is the step's peak memory: activations, gradients, optimiser state, temporaries
and whatever the allocator keeps, for NumPy and for torch's CPU allocator alike.

The digits run (--digits) times a whole training run of specs/digits_cnn.yaml, not a step: runtime.fit
against a plain PyTorch loop, the spec's 20 epochs on both sides (early stopping off), same initial
weights, standardize statistics, mini-batch order, Adam + cosine schedule and per-epoch validation (see
DigitsRun); repetitions alternate, medians reported; plus the wall time of `specc train` as a user runs it.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

def _threads_from_argv(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 2


THREADS = _threads_from_argv(sys.argv)          # before NumPy loads: BLAS reads these once
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = str(THREADS)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
GAP = 0.1        # s of idle before each timed call: the other library's spinning worker threads
                 # (OpenBLAS, libgomp) go to sleep instead of competing with the call being timed


# ----------------------------------------------------------------------------------------------- models

@dataclass
class Bench:
    key: str
    title: str
    spec: str                               # relative to the repository root
    inputs: dict[str, tuple[int, ...]]      # concrete input shapes
    loss: str
    infer: list[str]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def shape_text(self) -> str:
        first = next(iter(self.inputs.values()))
        return "[" + ", ".join(map(str, first)) + "]"


MODELS = [
    Bench("mlp", "MLP 784-256-256-10", "tools/bench_specs/mlp.yaml",
          {"image": (128, 1, 28, 28), "label": (128,)}, "loss", ["logits"]),
    Bench("lenet5", "LeNet-5", "specs/lenet5.yaml",
          {"image": (64, 1, 28, 28), "label": (64,)}, "loss", ["logits"]),
    Bench("vgg_bn", "small VGG + batch norm", "tools/bench_specs/vgg_bn.yaml",
          {"image": (32, 3, 32, 32), "label": (32,)}, "loss", ["logits"]),
    Bench("resnet18", "ResNet-18", "specs/resnet18.yaml",
          {"image": (8, 3, 224, 224), "label": (8,)}, "loss", ["logits"]),
    Bench("lstm", "LSTM classifier", "tools/bench_specs/lstm.yaml",
          {"tokens": (32, 50), "label": (32,)}, "loss", ["logits"]),
    Bench("transformer", "transformer encoder", "tools/bench_specs/transformer.yaml",
          {"x": (16, 64, 128), "label": (16,)}, "loss", ["logits"]),
    Bench("gcn", "GCN (2 layers, dense adj.)", "tools/bench_specs/gcn.yaml",
          {"x": (2708, 1433), "adj": (2708, 2708), "label": (2708,)}, "loss", ["logits"]),
    Bench("conv_autoencoder", "conv autoencoder", "tools/bench_specs/conv_autoencoder.yaml",
          {"image": (32, 1, 28, 28)}, "loss", ["reconstruction"]),
]
BY_KEY = {b.key: b for b in MODELS}

TRAIN_TARGET, TRAIN_GEO_TARGET = 1.5, 1.25      # issue 15: every model, geometric mean
PLANNED = True                                    # specc's inference through runtime/inference_plan.py
MEMORY_TARGET = 1.5
ONNX_TARGET = 1.05


def compile_bench(b: Bench):
    import compiler
    return compiler.compile_file(ROOT / b.spec, params=b.params or None)


def make_inputs(g, b: Bench, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs of the benchmark's shapes: class labels below the class count, embedding indices
    below the vocabulary, a symmetric Cora-like 0/1 adjacency (about 3.9 neighbours per node)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in b.inputs.items():
        t = g.inputs[name]
        if t.dtype == "int64":
            high = 2
            for n in g.nodes:
                for i, r in enumerate(n.inputs):
                    if r is not None and r.node == name:
                        if n.op == "embedding":
                            high = n.attrs.num_embeddings
                        elif n.op in ("cross_entropy", "nll_loss") and i == 1:
                            high = g.type_of(n.inputs[0]).shape[1]
            out[name] = rng.integers(0, high, size=shape).astype(np.int64)
        elif t.dtype == "bool":
            out[name] = rng.random(shape) < 0.1
        elif name == "adj":
            v = shape[0]
            edges = rng.integers(0, v, size=(2, int(v * 1.95)))
            a = np.zeros(shape, np.float32)
            a[edges[0], edges[1]] = 1.0
            a = np.maximum(a, a.T)
            np.fill_diagonal(a, 0.0)
            out[name] = a
        elif b.key == "conv_autoencoder":
            out[name] = rng.random(shape).astype(np.float32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------- timing

def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _timed2(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: every thread, spinning included)."""
    time.sleep(GAP)
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


@dataclass
class Pair:
    a: list[float]
    b: list[float]
    ca: list[float] = field(default_factory=list)      # CPU seconds
    cb: list[float] = field(default_factory=list)
    others: float = float("nan")           # cores kept busy by other processes during the measurement

    @property
    def med_a(self) -> float:
        return statistics.median(self.a)

    @property
    def med_b(self) -> float:
        return statistics.median(self.b)

    @property
    def ratio(self) -> float:
        """Median of the per-repeat ratios a/b."""
        return statistics.median(x / y for x, y in zip(self.a, self.b))

    @property
    def min_ratio(self) -> float:
        """Best time against best time: the least disturbed by other processes."""
        return min(self.a) / min(self.b)

    @property
    def cpu_ratio(self) -> float:
        """Median of the per-repeat CPU-time ratios (insensitive to preemption with one thread)."""
        return statistics.median(x / y for x, y in zip(self.ca, self.cb)) if self.ca else float("nan")


def _busy() -> tuple[float, float]:
    """(CPU seconds used by every process on the machine, CPU seconds used by this one)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(v) for v in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    tick = os.sysconf("SC_CLK_TCK")
    t = os.times()
    return (sum(vals[:8]) - idle) / tick, t.user + t.system


def others_busy(seconds: float = 1.0) -> float:
    """Cores used by other processes over the next `seconds`."""
    b0, s0 = _busy()
    time.sleep(seconds)
    b1, s1 = _busy()
    return max(0.0, (b1 - b0) - (s1 - s0)) / seconds


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait (at most max_wait s) until other processes use under `limit` cores; returns their last use."""
    t_end = time.monotonic() + max_wait
    while True:
        o = others_busy(1.0)
        if o < limit or time.monotonic() >= t_end:
            return o


def compare(fa: Callable[[], Any], fb: Callable[[], Any], warmup: int, budget: float, lo: int, hi: int) -> Pair:
    """Warm both up, then alternate them (order flipped every repeat); the repeat count fits `budget`
    seconds (between lo and hi). Also records how busy the other processes kept the machine meanwhile."""
    est = 0.0
    for _ in range(warmup):
        est = _timed(fa) + _timed(fb) + 2 * GAP
    n = int(min(hi, max(lo, budget // max(est, 1e-6))))
    p = Pair([], [])
    busy0, self0 = _busy()
    w0 = time.perf_counter()
    for i in range(n):
        gc.collect()
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            w, c = _timed2(fa if which == 0 else fb)
            (p.a if which == 0 else p.b).append(w)
            (p.ca if which == 0 else p.cb).append(c)
    busy1, self1 = _busy()
    wall = time.perf_counter() - w0
    p.others = max(0.0, ((busy1 - busy0) - (self1 - self0)) / wall) if wall > 0 else float("nan")
    return p


def geomean(xs: list[float]) -> float:
    xs = [x for x in xs if x and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


# ----------------------------------------------------------------------------------------------- runtime

class Side:
    """One model on both sides: specc's Model + SGD; the torch.nn module a user writes (tools/bench_models.py,
    specc's state_dict loaded into it) + torch.optim.SGD. The torch_ref interpreter (parity only) is built on
    demand, for the ONNX export comparison."""

    def __init__(self, b: Bench, planned: bool = True):
        import torch

        import runtime
        from runtime.optim import SGD
        from tools.bench_models import INPUTS, TARGET, build_torch_model, torch_loss

        self.b = b
        self.g = compile_bench(b)
        self.model = runtime.Model(self.g, seed=0)
        self.model.planned = planned
        self.net = build_torch_model(b.key, self.model.state_dict())
        self.x = make_inputs(self.g, b)
        self.tx = {k: torch.from_numpy(v) for k, v in self.x.items()}
        self.targs = [self.tx[k] for k in INPUTS[b.key]]
        self.ttarget = self.tx[TARGET[b.key]]
        self.tloss = lambda y: torch_loss(b.key, y, self.ttarget)
        self.opt = SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.topt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        self.torch = torch
        self.infer_x = {k: v for k, v in self.x.items() if k in self.model.plan(b.infer).inputs}
        self.infer_tx = {k: self.tx[k] for k in self.infer_x}
        self._ref = None

    @property
    def ref(self):
        """tools/torch_ref.py's interpreter of the same IR with the same weights (ONNX export only)."""
        if self._ref is None:
            from tools.torch_ref import TorchRef
            self._ref = TorchRef(self.g, self.model.state_dict())
        return self._ref

    def specc_train(self) -> None:
        m = self.model
        m.train()
        out = m.forward(outputs=[self.b.loss], **self.x)
        out[self.b.loss].backward()
        self.opt.step()
        self.opt.zero_grad()

    def torch_train(self) -> None:
        n = self.net
        n.train()
        self.topt.zero_grad(set_to_none=True)
        self.tloss(n(*self.targs)).backward()
        self.topt.step()

    def specc_infer(self) -> None:
        self.model.eval()
        self.model(outputs=self.b.infer, **self.infer_x)

    def torch_infer(self) -> None:
        self.net.eval()
        with self.torch.inference_mode():
            self.net(*self.targs)


QUIET: tuple[float, float] | None = None      # (cores, max seconds): wait for other processes to calm down


def _quiet() -> None:
    if QUIET:
        wait_quiet(*QUIET)


def run_runtime(models: list[Bench], quick: bool) -> dict:
    import torch
    torch.set_num_threads(THREADS)
    budget, lo, hi, warm = (3.0, 3, 8, 1) if quick else (9.0, 7, 30, 2)   # the 8 models in ~3 min when quiet
    rows = []
    for b in models:
        s = Side(b, planned=PLANNED)
        _quiet()
        tr = compare(s.specc_train, s.torch_train, warm, budget, lo, hi)
        _quiet()
        inf = compare(s.specc_infer, s.torch_infer, warm, budget, lo, hi)
        row = dict(key=b.key, title=b.title, shape=b.shape_text,
                   train_specc=tr.med_a, train_torch=tr.med_b, train_ratio=tr.ratio, train_n=len(tr.a),
                   train_min_ratio=tr.min_ratio, infer_min_ratio=inf.min_ratio,
                   train_others=tr.others, infer_others=inf.others,
                   train_cpu_ratio=tr.cpu_ratio, infer_cpu_ratio=inf.cpu_ratio,
                   infer_specc=inf.med_a, infer_torch=inf.med_b, infer_ratio=inf.ratio, infer_n=len(inf.a))
        rows.append(row)
        print(f"{b.key:18s} train {tr.med_a * 1e3:9.2f} ms vs {tr.med_b * 1e3:9.2f} ms  x{tr.ratio:5.2f} "
              f"(best x{tr.min_ratio:5.2f}, cpu x{tr.cpu_ratio:5.2f})   infer {inf.med_a * 1e3:9.2f} ms vs {inf.med_b * 1e3:9.2f} ms  "
              f"x{inf.ratio:5.2f} (best x{inf.min_ratio:5.2f}, cpu x{inf.cpu_ratio:5.2f})   (n={len(tr.a)}/{len(inf.a)}, "
              f"others busy {tr.others:.1f}/{inf.others:.1f} cores)", flush=True)
        del s
        gc.collect()
    res = dict(rows=rows, threads=THREADS, planned=PLANNED, train_geo=geomean([r["train_ratio"] for r in rows]),
               train_cpu_geo=geomean([r["train_cpu_ratio"] for r in rows]),
               infer_cpu_geo=geomean([r["infer_cpu_ratio"] for r in rows]),
               infer_geo=geomean([r["infer_ratio"] for r in rows]),
               train_min_geo=geomean([r["train_min_ratio"] for r in rows]),
               infer_min_geo=geomean([r["infer_min_ratio"] for r in rows]))
    print(f"geometric mean: train x{res['train_geo']:.2f} (best-of x{res['train_min_geo']:.2f})  "
          f"infer x{res['infer_geo']:.2f} (best-of x{res['infer_min_geo']:.2f})")
    return res


# ----------------------------------------------------------------------------------------------- memory

def _status(field_: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_ + ":"):
                return int(line.split()[1]) * 1024
    return 0


def memory_child(lib: str, key: str, mode: str = "rss", steps: int = 5) -> dict:
    """Runs in a fresh process, after imports, model, optimiser and data are set up.
    rss: peak RSS of `steps` training steps above the RSS before them (the kernel's peak counter is
    reset through /proc/self/clear_refs). trace (specc only): tracemalloc's peak of the traced
    allocations (NumPy arrays included) during a step after a warm-up step, above the level before it."""
    import torch
    torch.set_num_threads(THREADS)
    s = Side(BY_KEY[key])
    step = s.specc_train if lib == "specc" else s.torch_train
    if lib == "specc":                       # the torch side is only needed for the other child
        del s.net, s.topt
    else:
        del s.model, s.opt
    gc.collect()
    if mode == "trace":
        import tracemalloc
        step()
        gc.collect()
        tracemalloc.start()
        cur0, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        step()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return dict(lib=lib, delta=peak - cur0, peak=peak, base=cur0, reset=True)
    base = _status("VmRSS")
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        reset = False
    hwm0 = _status("VmHWM")
    for _ in range(steps):
        step()
    peak = _status("VmHWM")
    return dict(lib=lib, base=base, peak=peak, delta=peak - base if reset else max(0, peak - hwm0), reset=reset)


def _child(lib: str, key: str, mode: str) -> dict:
    p = subprocess.run([sys.executable, str(Path(__file__)), "--_memory-child", lib, key, mode,
                        "--threads", str(THREADS)], capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"memory child ({lib}, {mode}) failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_memory(key: str = "lenet5", repeats: int = 3) -> dict:
    out: dict[str, list[dict]] = {"specc": [], "torch": []}
    for _ in range(repeats):
        for lib in ("specc", "torch"):
            out[lib].append(_child(lib, key, "rss"))
    sp = statistics.median(r["delta"] for r in out["specc"])
    tp = statistics.median(r["delta"] for r in out["torch"])
    trace = statistics.median(_child("specc", key, "trace")["delta"] for _ in range(repeats))
    res = dict(key=key, repeats=repeats, specc=sp, torch=tp, ratio=sp / tp if tp else float("nan"),
               specc_peak=statistics.median(r["peak"] for r in out["specc"]),
               torch_peak=statistics.median(r["peak"] for r in out["torch"]),
               specc_traced=trace, reset=all(r["reset"] for v in out.values() for r in v))
    print(f"peak memory of {key} training: specc {sp / 2**20:.1f} MiB, torch {tp / 2**20:.1f} MiB, "
          f"ratio x{res['ratio']:.2f}; specc's traced NumPy peak per step {trace / 2**20:.1f} MiB", flush=True)
    return res


# ----------------------------------------------------------------------------------------------- onnx

def _session(proto_bytes: bytes):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(proto_bytes, so, providers=["CPUExecutionProvider"])


def torch_export(s: Side) -> tuple[bytes, str]:
    """torch.onnx.export of the torch_ref module (legacy TorchScript exporter, else the dynamo one)."""
    import warnings

    import torch

    from tools.torch_ref import Positional
    names = list(s.infer_x)
    wrap = Positional(s.ref, names, s.b.infer).eval()
    args = tuple(s.infer_tx[k] for k in names)
    errors = []
    for dynamo in (False, True):
        f = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = torch.onnx.export(wrap, args, f, dynamo=dynamo, opset_version=18, input_names=names,
                                        output_names=list(s.b.infer), do_constant_folding=True)
            if dynamo:
                return res.model_proto.SerializeToString(), "dynamo"
            return f.getvalue(), "torchscript"
        except Exception as e:                       # noqa: BLE001 - report and try the other exporter
            errors.append(f"dynamo={dynamo}: {type(e).__name__}: {e}")
    raise RuntimeError("; ".join(errors))


def run_onnx(models: list[Bench], quick: bool) -> dict:
    import onnx
    import torch

    import compiler
    torch.set_num_threads(THREADS)
    budget, lo, hi, warm = (3.0, 3, 10, 1) if quick else (20.0, 15, 60, 3)
    rows = []
    for b in models:
        s = Side(b)
        _quiet()
        s.model.eval()
        ours = compiler.to_onnx(s.g, weights=s.model.state_dict(), opset=18, outputs=b.infer)
        ours_b = ours.SerializeToString()
        theirs_b, exporter = torch_export(s)
        theirs = onnx.load_from_string(theirs_b)
        so, st = _session(ours_b), _session(theirs_b)
        feeds_o = {i.name: s.infer_x[i.name] for i in so.get_inputs()}
        feeds_t = {i.name: s.infer_x[i.name] for i in st.get_inputs()}
        yo = so.run(None, feeds_o)[0]
        yt = st.run(None, feeds_t)[0]
        err = float(np.abs(yo - yt).max() / max(np.abs(yt).max(), 1e-6))
        p = compare(lambda: so.run(None, feeds_o), lambda: st.run(None, feeds_t), warm, budget, lo, hi)
        row = dict(key=b.key, title=b.title, specc=p.med_a, torch=p.med_b, ratio=p.ratio, n=len(p.a),
                   min_ratio=p.min_ratio, others=p.others,
                   nodes_specc=len(ours.graph.node), nodes_torch=len(theirs.graph.node),
                   ops_specc=_op_counts(ours), ops_torch=_op_counts(theirs), exporter=exporter, max_rel_diff=err)
        rows.append(row)
        print(f"{b.key:18s} ort {p.med_a * 1e3:9.3f} ms vs {p.med_b * 1e3:9.3f} ms  x{p.ratio:5.3f} "
              f"(best x{p.min_ratio:5.3f})  "
              f"nodes {row['nodes_specc']} vs {row['nodes_torch']}  ({exporter}, max rel diff {err:.1e}, "
              f"others busy {p.others:.1f} cores)",
              flush=True)
        del s, so, st
        gc.collect()
    res = dict(rows=rows, geo=geomean([r["ratio"] for r in rows]), min_geo=geomean([r["min_ratio"] for r in rows]))
    print(f"geometric mean: x{res['geo']:.3f} (best-of: x{res['min_geo']:.3f})")
    return res


def _op_counts(p) -> dict[str, int]:
    c: dict[str, int] = {}
    for n in p.graph.node:
        c[n.op_type] = c.get(n.op_type, 0) + 1
    return dict(sorted(c.items()))


# ----------------------------------------------------------------------------------------------- compiler

def _specc_cmd() -> list[str]:
    return [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())"]


def generated_spec(n: int) -> str:
    """A spec of n nodes: n/4 uses of a residual unit (linear, relu, add of the unit's input, layer_norm),
    written as a flat list (`- {use: unit}`, default names), so that every instance is parsed, expanded
    and shape-inferred on its own (and 100k nodes stay within the loader's 2 MB limit)."""
    lines = ["specc: 1", f"name: generated_{n}", "inputs:", "  x: [N, 32]", "blocks:", "  unit:", "    inputs: [x]",
             "    layers:", "      - {op: linear, name: fc, out_features: 32}", "      - {op: relu, name: act}",
             "      - {op: add, name: res, in: [x, act]}", "      - {op: layer_norm, name: ln}", "layers:"]
    lines += ["  - {use: unit}"] * (n // 4)
    return "\n".join(lines) + "\n"


_GEN_CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, ROOT)
from compiler.load import load_text
from compiler.expand import compile_tree
import compiler
from pathlib import Path
text = open(PATH).read()
out = []
for _ in range(REPEATS):
    gc.collect()
    gc.disable()                  # as compiler.compile_file / compile_text run (their _no_gc)
    t0 = time.perf_counter()
    tree = load_text(text, PATH)
    t1 = time.perf_counter()
    g = compile_tree(tree, PATH, None, text, Path(ROOT))
    t2 = time.perf_counter()
    gc.enable()
    out.append(dict(load=t1 - t0, expand=t2 - t1, nodes=len(g.nodes), blocks=len({n.block for n in g.nodes})))
    del g, tree
print(json.dumps(out))
"""


def run_compiler(quick: bool) -> dict:
    reps = 5 if quick else 15
    cmd = _specc_cmd() + ["check", "specs/resnet50.yaml"]
    base, check = [], []
    for i in range(reps):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            if which == 0:
                base.append(_timed(lambda: subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, check=True)))
            else:
                check.append(_timed(lambda: subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)))
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys, io, json, contextlib\n"
         "from cli.main import main\n"
         "buf = io.StringIO()\n"
         "with contextlib.redirect_stdout(buf):\n"
         "    rc = main(['check', 'specs/resnet50.yaml'])\n"
         "print(json.dumps({'rc': rc, **{m: m in sys.modules for m in "
         "('onnx', 'onnxruntime', 'numpy', 'torch', 'networkx', 'pydantic', 'yaml', 'runtime')}}))"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    modules = json.loads(probe.stdout.strip().splitlines()[-1])
    diffs = sorted(c - b for c, b in zip(check, base))
    res = dict(check=statistics.median(check), python=statistics.median(base),
               beyond=statistics.median(diffs), repeats=reps, modules=modules)
    print(f"specc check specs/resnet50.yaml: {res['check']:.3f} s, python -c pass {res['python']:.3f} s, "
          f"beyond start-up {res['beyond']:.3f} s; imported: "
          + ", ".join(f"{k}={v}" for k, v in modules.items() if k != "rc"))
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1000, 10000, 100000):
            path = Path(tmp) / f"gen_{n}.yaml"
            path.write_text(generated_spec(n))
            r = 1 if (quick and n == 100000) else (2 if n == 100000 else (3 if quick else 5))
            code = _GEN_CHILD.replace("ROOT", repr(str(ROOT))).replace("PATH", repr(str(path))) \
                             .replace("REPEATS", str(r))
            p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"generated spec {n}: {p.stderr[-2000:]}")
            runs = json.loads(p.stdout.strip().splitlines()[-1])
            load = statistics.median(x["load"] for x in runs)
            exp = statistics.median(x["expand"] for x in runs)
            sizes.append(dict(n=runs[0]["nodes"], load=load, expand=exp, total=load + exp,
                              per_node_us=(load + exp) / runs[0]["nodes"] * 1e6, repeats=r))
            print(f"generated spec {runs[0]['nodes']:6d} nodes: load {load:.3f} s, expand+infer {exp:.3f} s, "
                  f"{sizes[-1]['per_node_us']:.1f} µs/node", flush=True)
    res["generated"] = sizes
    return res


# ----------------------------------------------------------------------------------------------- digits

DIGITS_SPEC = "specs/digits_cnn.yaml"


class DigitsRun:
    """The whole training run of specs/digits_cnn.yaml on both sides, as the spec's train section says.

    Data: builtin:digits, the fixed 80 % train / 20 % test split, 10 % of train held out for validation
    (runtime.data.load_splits, as `specc train` loads it). Both sides train the spec's `epochs` with early
    stopping off (so both do the same work), from the same initial weights (runtime.Model(graph, seed)
    after runtime's fit_standardize on the training split, copied into tools/torch_ref.py's module), with
    the same mini-batch order (the permutation fit() draws per epoch from its shuffle generator
    default_rng([seed, 0]), drawn the same way for torch), Adam with the spec's settings, the cosine
    schedule stepped per epoch (runtime's CosineAnnealingLR / torch's), and a validation pass after every
    epoch (eval mode, batches of max(batch_size, 256), loss and accuracy).

    specc: runtime.fit(model, train, val, config=<spec's train without early_stopping>, log=None,
    progress=False, out_dir=None): what `specc train` runs, minus the checkpoint, history and plot files
    (a plain PyTorch loop writes none either; the CLI line measures them). fit() also re-fits the
    standardize statistics (same values), tracks the training loss and metrics per batch and computes
    precision/recall/F1/confusion matrix on the validation split. torch: a plain loop (zero_grad,
    forward to loss and logits, backward, Adam step; running loss and accuracy via .item()), validation
    under inference_mode, scheduler.step() per epoch. The test accuracy of the final weights of each is
    measured afterwards, outside the timing."""

    def __init__(self) -> None:
        import compiler
        import runtime
        from runtime import data as D
        from runtime.train import fit_standardize, make_plan

        self.g = compiler.compile_file(ROOT / DIGITS_SPEC)
        self.cfg = self.g.train
        self.seed = self.cfg.seed
        self.epochs = self.cfg.epochs
        self.fit_cfg = self.cfg.model_copy(update={"early_stopping": None})
        self.plan = make_plan(runtime.Model(self.g, seed=self.seed), self.cfg)
        s = D.load_splits(self.g, self.cfg.data, (ROOT / DIGITS_SPEC).parent, self.plan.needed, seed=self.seed)
        self.train, self.val, self.test = s.train, s.val, s.test
        m0 = runtime.Model(self.g, seed=self.seed)
        fit_standardize(m0, self.train)
        self.init_state = {k: v.copy() for k, v in m0.state_dict().items()}
        self.loss = self.cfg.objective if isinstance(self.cfg.objective, str) else "loss"
        self.predict, self.target = self.plan.predict, self.plan.target
        self.image = next(k for k in self.plan.needed if k != self.target)

    def specc_run(self) -> dict:
        import runtime
        from runtime.train import evaluate
        model = runtime.Model(self.g, seed=self.seed)
        gc.collect()
        time.sleep(GAP)
        c0, t0 = time.process_time(), time.perf_counter()
        hist = runtime.fit(model, self.train, self.val, config=self.fit_cfg, log=None, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        res = evaluate(model, self.test, config=self.cfg, plan=self.plan)
        return dict(wall=wall, cpu=cpu, epochs=len(hist), test_acc=float(res["accuracy"]),
                    val_acc=float(hist[-1]["val.accuracy"]), val_loss=float(hist[-1]["val.loss"]))

    def torch_run(self) -> dict:
        import torch

        from tools.torch_ref import TorchRef
        torch.set_num_threads(THREADS)
        torch.manual_seed(self.seed)
        ref = TorchRef(self.g, self.init_state)
        o, sc = self.cfg.optimizer, self.cfg.schedule
        opt = torch.optim.Adam(ref.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                               weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=sc.t_max or self.epochs, eta_min=sc.eta_min)
        x = torch.from_numpy(self.train.arrays[self.image])
        y = torch.from_numpy(self.train.arrays[self.target])
        vx = torch.from_numpy(self.val.arrays[self.image])
        vy = torch.from_numpy(self.val.arrays[self.target])
        n, bs, vbs = len(y), self.cfg.batch_size, max(self.cfg.batch_size, 256)
        names = [self.loss, self.predict]
        shuffle = np.random.default_rng([self.seed, 0])          # fit()'s shuffle generator
        gc.collect()
        time.sleep(GAP)
        c0, t0 = time.process_time(), time.perf_counter()
        for _epoch in range(self.epochs):
            ref.train()
            order = torch.from_numpy(shuffle.permutation(n))
            tot, correct = 0.0, 0
            for s in range(0, n, bs):
                idx = order[s:s + bs]
                xb, yb = x[idx], y[idx]
                opt.zero_grad(set_to_none=True)
                out = ref(outputs=names, **{self.image: xb, self.target: yb})
                out[self.loss].backward()
                opt.step()
                tot += out[self.loss].item() * len(idx)
                correct += int((out[self.predict].argmax(1) == yb).sum())
            ref.eval()
            vloss, vcorrect = 0.0, 0
            with torch.inference_mode():
                for s in range(0, len(vy), vbs):
                    xb, yb = vx[s:s + vbs], vy[s:s + vbs]
                    out = ref(outputs=names, **{self.image: xb, self.target: yb})
                    vloss += out[self.loss].item() * len(yb)
                    vcorrect += int((out[self.predict].argmax(1) == yb).sum())
            sched.step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ref.eval()
        with torch.inference_mode():
            logits = ref(outputs=[self.predict], **{self.image: torch.from_numpy(self.test.arrays[self.image])})
        test_acc = float((logits[self.predict].argmax(1).numpy() == self.test.arrays[self.target]).mean())
        return dict(wall=wall, cpu=cpu, epochs=self.epochs, test_acc=test_acc, val_acc=vcorrect / len(vy),
                    val_loss=vloss / len(vy))


def specc_cli_train() -> dict:
    """`specc train specs/digits_cnn.yaml --out <temp>` as a user runs it (early stopping on, checkpoints,
    history and plot written; interpreter start-up and imports included), in a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "digits_cnn"
        time.sleep(GAP)
        c0 = os.times()
        t0 = time.perf_counter()
        p = subprocess.run(_specc_cmd() + ["train", DIGITS_SPEC, "--out", str(out)], cwd=ROOT,
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        c1 = os.times()
        if p.returncode != 0:
            raise RuntimeError(f"specc train {DIGITS_SPEC} failed:\n{p.stderr[-2000:]}")
        with open(out / "history.csv") as f:
            epochs = sum(1 for _ in f) - 1
    done = next((ln for ln in p.stdout.splitlines() if ln.startswith("done in ")), "")
    acc = next((ln for ln in p.stdout.splitlines() if ln.strip().startswith("accuracy")), "")
    fit_s = float(done.split()[2].rstrip("s;")) if done else float("nan")
    test_acc = float(acc.split()[1]) if acc else float("nan")
    return dict(wall=wall, fit=fit_s, epochs=epochs, test_acc=test_acc,
                child_cpu=(c1.children_user + c1.children_system) - (c0.children_user + c0.children_system))


_OPT_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
DISTURBED = 0.3     # cores used by other processes during a digits run above which it is re-run (with --wait-quiet)


def run_digits(quick: bool) -> dict:
    """Repetitions of the whole training run: specc and torch alternating (the order flips every repetition),
    then the CLI; medians. Each run records the cores other processes used meanwhile; with --wait-quiet a
    run they disturbed (over DISTURBED cores) is run again, at most twice."""
    import torch
    torch.set_num_threads(THREADS)
    d = DigitsRun()
    reps = 1 if quick else 3
    runs: dict[str, list[dict]] = {"specc": [], "torch": [], "cli": []}
    fns = {"specc": d.specc_run, "torch": d.torch_run, "cli": specc_cli_train}
    for i in range(reps):
        for which in (("specc", "torch") if i % 2 == 0 else ("torch", "specc")) + ("cli",):
            for attempt in range(3):
                _quiet()
                b0, s0, t0 = *_busy(), time.perf_counter()
                r = fns[which]()
                b1, s1, t1 = *_busy(), time.perf_counter()
                r["others"] = max(0.0, ((b1 - b0) - (s1 - s0)) / (t1 - t0))
                r["attempt"] = attempt + 1
                if which == "cli":             # the child's CPU time is not this process's: count it out
                    r["others"] = max(0.0, r["others"] - r.get("child_cpu", 0.0) / (t1 - t0))
                if QUIET is None or r["others"] <= DISTURBED or attempt == 2:
                    break
                print(f"  ({which}: {r['wall']:.2f} s, but other processes used {r['others']:.1f} cores meanwhile; "
                      "running it again)", flush=True)
            runs[which].append(r)
            fit = f" (fit {r['fit']:.1f} s)" if which == "cli" else f" (cpu {r['cpu']:.2f} s)"
            print(f"  {which:5s} {r['epochs']} epochs {r['wall']:7.2f} s{fit}, test accuracy {r['test_acc']:.2%}, "
                  f"others busy {r['others']:.1f} cores", flush=True)
    med = lambda k, key: statistics.median(r[key] for r in runs[k])      # noqa: E731
    n_train = len(d.train)
    opt_name = _OPT_NAMES.get(d.cfg.optimizer.type, d.cfg.optimizer.type)
    res = dict(spec=DIGITS_SPEC, epochs=d.epochs, repeats=reps, threads=THREADS,
               train_samples=n_train, val_samples=len(d.val), test_samples=len(d.test),
               batch_size=d.cfg.batch_size, seed=d.seed, optimizer=f"{opt_name} lr {d.cfg.optimizer.lr:g}",
               schedule=d.cfg.schedule.type,
               specc=med("specc", "wall"), torch=med("torch", "wall"),
               specc_cpu=med("specc", "cpu"), torch_cpu=med("torch", "cpu"),
               ratio=statistics.median(a["wall"] / b["wall"] for a, b in zip(runs["specc"], runs["torch"])),
               specc_test_acc=med("specc", "test_acc"), torch_test_acc=med("torch", "test_acc"),
               specc_val_acc=med("specc", "val_acc"), torch_val_acc=med("torch", "val_acc"),
               cli=med("cli", "wall"), cli_fit=med("cli", "fit"), cli_epochs=med("cli", "epochs"),
               cli_test_acc=med("cli", "test_acc"),
               others=max(r["others"] for r in runs["specc"] + runs["torch"]),
               cli_others=max(r["others"] for r in runs["cli"]),
               runs=runs)
    res["specc_rate"] = n_train * d.epochs / res["specc"]
    res["torch_rate"] = n_train * d.epochs / res["torch"]
    print(f"digits_cnn, {d.epochs} epochs: specc {res['specc']:.2f} s vs torch {res['torch']:.2f} s  "
          f"x{res['ratio']:.2f}  ({res['specc_rate']:,.0f} vs {res['torch_rate']:,.0f} samples/s; test accuracy "
          f"{res['specc_test_acc']:.2%} vs {res['torch_test_acc']:.2%}); specc train CLI {res['cli']:.2f} s "
          f"({res['cli_epochs']:g} epochs), others busy at most {res['others']:.1f} cores")
    return res


# ----------------------------------------------------------------------------------------------- profile

def profile_step(key: str, steps: int = 10, top: int = 12) -> dict:
    """Per-op forward/backward time of specc's training step (kernels wrapped with timers; per op the
    median over `steps` steps, so that a step disturbed by other processes does not count), and
    torch's own profile of the same step (torch.profiler, self CPU time per aten op, per step). The
    weight gradients run in line (SPECC_OVERLAP=0): beside the pass, a convolution's backward would
    return before its work is done and the profile would miss it (the step time printed is that of the
    in-line step)."""
    import torch

    from runtime.kernels import KERNELS
    from runtime.kernels.registry import FUSED
    torch.set_num_threads(THREADS)
    s = Side(BY_KEY[key])
    cur: dict[tuple[str, str], float] = {}
    calls: dict[str, int] = {}
    orig, orig_fused = dict(KERNELS), dict(FUSED)

    shapes: dict[str, str] = {}

    def wrap(op: str, fn):
        def run(ctx, *args):
            t0 = time.perf_counter()
            y, back = fn(ctx, *args)
            dt = time.perf_counter() - t0
            node = ctx.node.name if ctx.node is not None else op
            cur[(op, "f")] = cur.get((op, "f"), 0.0) + dt
            cur[(node, "nf")] = cur.get((node, "nf"), 0.0) + dt
            calls[op] = calls.get(op, 0) + 1
            if node not in shapes:
                shapes[node] = op + " " + ", ".join("×".join(map(str, a.shape)) for a in args
                                                    if isinstance(a, np.ndarray) and a.ndim)
            if back is None:
                return y, None

            def timed_back(g):
                t1 = time.perf_counter()
                r = back(g)
                dt = time.perf_counter() - t1
                cur[(op, "b")] = cur.get((op, "b"), 0.0) + dt
                cur[(node, "nb")] = cur.get((node, "nb"), 0.0) + dt
                return r
            return y, timed_back
        return run

    for _ in range(2):
        s.specc_train()
        s.torch_train()
    per_step: list[dict] = []
    totals = []
    overlap_was = os.environ.get("SPECC_OVERLAP")
    try:
        # weight gradients in line (runtime/overlap.py off): each op's backward then holds all its work
        os.environ["SPECC_OVERLAP"] = "0"
        for op, fn in orig.items():
            KERNELS[op] = wrap(op, fn)
        for pair, fn in orig_fused.items():                 # a fused pair: under "first+second"
            FUSED[pair] = wrap("+".join(pair), fn)
        for _ in range(steps):
            cur.clear()
            gc.collect()
            totals.append(_timed(s.specc_train))
            per_step.append(dict(cur))
    finally:
        KERNELS.update(orig)
        FUSED.update(orig_fused)
        if overlap_was is None:
            os.environ.pop("SPECC_OVERLAP", None)
        else:
            os.environ["SPECC_OVERLAP"] = overlap_was
    ops = sorted(calls)
    med = {k: statistics.median(d.get(k, 0.0) for d in per_step) for k in {k for d in per_step for k in d}}
    specc_rows = sorted(((op, med.get((op, "f"), 0.0), med.get((op, "b"), 0.0), calls[op] // steps) for op in ops),
                        key=lambda r: -(r[1] + r[2]))
    node_rows = sorted(((n, med.get((n, "nf"), 0.0), med.get((n, "nb"), 0.0), shapes[n]) for n in shapes),
                       key=lambda r: -(r[1] + r[2]))
    from torch.profiler import ProfilerActivity, profile
    t_torch = statistics.median(_timed(s.torch_train) for _ in range(steps))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            s.torch_train()
    avg = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    torch_rows = [(e.key, e.self_cpu_time_total / 1e6 / steps, e.count // steps) for e in avg]
    res = dict(key=key, specc_step=statistics.median(totals), torch_step=t_torch, steps=steps, threads=THREADS,
               specc=[dict(op=o, fwd=f, bwd=b_, calls=c) for o, f, b_, c in specc_rows],
               torch=[dict(op=o, self=t, calls=c) for o, t, c in torch_rows],
               nodes=[dict(node=n, fwd=f, bwd=b_, what=w) for n, f, b_, w in node_rows[:top]])
    print(f"\n{key}: specc step {res['specc_step'] * 1e3:.1f} ms (kernels timed, median of {steps}), "
          f"torch {t_torch * 1e3:.1f} ms")
    print(f"  {'op':28s} {'fwd ms':>9s} {'bwd ms':>9s} {'calls':>6s}")
    for r in res["specc"][:top]:
        print(f"  {r['op']:28s} {r['fwd'] * 1e3:9.2f} {r['bwd'] * 1e3:9.2f} {r['calls']:6d}")
    print("  slowest nodes (inputs and parameters):")
    for r in res["nodes"][:8]:
        print(f"  {r['node']:28s} {r['fwd'] * 1e3:9.2f} {r['bwd'] * 1e3:9.2f}  {r['what']}")
    print("  torch, self CPU per aten op (mean per step):")
    for r in res["torch"]:
        print(f"  {r['op']:40s} {r['self'] * 1e3:9.2f} ms {r['calls']:6d}")
    return res


def gemm_rate(n: int = 1024, repeats: int = 7) -> dict:
    """Measured float32 GEMM speed on this machine at THREADS threads: NumPy's BLAS and torch's (GFLOP/s,
    best of `repeats` n×n×n products). The physical bound of a model is its FLOPs at this rate."""
    import torch
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    out = {}
    for name, fn in (("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)):
        fn()
        out[name] = 2.0 * n ** 3 / min(_timed(fn) for _ in range(repeats)) / 1e9
    return out


def profile_infer(key: str, repeats: int = 10, rate: dict | None = None) -> dict:
    """Where specc's inference time goes, per op kind (the plan's steps timed, median per kind over
    `repeats` calls) beside torch.profiler's self CPU time per aten op of the torch.nn module under
    inference_mode; and the physical bound: the model's forward FLOPs at the GEMM rate measured here."""
    import torch
    from runtime.inference_plan import plan_for
    from tools.bench_models import forward_flops
    torch.set_num_threads(THREADS)
    s = Side(BY_KEY[key])
    m = s.model.eval()
    for _ in range(2):
        s.specc_infer()
        s.torch_infer()
    plan = m.plan(s.b.infer)
    env, symbols = m._bind_inputs(s.infer_x, plan)
    ip = plan_for(m, plan, symbols)
    arrays = {k: v.data for k, v in env.items()}
    per: list[dict[str, float]] = []
    for _ in range(repeats):
        d: dict[str, float] = {}
        gc.collect()
        ip.run(arrays, profile=d)
        per.append(d)
    kinds = {k for d in per for k in d}
    med = {k: statistics.median(d.get(k, 0.0) for d in per) for k in kinds}
    counts: dict[str, int] = {}
    from runtime.inference_plan import label
    for st in ip.steps:
        counts[label(st)] = counts.get(label(st), 0) + 1
    t_specc = statistics.median(_timed(s.specc_infer) for _ in range(repeats))
    t_torch = statistics.median(_timed(s.torch_infer) for _ in range(repeats))
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            s.torch_infer()
    avg = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]
    flops = forward_flops(key, s.x)
    rate = rate or gemm_rate()
    res = dict(key=key, threads=THREADS, specc=t_specc, torch=t_torch, flops=flops, gemm=rate,
               bound=flops / (rate["numpy"] * 1e9), bound_torch=flops / (rate["torch"] * 1e9),
               ops=sorted(({"op": k, "ms": v * 1e3, "calls": counts.get(k, 0)} for k, v in med.items()),
                          key=lambda r: -r["ms"]),
               torch_ops=[{"op": e.key, "ms": e.self_cpu_time_total / 1e3 / repeats, "calls": e.count // repeats}
                          for e in avg])
    tot = sum(r["ms"] for r in res["ops"]) or 1.0
    print(f"\n{key} inference: specc {t_specc * 1e3:.2f} ms, torch {t_torch * 1e3:.2f} ms (x{t_specc / t_torch:.2f}); "
          f"{flops / 1e9:.3f} GFLOP forward; GEMM {rate['numpy']:.0f} GFLOP/s (NumPy) / {rate['torch']:.0f} (torch) "
          f"-> bound {res['bound'] * 1e3:.2f} ms / {res['bound_torch'] * 1e3:.2f} ms")
    print(f"  {'specc step kind':40s} {'ms':>8s} {'share':>6s} {'calls':>6s}")
    for r in res["ops"]:
        print(f"  {r['op']:40s} {r['ms']:8.3f} {r['ms'] / tot:6.0%} {r['calls']:6d}")
    print("  torch, self CPU per aten op (per call of the model):")
    for r in res["torch_ops"]:
        print(f"  {r['op']:40s} {r['ms']:8.3f} ms {r['calls']:6d}")
    return res


# ----------------------------------------------------------------------------------------------- report

def _cpuinfo() -> tuple[str, str, str]:
    """(model name, vendor, the widest SIMD the CPU flags list) from /proc/cpuinfo."""
    cpu, vendor, flags = "unknown", "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "model name" and cpu == "unknown":
                cpu = val.strip()
            elif key == "vendor_id" and vendor == "unknown":
                vendor = val.strip()
            elif key == "flags" and not flags:
                flags = set(val.split())
    except OSError:
        pass
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX" if "avx" in flags else "SSE"
    return cpu, vendor, simd


def _numpy_blas() -> str:
    """NumPy's BLAS as loaded: library, version, the kernels it picked (threadpoolctl), threads."""
    try:
        from threadpoolctl import threadpool_info
        for d in threadpool_info():
            if d.get("user_api") == "blas":
                return (f"{d.get('internal_api')} {d.get('version')}, {d.get('architecture')} kernels, "
                        f"{d.get('num_threads')} threads")
    except ImportError:
        pass
    try:
        import numpy
        cfg = numpy.show_config(mode="dicts")
        return cfg["Build Dependencies"]["blas"]["name"] + " " + cfg["Build Dependencies"]["blas"]["version"]
    except Exception:                                         # noqa: BLE001
        return "?"


def _torch_backends() -> str:
    """PyTorch's math libraries (torch.__config__.show(): MKL, oneDNN) and its SIMD level."""
    try:
        import torch
    except ImportError:
        return "absent"
    import re
    parts = []
    for line in torch.__config__.show().splitlines():
        line = line.strip(" -")
        if "Math Kernel Library Version" in line:
            parts.append("MKL " + line.split("Version", 1)[1].split()[0].split("-")[0])
        elif "MKL-DNN" in line or "oneDNN" in line:
            v = re.search(r"v(\d+(?:\.\d+)+)", line)
            parts.append("oneDNN " + (v.group(1) if v else "?"))
        elif line.startswith("CPU capability usage"):
            parts.append(line.split(":", 1)[1].strip() + " kernels")
    return ", ".join(parts) + f", {torch.get_num_threads()} threads"


def machine() -> dict:
    import numpy

    cpu, vendor, simd = _cpuinfo()
    info = dict(cpu=cpu, vendor=vendor, simd=simd, cores=os.cpu_count(), python=platform.python_version(),
                numpy=numpy.__version__, platform=platform.platform())
    for mod in ("torch", "onnx", "onnxruntime"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = "absent"
    info["blas"] = _numpy_blas()
    info["torch_math"] = _torch_backends()
    try:
        info["load"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        info["load"] = "?"
    return info


def _ms(t: float) -> str:
    return f"{t * 1e3:.2f}" if t < 10 else f"{t:.1f} s"


def _mark(r: float, target: float) -> str:
    return f"**{r:.2f}×**" if r > target else f"{r:.2f}×"


def render_runtime(res: dict, mem: dict | None) -> str:
    out = []
    for mode, what in (("train", "Training step (forward, loss, backward, SGD-momentum update)"),
                       ("infer", "Inference (specc: eval mode, " + ("the inference plan" if res.get("planned", True)
                                 else "without the plan") + "; torch: eval() under torch.inference_mode())")):
        out += [f"{what}, {res.get('threads', 2)} thread(s):", "",
                "| model | input | specc ms | torch ms | ratio | best-of ratio | CPU-time ratio | repeats "
                "| others busy |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["rows"]:
            out.append(f"| {r['title']} | {r['shape']} | {_ms(r[mode + '_specc'])} | {_ms(r[mode + '_torch'])} | "
                       f"{_mark(r[mode + '_ratio'], TRAIN_TARGET)} | {r[mode + '_min_ratio']:.2f}× | "
                       f"{r[mode + '_cpu_ratio']:.2f}× | {r[mode + '_n']} | {r[mode + '_others']:.1f} |")
        out.append(f"| **geometric mean** | | | | {_mark(res[mode + '_geo'], TRAIN_GEO_TARGET)} | "
                   f"{res[mode + '_min_geo']:.2f}× | {res[mode + '_cpu_geo']:.2f}× | | |")
        out.append("")
    out.append(f"Targets: each ratio ≤ {TRAIN_TARGET}×, geometric mean ≤ {TRAIN_GEO_TARGET}× (misses in **bold**). "
               "*ratio*: median over the repeats of specc time / torch time, the two measured back to back; "
               "*best-of*: best specc time / best torch time; *CPU-time ratio*: the same with process CPU time "
               "(every thread, spinning included); *others busy*: cores used by other processes meanwhile "
               "(of 2). PyTorch side: the torch.nn modules of tools/bench_models.py with specc's weights loaded.")
    if mem:
        out += ["", f"Peak memory of LeNet-5 training, batch 64: the peak RSS of 5 training steps (from a freshly "
                f"built model and optimiser, so the first step's allocations count) above the RSS before them, "
                f"median of {mem['repeats']} fresh processes per library: specc {mem['specc'] / 2**20:.1f} MiB, "
                f"PyTorch {mem['torch'] / 2**20:.1f} MiB → ratio {_mark(mem['ratio'], MEMORY_TARGET)} (target ≤ "
                f"{MEMORY_TARGET}×). Whole-process peaks: specc {mem['specc_peak'] / 2**20:.0f} MiB, PyTorch "
                f"{mem['torch_peak'] / 2**20:.0f} MiB (each process imports both libraries). Cross-check: "
                f"tracemalloc's peak of specc's live NumPy allocations during a warm step is "
                f"{mem['specc_traced'] / 2**20:.1f} MiB."]
        if not mem["reset"]:
            out.append("(the peak counter could not be reset: deltas from the process's earlier peak)")
    return "\n".join(out)


def render_onnx(res: dict) -> str:
    out = ["| model | specc export ms | torch export ms | ratio | best-of ratio | nodes specc | nodes torch "
           "| max rel. diff | repeats | others busy |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        nodes = f"**{r['nodes_specc']}**" if r["nodes_specc"] > r["nodes_torch"] else str(r["nodes_specc"])
        out.append(f"| {r['title']} | {r['specc'] * 1e3:.3f} | {r['torch'] * 1e3:.3f} | "
                   f"{_mark(r['ratio'], ONNX_TARGET)} | {r['min_ratio']:.3f}× | {nodes} | {r['nodes_torch']} | "
                   f"{r['max_rel_diff']:.0e} | {r['n']} | {r['others']:.1f} |")
    out.append(f"| **geometric mean** | | | {res['geo']:.3f}× | {res['min_geo']:.3f}× | | | | | |")
    exporters = sorted({r["exporter"] for r in res["rows"]})
    out.append("")
    out.append(f"specc: `compiler.to_onnx(graph, weights, opset=18)` (its default export). torch: "
               f"`torch.onnx.export(..., dynamo=False, opset_version=18, do_constant_folding=True)` of "
               f"tools/torch_ref.py's module with the same weights, static input shapes "
               f"(exporter used: {', '.join(exporters)}; the dynamo exporter needs onnxscript, not installed).")
    out.append("")
    out.append(f"Target: each ratio ≤ {ONNX_TARGET}× with no more nodes than torch's export (misses in **bold**). "
               "Both run in onnxruntime (CPU, intra_op_num_threads=2, default graph optimisations), same inputs.")
    diff = []
    for r in res["rows"]:
        if r["ops_specc"] != r["ops_torch"]:
            keys = sorted(set(r["ops_specc"]) | set(r["ops_torch"]))
            d = ", ".join(f"{k} {r['ops_specc'].get(k, 0)}/{r['ops_torch'].get(k, 0)}" for k in keys
                          if r["ops_specc"].get(k, 0) != r["ops_torch"].get(k, 0))
            diff.append(f"- {r['title']}: {d}")
    if diff:
        out += ["", "Node types that differ (specc/torch):", ""] + diff
    return "\n".join(out)


def render_compiler(res: dict) -> str:
    m = res["modules"]
    out = [f"- `specc check specs/resnet50.yaml`: {res['check']:.3f} s; `python -c pass`: {res['python']:.3f} s; "
           f"**beyond interpreter start-up: {res['beyond']:.3f} s** (median of {res['repeats']} paired runs; "
           "target < 0.5 s).",
           f"- modules imported by `specc check`: onnx {'yes' if m['onnx'] else 'no'}, onnxruntime "
           f"{'yes' if m['onnxruntime'] else 'no'}, numpy {'yes' if m['numpy'] else 'no'}, torch "
           f"{'yes' if m['torch'] else 'no'}, runtime {'yes' if m['runtime'] else 'no'} (target: no onnx, "
           "no onnxruntime).", "",
           "Generated specs (`tools/bench.py:generated_spec`: a flat list of n/4 uses of a residual block of "
           "linear, relu, add, layer_norm; `load` = YAML parse with positions, `expand+infer` = validation, "
           "expansion and shape inference):", "",
           "| nodes | load s | expand+infer s | total s | µs per node | growth vs previous |",
           "|---:|---:|---:|---:|---:|---:|"]
    prev = None
    for r in res["generated"]:
        growth = "" if prev is None else f"{r['total'] / prev['total']:.1f}× for {r['n'] / prev['n']:.0f}× nodes"
        out.append(f"| {r['n']:,} | {r['load']:.3f} | {r['expand']:.3f} | {r['total']:.3f} | "
                   f"{r['per_node_us']:.1f} | {growth} |")
        prev = r
    out.append("")
    out.append("Target: the 10,000-node spec expands and infers in under 2 s; growth linear in the node count.")
    return "\n".join(out)


def render_digits(res: dict) -> str:
    n = res["train_samples"]
    out = [f"Whole training run of `{res['spec']}` on builtin:digits: {n:,} training samples (the 80 % train "
           f"split of {n + res['val_samples']:,} less the {res['val_samples']} held out for validation), batch "
           f"{res['batch_size']}, {res['epochs']} epochs on both sides (early stopping off), validation after "
           f"every epoch, test on the held-out 20 % ({res['test_samples']} images), {res.get('threads', 2)} "
           f"thread(s); median of {res['repeats']} repetitions, specc and PyTorch alternating.", "",
           "| | epochs | wall s | CPU s | samples/s | test accuracy (final weights) |",
           "|---|---:|---:|---:|---:|---:|",
           f"| specc (`runtime.fit`) | {res['epochs']} | {res['specc']:.2f} | {res['specc_cpu']:.2f} | "
           f"{res['specc_rate']:,.0f} | {res['specc_test_acc']:.2%} |",
           f"| PyTorch (plain loop, tools/torch_ref.py module) | {res['epochs']} | {res['torch']:.2f} | "
           f"{res['torch_cpu']:.2f} | {res['torch_rate']:,.0f} | {res['torch_test_acc']:.2%} |",
           f"| ratio specc / PyTorch | | {res['ratio']:.2f}× | {res['specc_cpu'] / res['torch_cpu']:.2f}× "
           f"| | |", "",
           f"- `specc train {res['spec']}` as a user runs it (subprocess, early stopping on, checkpoints, "
           f"history and curves written to a temporary folder, interpreter start-up and imports included): "
           f"**{res['cli']:.2f} s** wall for {res['cli_epochs']:g} epochs"
           + (" (early stopping did not trigger)" if res["cli_epochs"] == res["epochs"] else "")
           + f"; of this, `fit` itself {res['cli_fit']:.1f} s as the CLI reports it (training, checkpoints "
           f"and curves.png); "
           f"test accuracy of the restored best weights "
           f"{res['cli_test_acc']:.2%}; median of {res['repeats']} (others busy at most "
           f"{res.get('cli_others', float('nan')):.1f} cores).",
           f"- *ratio*: median over the repetitions of specc wall time / PyTorch wall time; *samples/s*: "
           f"{n:,} × {res['epochs']} training samples / wall time (validation included in the time); "
           f"*others busy*: the most cores other processes used during any of the paired runs: "
           f"{res['others']:.1f} (of 2; a run they disturbed by more than {DISTURBED} is run again).",
           f"- Same initial weights (`runtime.Model(graph, seed={res.get('seed', 0)})` after `fit_standardize` "
           "on the training split, copied into the torch module), same standardize statistics, same mini-batch "
           f"order (fit()'s per-epoch permutation), {res.get('optimizer', 'adam')} with a "
           f"{res.get('schedule', 'cosine')} schedule stepped per epoch on both sides (runtime.optim / "
           "torch.optim); the dropout masks differ (each library's own generator). specc runs without "
           "`out_dir` (no checkpoint files, as the PyTorch loop writes none); the CLI line includes them."]
    return "\n".join(out)


def render_profile(p: dict, top: int = 8) -> str:
    tot = sum(r["fwd"] + r["bwd"] for r in p["specc"]) or 1.0
    out = [f"`{p['key']}` at {p.get('threads', 2)} thread(s): specc step {p['specc_step'] * 1e3:.1f} ms (with kernel "
           f"timers), PyTorch step {p['torch_step'] * 1e3:.1f} ms.", "",
           "| specc op | forward ms | backward ms | share | calls |", "|---|---:|---:|---:|---:|"]
    for r in p["specc"][:top]:
        out.append(f"| {r['op']} | {r['fwd'] * 1e3:.2f} | {r['bwd'] * 1e3:.2f} | "
                   f"{(r['fwd'] + r['bwd']) / tot:.0%} | {r['calls']} |")
    out += ["", "| slowest specc nodes | forward ms | backward ms | op and argument shapes |", "|---|---:|---:|---|"]
    for r in p.get("nodes", [])[:6]:
        out.append(f"| {r['node']} | {r['fwd'] * 1e3:.2f} | {r['bwd'] * 1e3:.2f} | {r['what']} |")
    out += ["", "| PyTorch aten op (self CPU) | ms | calls |", "|---|---:|---:|"]
    for r in p["torch"][:top]:
        out.append(f"| {r['op']} | {r['self'] * 1e3:.2f} | {r['calls']} |")
    return "\n".join(out)


def cpu_slug(info: dict) -> str:
    """The key of a machine's tables: CPU model, vendor and SIMD level (a run on another CPU adds a table)."""
    import re
    text = f"{info['cpu']} {info['vendor']} {info['simd']}".lower().replace("(r)", "").replace("(tm)", "")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _insert_section(doc: str, name: str, body: str, after: str) -> str:
    """Rewrite section `name` if the doc has it; else add it after the last section whose name starts with
    `after` (so tables from other CPUs stay), or at the end."""
    begin = f"<!-- bench:{name}:begin -->"
    if begin in doc:
        return _replace_section(doc, name, body)
    marker = f"<!-- bench:{after}"
    i = doc.rfind(marker)
    if i < 0:
        return _replace_section(doc, name, body)
    j = doc.index(":end -->", i) + len(":end -->")
    return doc[:j] + f"\n\n{begin}\n{body}\n<!-- bench:{name}:end -->" + doc[j:]


def render_bounds(res: dict) -> str:
    g = res["gemm"]
    out = [f"GEMM measured here ({res['n']}³ float32, best of 7, {THREADS} thread(s)): NumPy {g['numpy']:.0f} "
           f"GFLOP/s, torch {g['torch']:.0f} GFLOP/s. *bound*: the model's forward FLOPs "
           "(`tools/bench_models.py:forward_flops`) at NumPy's GEMM rate: no implementation on this BLAS does "
           "the forward pass faster. Inference, specc's planned steps timed per kind (median of 10 calls).", "",
           "| model | GFLOP | bound ms | specc ms | torch ms | specc / bound | where specc's time goes |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        tot = sum(o["ms"] for o in r["ops"]) or 1.0
        where = ", ".join(f"{o['op']} {o['ms'] / tot:.0%}" for o in r["ops"][:3])
        out.append(f"| {r['key']} | {r['flops'] / 1e9:.3f} | {r['bound'] * 1e3:.2f} | {r['specc'] * 1e3:.2f} | "
                   f"{r['torch'] * 1e3:.2f} | {r['specc'] / r['bound']:.1f}× | {where} |")
    return "\n".join(out)


def _replace_section(doc: str, name: str, body: str) -> str:
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    if begin in doc and end in doc:
        i, j = doc.index(begin), doc.index(end) + len(end)
        return doc[:i] + block + doc[j:]
    return doc.rstrip() + f"\n\n{block}\n"


DOC_HEAD = """# Benchmarks

Measured by `tools/bench.py` (see its docstring for the method). Sections between `bench:` markers are
rewritten by `python tools/bench.py ... --write`; the rest is written by hand.
"""


def write_doc(results: dict, argv: list[str]) -> None:
    doc = DOC.read_text() if DOC.exists() else DOC_HEAD
    info = machine()
    env = [f"- machine: {info['cpu']}, {info['cores']} cores ({info['platform']}), load average at the end "
           f"{info['load']}",
           f"- Python {info['python']}, NumPy {info['numpy']} ({info['blas']}), torch {info['torch']}, "
           f"onnx {info['onnx']}, onnxruntime {info['onnxruntime']}; {THREADS} thread(s) everywhere",
           f"- PyTorch's math libraries: {info.get('torch_math', '?')}",
           f"- command: `python tools/bench.py {' '.join(argv)}`",
           f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}"]
    if "runtime" in results:
        t = results["runtime"].get("threads", 2)
        tag = f"runtime@{cpu_slug(info)}" + ("" if t == 2 else f"-t{t}") + ("" if PLANNED else "-noplan")
        head = (f"### {info['cpu']} ({info['vendor']}, {info['simd']}), {t} thread(s)"
                + ("" if PLANNED else ", inference without the plan"))
        body = "\n".join([head, ""] + env + ["", render_runtime(results["runtime"], results.get("memory"))])
        doc = _insert_section(doc, tag, body, after="runtime@")
    if "bounds" in results:
        tag = f"bounds@{cpu_slug(info)}" + ("" if THREADS == 2 else f"-t{THREADS}")
        head = f"### {info['cpu']} ({info['vendor']}, {info['simd']}), {THREADS} thread(s)"
        body = "\n".join([head, ""] + env + ["", render_bounds(results["bounds"])])
        doc = _insert_section(doc, tag, body, after="bounds@")
    if "onnx" in results:
        doc = _replace_section(doc, "onnx-env", "\n".join(env))
        doc = _replace_section(doc, "onnx", render_onnx(results["onnx"]))
    if "compiler" in results:
        doc = _replace_section(doc, "compiler-env", "\n".join(env))
        doc = _replace_section(doc, "compiler", render_compiler(results["compiler"]))
    if "digits" in results:
        tag = "digits" if THREADS == 2 else f"digits-t{THREADS}"
        doc = _replace_section(doc, f"{tag}-env", "\n".join(env))
        doc = _replace_section(doc, tag, render_digits(results["digits"]))
    for key, p in results.get("profiles", {}).items():
        tag = f"profile-{key}" if THREADS == 2 else f"profile-{key}-t{THREADS}"
        doc = _replace_section(doc, tag, render_profile(p))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(doc)
    raw = DOC.with_suffix(".json")
    old = json.loads(raw.read_text()) if raw.exists() else {}
    slug = cpu_slug(info)
    for k, v in results.items():
        key = f"{k}-t{THREADS}" if k in ("runtime", "memory", "digits", "bounds") and THREADS != 2 else k
        if k in ("runtime", "memory", "bounds"):          # keyed by CPU, as their tables
            key = key.replace(k, f"{k}@{slug}", 1) + ("" if PLANNED or k != "runtime" else "-noplan")
        old[key] = v
    old[f"machine@{slug}"] = info
    raw.write_text(json.dumps(old, indent=1, default=float) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)} and {raw.relative_to(ROOT)}")


# ----------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_memory-child"]:
        print(json.dumps(memory_child(argv[1], argv[2], argv[3])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", action="store_true", help="training step and inference vs PyTorch, peak memory")
    ap.add_argument("--onnx", action="store_true", help="onnxruntime: specc's export vs torch.onnx.export's")
    ap.add_argument("--compiler", action="store_true", help="specc check start-up; generated spec scaling")
    ap.add_argument("--digits", action="store_true",
                    help="whole training run of specs/digits_cnn.yaml (20 epochs, early stopping off) vs a "
                         "PyTorch loop with the same weights, batches and schedule; plus `specc train` wall time")
    ap.add_argument("--all", action="store_true", help="all four sections (runtime, onnx, compiler, digits)")
    ap.add_argument("--data-throughput", action="store_true",
                    help="data loading: image-folder images/s decoded beside the training step time; CSV reading "
                         "(tools/bench_data.py; printed, not written to the docs)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md (and docs/benchmarks.json)")
    ap.add_argument("--models", default="", help="comma-separated subset: " + ",".join(BY_KEY))
    ap.add_argument("--profile", default="", help="comma-separated models to profile per op, training step and "
                                                   "inference (or 'misses': those over the target in this run; "
                                                   "'all': every model, inference only, with the GEMM bound)")
    ap.add_argument("--no-plan", action="store_true", help="specc's inference without runtime/inference_plan.py "
                                                          "(Model.planned = False), to measure what the plan gains")
    ap.add_argument("--no-memory", action="store_true", help="skip the LeNet-5 peak-memory measurement")
    ap.add_argument("--threads", type=int, default=2, help="threads for torch, BLAS and onnxruntime (default 2)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="before each measurement wait up to SECONDS for other processes to use < 0.3 cores")
    a = ap.parse_args(argv)
    global QUIET
    QUIET = (0.3, a.wait_quiet) if a.wait_quiet > 0 else None
    global PLANNED
    PLANNED = not a.no_plan
    if not (a.runtime or a.onnx or a.compiler or a.digits or a.all or a.profile or a.data_throughput):
        ap.error("choose --runtime, --onnx, --compiler, --digits, --all, --profile or --data-throughput")
    models = [BY_KEY[k] for k in a.models.split(",")] if a.models else MODELS
    results: dict[str, Any] = {}
    if a.runtime or a.all:
        print("== runtime: specc NumPy vs PyTorch (training step, inference)", flush=True)
        results["runtime"] = run_runtime(models, a.quick)
        if not a.no_memory:
            results["memory"] = run_memory(repeats=1 if a.quick else 3)
    if a.onnx or a.all:
        print("== onnx: onnxruntime on specc's export vs torch.onnx.export's", flush=True)
        results["onnx"] = run_onnx(models, a.quick)
    if a.compiler or a.all:
        print("== compiler", flush=True)
        results["compiler"] = run_compiler(a.quick)
    if a.digits or a.all:
        print("== digits: whole training run of specs/digits_cnn.yaml, specc vs PyTorch", flush=True)
        results["digits"] = run_digits(a.quick)
    if a.data_throughput:
        print("== data loading: image folder decoding vs training step; CSV reading", flush=True)
        from tools.bench_data import run_data_throughput
        results["data_throughput"] = run_data_throughput(a.quick)
    if a.profile == "all":
        rate = gemm_rate()
        results["bounds"] = dict(gemm=rate, n=1024, rows=[profile_infer(b.key, rate=rate) for b in models])
    elif a.profile:
        keys = a.profile.split(",")
        if keys == ["misses"]:
            keys = [r["key"] for r in results.get("runtime", {}).get("rows", [])
                    if r["train_ratio"] > TRAIN_TARGET or r["infer_ratio"] > TRAIN_TARGET]
        results["profiles"] = {k: profile_step(k) for k in keys}
        rate = gemm_rate()
        results["infer_profiles"] = {k: profile_infer(k, rate=rate) for k in keys}
    if a.write:
        write_doc(results, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
