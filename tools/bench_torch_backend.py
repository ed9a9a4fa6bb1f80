"""The torch backend's training step against the same model written directly in PyTorch (issue 11).

    python tools/bench_torch_backend.py                       # the 8 benchmark models, CPU, ~3 minutes
    python tools/bench_torch_backend.py --device cuda         # the same on a GPU
    python tools/bench_torch_backend.py --models mlp,lstm --optimizer sgd --budget 10

Each side, per step:
- **specc**: `TorchBackend.step` (runtime/torch_backend/trainer.py), the call `specc train --backend torch`
  makes for every batch: the generated module's forward (objective, and predictions/targets for the
  accuracy), the loss, backward, the non-finite checks and the torch.optim step; the batch is given as
  NumPy arrays, as the training loop gives it, and the loss and predictions come back as arrays.
- **PyTorch**: the same model written by hand with torch.nn modules (below: nn.Conv2d, nn.LSTM,
  nn.TransformerEncoderLayer, ...), as a user's loop runs it: zero_grad, forward, loss, backward,
  optimiser step, `loss.item()`; the batch starts as CPU tensors moved to the device. Twice: with
  torch.optim's default kernels (what `torch.optim.Adam(model.parameters(), lr=1e-3)` runs: a per-tensor
  loop on CPU, foreach on CUDA), and with `fused=True`, which the torch backend uses (the fairer
  comparison of everything but the optimiser's kernels).

Both sides start from the same weights (specc's initialisation, copied into the hand-written module and
checked: the two losses agree in eval mode), take the same batch (tools/bench.py's inputs and shapes) and
the same optimiser (torch.optim.Adam, lr 1e-3, unless --optimizer sgd: SGD with momentum 0.9), on the same
device and threads (--threads, default 2). The three steps take turns (the order rotates every repeat), after
a warm-up; reported: the median step time of each, the median of the per-repeat ratios specc/PyTorch
(robust to load from other processes drifting during the run), the same ratios of CPU time (process time:
with one thread, immune to the process being preempted; with several, it counts threads spinning while
waiting), and the cores other processes kept busy.
"""
from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import bench  # noqa: E402  (sets the BLAS/OpenMP thread counts from --threads before NumPy loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

TARGET = 1.05


# ----------------------------------------------------------------------------------- hand-written models

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 10))

    def forward(self, image):
        return self.net(image)


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, image):
        x = F.max_pool2d(F.relu(self.conv1(image)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


class VGG(nn.Module):
    def __init__(self, widths=(32, 64, 128)):
        super().__init__()
        layers, c = [], 3
        for w in widths:
            for _ in range(2):
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                c = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2048, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, image):
        return self.classifier(self.features(image))


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (and names)."""

    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, stages = 64, []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, planes, stride), BasicBlock(planes, planes, 1)))
            cin = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, classes)

    def forward(self, image):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(image))), 3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10000, 64)
        self.lstm = nn.LSTM(64, 128, batch_first=True)
        self.fc = nn.Linear(128, 2)

    def forward(self, tokens):
        _, (h, _) = self.lstm(self.embedding(tokens))
        return self.fc(h[-1])


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.encoder(x).mean(1))


class GCNLayer(nn.Module):
    """Kipf & Welling's layer on a dense adjacency, normalised in forward (as PyG's GCNConv, cached=False)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x, adj):
        d = (adj.sum(-1) + 1).rsqrt().unsqueeze(-1)
        h = F.linear(x, self.weight) * d
        return (adj @ h + h) * d + self.bias


class GCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = GCNLayer(1433, 16)
        self.conv2 = GCNLayer(16, 7)

    def forward(self, x, adj):
        x = F.relu(self.conv1(F.dropout(x, 0.5, self.training), adj))
        return self.conv2(F.dropout(x, 0.5, self.training), adj)


class ConvAutoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())

    def forward(self, image):
        return self.decoder(self.encoder(image))


# key -> (module, its inputs, loss(output, batch))
def _ce(out, batch):
    return F.cross_entropy(out, batch["label"])


HAND = {
    "mlp": (MLP, ["image"], _ce),
    "lenet5": (LeNet5, ["image"], _ce),
    "vgg_bn": (VGG, ["image"], _ce),
    "resnet18": (ResNet18, ["image"], _ce),
    "lstm": (LSTMClassifier, ["tokens"], _ce),
    "transformer": (Transformer, ["x"], _ce),
    "gcn": (GCN, ["x", "adj"], _ce),
    "conv_autoencoder": (ConvAutoencoder, ["image"], lambda out, batch: F.mse_loss(out, batch["image"])),
}


def copy_weights(src: dict[str, torch.Tensor], dst: nn.Module) -> None:
    """Load the generated module's state into the hand-written one: a key matches the source key with the
    same last two name parts and shape (linear2.bias), else the next unused one with the same leaf name and
    shape, in order (the two modules list their layers in the same order)."""
    free = list(src)
    want = dst.state_dict()
    out = {}
    for k, t in want.items():
        tail = ".".join(k.split(".")[-2:])
        same = [s for s in free if src[s].shape == t.shape and s.split(".")[-1] == k.split(".")[-1]]
        pick = next((s for s in same if s.endswith(tail)), same[0] if same else None)
        if pick is None:
            raise SystemExit(f"no weight of the generated module fits {k} {list(t.shape)}")
        free.remove(pick)
        out[k] = src[pick].detach().clone()
    if free:
        raise SystemExit(f"generated weights left over: {free}")
    dst.load_state_dict(out, strict=True)


# ----------------------------------------------------------------------------------------------- sides

class Pair:
    """One benchmark model on both sides: the torch backend's step and the hand-written module's."""

    def __init__(self, b: bench.Bench, device: str, optimizer: str):
        import runtime
        from compiler.spec import Optimizer, Train
        from runtime.loop import Run, Where, _optimisers
        from runtime.torch_backend.trainer import TorchBackend
        from runtime.train import make_plan

        self.b, self.key = b, b.key
        g = bench.compile_bench(b)
        opt = Optimizer(type="adam", lr=1e-3) if optimizer == "adam" else Optimizer(type="sgd", lr=0.01, momentum=0.9)
        cfg = Train(objective=b.loss, optimizer=opt)
        self.backend = TorchBackend(runtime.Model(g, seed=0), device)
        plan = make_plan(self.backend.model, cfg)
        self.backend.prepare(plan, cfg)
        _optimisers(Run(self.backend, cfg, plan, 1, None, None, None, print, None))   # what specc train does
        self.phase = plan.phases[0]
        self.refs = list(self.phase.terms) + ([plan.predict, plan.target] if plan.metrics else [])
        self.where = Where(1, 1, None)
        x = bench.make_inputs(g, b)
        self.feed = {k: x[k] for k in plan.needed}
        self.backend.model.train()

        cls, self.hand_inputs, self.loss = HAND[b.key]
        self.dev = torch.device(device)
        self.hand = cls().to(self.dev)
        copy_weights(self.backend.model.module.state_dict(), self.hand)
        self.batch = {k: torch.from_numpy(v) for k, v in x.items()}       # CPU tensors, as from a DataLoader
        self.fused = copy.deepcopy(self.hand)
        self.opt = _optimizer(optimizer, self.hand.parameters())                   # torch's default kernels
        self.fused_opt = _optimizer(optimizer, self.fused.parameters(), fused=True)
        self.hand.train()
        self.fused.train()
        self.check = self._same_loss()

    def _same_loss(self) -> float:
        """|difference| / |loss| of the two sides' losses in eval mode, before any step."""
        with torch.no_grad():
            self.backend.model.eval()
            self.hand.eval()
            a = float(self.backend.model(outputs=[self.b.loss], **self.feed)[self.b.loss])
            batch = {k: v.to(self.dev) for k, v in self.batch.items()}
            out = self.hand(*[batch[k] for k in self.hand_inputs])
            h = float(self.loss(out, batch))
            self.backend.model.train()
            self.hand.train()
        return abs(a - h) / max(abs(h), 1e-12)

    def specc_step(self) -> None:
        outs = self.backend.step(self.phase, self.refs, self.feed, self.where)
        float(outs[self.b.loss])                 # the loop reads the loss for its progress line
        self._sync()

    def torch_step(self) -> None:
        self._hand_step(self.hand, self.opt)

    def torch_fused_step(self) -> None:
        self._hand_step(self.fused, self.fused_opt)

    def _hand_step(self, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad()
        batch = {k: v.to(self.dev) for k, v in self.batch.items()}
        loss = self.loss(model(*[batch[k] for k in self.hand_inputs]), batch)
        loss.backward()
        opt.step()
        loss.item()
        self._sync()

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize()


def _optimizer(kind: str, params, **kw) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=1e-3, **kw)
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, **kw)


def compare(fns: list, budget: float, lo: int, hi: int, warmup: int = 2) -> tuple[list, list, float]:
    """Warm each up, then run them in turn, the order rotating every repeat (load from other processes hits
    all alike); the repeat count fits `budget` seconds. Returns the wall times and the CPU times per
    function, and the cores other processes kept busy meanwhile."""
    est = 0.0
    for i in range(warmup):
        est = sum(bench._timed(f) for f in fns) + len(fns) * bench.GAP
        if est > 3.0:                       # a slow step (ResNet-18 on a CPU): one warm-up round is enough
            break
    n = int(min(hi, max(lo, budget // max(est, 1e-6))))
    times: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    busy0, self0 = bench._busy()
    w0 = time.perf_counter()
    for i in range(n):
        gc.collect()
        for j in [(i + k) % len(fns) for k in range(len(fns))]:
            w, c = bench._timed2(fns[j])
            times[j].append(w)
            cpu[j].append(c)
    busy1, self1 = bench._busy()
    wall = time.perf_counter() - w0
    return times, cpu, max(0.0, ((busy1 - busy0) - (self1 - self0)) / wall)


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


# ----------------------------------------------------------------------------------------------- main

def run(keys: list[str], device: str, optimizer: str, budget: float) -> list[dict]:
    rows = []
    for key in keys:
        p = Pair(bench.BY_KEY[key], device, optimizer)
        (s, t, f), (cs, ct, cf), others = compare([p.specc_step, p.torch_step, p.torch_fused_step], budget,
                                                  lo=5, hi=40)
        row = dict(key=key, title=p.b.title, shape=p.b.shape_text, specc=statistics.median(s),
                   torch=statistics.median(t), fused=statistics.median(f), ratio=_ratio(s, t), ratio_fused=_ratio(s, f),
                   cpu=_ratio(cs, ct), cpu_fused=_ratio(cs, cf), best=min(s) / min(t), n=len(s), others=others,
                   check=p.check)
        rows.append(row)
        print(f"{key:17s} specc {row['specc'] * 1e3:9.2f} ms  torch {row['torch'] * 1e3:9.2f} ms  "
              f"fused {row['fused'] * 1e3:9.2f} ms  x{row['ratio']:.3f} (vs fused x{row['ratio_fused']:.3f}, best-of "
              f"x{row['best']:.3f}, CPU time x{row['cpu']:.3f} / x{row['cpu_fused']:.3f}, n={row['n']}, others busy {others:.1f} cores, same loss: {p.check:.1e})",
              flush=True)
        del p
        gc.collect()
    return rows


def table(rows: list[dict], info: dict, args: argparse.Namespace) -> str:
    head = (f"{info['cpu']} ({info['cores']} cores), torch {info['torch']}, {bench.THREADS} threads, "
            f"device {args.device}, optimiser {args.optimizer}; load average {info['load']}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    out = [head, "", "| model | batch | specc ms | PyTorch ms | ratio | PyTorch, fused=True ms | ratio "
                     "| CPU-time ratios | repeats | other processes (cores) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['title']} | {r['shape']} | {r['specc'] * 1e3:.2f} | {r['torch'] * 1e3:.2f} | "
                   f"{r['ratio']:.3f}{_mark(r['ratio'])} | {r['fused'] * 1e3:.2f} | "
                   f"{r['ratio_fused']:.3f}{_mark(r['ratio_fused'])} | {r['cpu']:.3f} / {r['cpu_fused']:.3f} "
                   f"| {r['n']} | {r['others']:.1f} |")
    geo = bench.geomean([r["ratio"] for r in rows])
    geo_f = bench.geomean([r["ratio_fused"] for r in rows])
    out.append(f"\ngeometric means of the ratios: {geo:.3f}, {geo_f:.3f} against fused=True "
               f"(target: every ratio ≤ {TARGET}; ✗ marks one above)")
    return "\n".join(out)


def _mark(r: float) -> str:
    return "" if r <= TARGET else " ✗"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(HAND), help="comma-separated keys (default: all 8)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--threads", type=int, default=2, help="torch/BLAS threads (default 2)")
    ap.add_argument("--budget", type=float, default=12.0, help="seconds of timed repeats per model (default 12)")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in keys if k not in HAND]
    if bad:
        ap.error(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(HAND)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(bench.THREADS)
    np.random.seed(0)
    torch.manual_seed(0)
    rows = run(keys, args.device, args.optimizer, args.budget)
    print()
    print(table(rows, bench.machine(), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
