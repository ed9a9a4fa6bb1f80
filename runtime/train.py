"""fit(): train a Model as its spec's `train` section says (what `specc train` runs).

    model = runtime.Model(graph, seed=graph.train.seed)
    history = runtime.fit(model, "data/train.npz", out_dir="runs/lenet5")

What one epoch does, in order: shuffle the training split with the run's seeded generator; for every
mini-batch, augment the configured image input (training batches only), then for every phase (a plain
objective is one phase over all trainable parameters) and each of its `steps`: forward with a tape, the
weighted sum of the objective's terms, backward, gradient clipping (by global norm, as
torch.nn.utils.clip_grad_norm_, or by value), one optimiser step over the phase's parameters. Then the
validation split is evaluated (eval mode, no tape), the schedule steps (per epoch; plateau on its monitored
value), the best weights are tracked on the checkpoint monitor, and the checkpoints and history are
written.

Choices, where the spec language leaves room:
- History keys are `train.loss`, `val.loss`, one `train.<term>`/`val.<term>` per term of a weighted
  objective, one per phase objective with phases (`train.loss` is then their sum), the metrics
  (`train.accuracy` — measured on the training batches as they are trained, in training mode, as Keras
  does — and `val.accuracy`, ...), `lr` (the first optimiser's first group, before lr_scale) and `time`.
- best.npz follows `train.checkpoint.monitor`; without it, early stopping's monitor; without that, the last
  epoch for a spec with phases (a GAN), else `val.loss` (or `train.loss` without validation data). A
  `val.*` monitor without validation data falls back to `train.*`, with a note.
- A term with `reduction: sum` is reported per sample (divided by its batch's size), since training and
  evaluation batches differ in size.
- `restore_best: true` loads the best weights when training ends, whether it stopped early or not.
- `lr_scale`: the first glob (in the order written) that matches a parameter sets its scale.
- `predict`/`target` default to the logits and target of the objective when it is a single
  cross_entropy, nll_loss, bce_loss or bce_with_logits node; `metrics` then defaults to accuracy.
- `standardize: {from_data: true}` nodes get the per-channel mean and (population) standard deviation of
  their input over the training split (all dims but dim 1), in graph order; a channel with zero spread
  gets std 1. A resumed run keeps the fitted values from its checkpoint.
- A non-finite loss stops training with an error naming the first node whose output is not finite (the
  batch is re-run with Model.check_finite); the checkpoints of the last completed epoch are left as they
  were. Non-finite gradients with a finite loss stop training the same way, naming the parameters.
- `last.npz` carries everything a resumed run needs (optimiser moments, schedule, early-stopping counters,
  the generators' states, the history, and the best weights when restore_best is on), so an interrupted
  run resumed with `resume=` ends with the same weights, bit for bit, as one that was never interrupted.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.files import WriteError
from compiler.spec import Train

from . import data as D
from . import metrics as M
from . import optim
from . import schedule as S
from .augment import Augmenter
from .checkpoint import check_numeric, read_npz, save, split
from .model import Model, NonFiniteError
from .progress import Progress, epoch_legend, epoch_line
from .tensor import Entry, Tensor

CLASSIFY_LOSSES = ("cross_entropy", "nll_loss", "bce_loss", "bce_with_logits")
REGRESSION_LOSSES = ("mse_loss", "l1_loss")          # give predict/target when train.metrics asks for some
PROBABILITY_OPS = ("sigmoid", "softmax")
STATE_KIND = "specc.train_state"
SHORT = {"accuracy": "acc", "precision": "prec", "recall": "rec", "f1": "f1"}


@dataclass
class Phase:
    label: str                              # history key: "loss" or the phase objective's name
    terms: dict[str, float]                 # objective reference -> weight
    params: dict[str, Tensor] = field(default_factory=dict)
    steps: int = 1
    optimizer: Any = None


@dataclass
class Plan:
    """What a training or evaluation run computes, derived from the train section and the graph."""

    phases: list[Phase]
    predict: str | None
    target: str | None
    probabilities: bool
    metrics: list[str]
    needed: list[str]                       # inputs read from the data
    noise: dict[str, str] = field(default_factory=dict)   # inputs drawn per batch instead (train.noise)
    per_sample: set[str] = field(default_factory=set)     # terms summed over the batch: reported / samples
    ignore_index: int | None = None         # the classification loss's: left out of the metrics
    masks: dict[str, str] = field(default_factory=dict)   # split -> input that masks its metrics (train.mask)

    def accumulator(self) -> M.Accumulator:
        return M.Accumulator(self.probabilities, metrics=tuple(self.metrics), ignore_index=self.ignore_index)

    def mask(self, batch: dict[str, Any], split_: str) -> np.ndarray | None:
        name = self.masks.get(split_)
        return None if name is None else batch[name]

    @property
    def refs(self) -> list[str]:
        out = [r for p in self.phases for r in p.terms]
        if self.predict and self.target:
            out += [self.predict, self.target]
        return list(dict.fromkeys(out))


def _terms(obj: Any) -> dict[str, float]:
    if isinstance(obj, str):
        return {obj: 1.0}
    return {str(k): float(v) for k, v in obj.items()}


def make_plan(model: Model, cfg: Train) -> Plan:
    g = model.graph
    if cfg.phases:
        phases = [Phase(p.objective if isinstance(p.objective, str) else f"phase{i + 1}", _terms(p.objective),
                        steps=max(1, p.steps)) for i, p in enumerate(cfg.phases)]
    else:
        obj = cfg.objective
        if obj is None:
            losses = [n for n in g.nodes if n.op in _loss_ops() and n.out.rank == 0 and n.block is None]
            if len(losses) != 1:
                raise UserError("the spec's train section has no objective" +
                                (f" and there are {len(losses)} scalar losses to choose from"
                                 if losses else " and the graph has no scalar loss"),
                                hint="add train.objective: the name of a scalar loss node, or a weighted "
                                     "{loss: 1.0, aux: 0.3}")
            obj = losses[0].name
        phases = [Phase("loss", _terms(obj))]
    for p in phases:
        for ref in p.terms:
            r = model.resolve(ref)
            t = g.type_of(r)
            if t.rank != 0:
                raise UserError(f"the objective '{ref}' must be a scalar, but it has shape {t}")
    predict, target = cfg.predict, cfg.target
    probabilities = False
    if (predict is None or target is None) and len(phases) == 1 and len(phases[0].terms) == 1:
        ref = model.resolve(next(iter(phases[0].terms)))
        node = g.node(ref.node) if g.has_node(ref.node) else None
        if node is not None and (node.op in CLASSIFY_LOSSES or node.op in REGRESSION_LOSSES and cfg.metrics) \
                and len(node.inputs) >= 2 and None not in node.inputs[:2]:
            predict = predict or str(node.inputs[0])
            target = target or str(node.inputs[1])
            probabilities = node.op == "bce_loss"
    if predict is not None:
        r = model.resolve(predict)
        if g.has_node(r.node) and g.node(r.node).op in PROBABILITY_OPS:
            probabilities = True
    if target is not None:
        model.resolve(target)
    metrics = [m for m in cfg.metrics if m != "confusion_matrix"]
    if (cfg.metrics and not (predict and target)):
        raise UserError(f"train.metrics ({', '.join(cfg.metrics)}) need train.predict and train.target",
                        hint="e.g. predict: logits, target: label")
    if not cfg.metrics and predict and target:
        metrics = ["accuracy"]
    plan = Plan(phases, predict, target, probabilities, metrics, [])
    plan.per_sample = {r for p in phases for r in p.terms if _sums_over_batch(model, r)}
    read = D.needed_inputs(g, plan.refs)
    plan.noise = {k: v for k, v in cfg.noise.items() if k in read}
    plan.needed = [k for k in read if k not in plan.noise]
    _metric_options(plan, model, cfg)
    return plan


def _sums_over_batch(model: Model, ref: str) -> bool:
    """A loss with reduction: sum grows with the batch; its history value is divided by the batch size."""
    r = model.resolve(ref)
    g = model.graph
    return g.has_node(r.node) and getattr(g.node(r.node).attrs, "reduction", None) == "sum"


def _metric_options(plan: Plan, model: Model, cfg: Train) -> None:
    """The loss's ignore_index and the train.mask inputs (read from the data too) for the metrics."""
    g = model.graph
    for n in g.nodes:
        if n.op == "cross_entropy" and len(n.inputs) > 1 and str(n.inputs[1]) == plan.target:
            plan.ignore_index = getattr(n.attrs, "ignore_index", None)
    for split_, name in cfg.mask.items():
        if name not in g.inputs:
            raise UserError(f"train.mask: '{name}' (the {split_} mask) is not an input of the spec",
                            hint=did_you_mean(name, list(g.inputs)))
    if plan.predict and plan.target and plan.metrics:
        M.check_shapes(plan.metrics, plan.predict, g.type_of(model.resolve(plan.predict)).shape, plan.target,
                       g.type_of(model.resolve(plan.target)).shape, {k: g.inputs[k].shape for k in cfg.mask.values()})
    if cfg.mask and plan.metrics:
        plan.masks = dict(cfg.mask)
        plan.needed += [k for k in dict.fromkeys(cfg.mask.values()) if k not in plan.needed]


def draw_noise(plan: Plan, graph: Any, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The train.noise inputs for a batch of n samples: N(0, 1) ("normal") or U[0, 1) ("uniform"), float32."""
    out = {}
    for name, kind in plan.noise.items():
        shape = (n,) + tuple(graph.inputs[name].shape[1:])
        x = rng.standard_normal(shape, np.float32) if kind == "normal" else rng.random(shape, np.float32)
        out[name] = x.astype(graph.inputs[name].dtype, copy=False)
    return out


def _loss_ops() -> set[str]:
    from compiler.ops import OPS
    return {k for k, v in OPS.items() if getattr(v, "loss", False)}


def weighted_sum(outs: dict[str, Tensor], terms: dict[str, float]) -> Tensor:
    """The weighted sum of scalar terms as one Tensor on the tape."""
    if len(terms) == 1 and next(iter(terms.values())) == 1.0:
        return outs[next(iter(terms))]
    ts = [outs[k] for k in terms]
    ws = list(terms.values())
    dtype = ts[0].data.dtype
    total = Tensor(np.asarray(sum(w * t.data.astype(np.float64) for w, t in zip(ws, ts)), dtype=dtype))
    if any(t.tracked for t in ts):
        entry = Entry(lambda gy: tuple(np.asarray(gy * w, dtype=dtype) for w in ws), ts, [total])
        total._entry = entry
    return total


# -- standardize from data -----------------------------------------------------------------------------
def fit_standardize(model: Model, ds: D.Dataset, batch_size: int = 512, log: Callable | None = None) -> list[str]:
    """Fit every `standardize: {from_data: true}` node's mean/std on `ds`; returns the nodes fitted. A node
    whose mean and std were loaded from another run (model.pretrained: runtime.load, --init) keeps them: a
    pretrained network expects its inputs scaled as in the data it was trained on."""
    g = model.graph
    nodes = [n for n in g.nodes if n.op == "standardize" and getattr(n.attrs, "from_data", False)]
    tensors = model.named_tensors()
    was_training = model.training
    model.eval()
    kept = [n for n in nodes if n.params and {n.param_name(p) for p in n.params} <= model.pretrained]
    if kept and log:
        log(f"standardize {', '.join(repr(n.name) for n in kept)}: keeping the statistics of the loaded weights")
    nodes = [n for n in nodes if n.name not in {k.name for k in kept}]
    try:
        for node in nodes:
            ref = str(node.inputs[0])
            needed = D.needed_inputs(g, [ref])
            count, mean, m2 = 0, None, None
            for batch in ds.batches(batch_size):
                x = model(outputs=[ref], **{k: batch[k] for k in needed})[ref].astype(np.float64)
                axes = tuple(i for i in range(x.ndim) if i != 1)
                n = int(np.prod([x.shape[i] for i in axes]))
                bm = x.mean(axis=axes)
                bm2 = ((x - bm.reshape((1, -1) + (1,) * (x.ndim - 2))) ** 2).sum(axis=axes)
                if mean is None:
                    count, mean, m2 = n, bm, bm2
                else:                           # Chan et al.'s parallel update
                    delta = bm - mean
                    tot = count + n
                    mean = mean + delta * n / tot
                    m2 = m2 + bm2 + delta ** 2 * count * n / tot
                    count = tot
            std = np.sqrt(m2 / max(count, 1))
            std = np.where(std > 1e-8, std, 1.0)
            names = {p.name: node.param_name(p) for p in node.params}
            tensors[names["mean"]].data = mean.astype(np.float32)
            tensors[names["std"]].data = std.astype(np.float32)
            if log:
                c = mean.size
                show = (f"mean {mean[0]:.4g}, std {std[0]:.4g}" if c == 1 else
                        f"{c} channels, mean {mean.mean():.4g} on average, std {std.mean():.4g} on average")
                log(f"standardize '{node.name}': fitted on {len(ds)} training samples ({show})")
    finally:
        model.train(was_training)
    return [n.name for n in nodes]


# -- evaluation -----------------------------------------------------------------------------------------
def evaluate(model: Model, data: Any, *, config: Train | None = None, batch_size: int | None = None,
             plan: Plan | None = None, split: str = "test") -> dict[str, Any]:
    """Loss (each objective term too) and metrics over a data set, in eval mode, without a tape.

    Returns {"loss", <terms>..., "accuracy", "precision", "recall", "f1", "confusion_matrix", "samples"};
    the metrics only when predict and target are known. `split` chooses the train.mask entry."""
    cfg = config or model.graph.train or Train()
    plan = plan or make_plan(model, cfg)
    ds = data if isinstance(data, D.Dataset) and data.meta.get("checked") else D.as_dataset(
        model.graph, data, plan.needed, "eval")
    bs = max(batch_size or cfg.batch_size, 256)
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    acc = plan.accumulator() if plan.predict and plan.target else None
    n_total = 0
    noise_rng = np.random.default_rng([cfg.seed, 4])       # the same noise at every evaluation
    try:
        for batch in D.prefetch(ds.batches(bs)):
            n = ds.batch_len(batch)
            feed = {k: batch[k] for k in plan.needed}
            feed.update(draw_noise(plan, model.graph, n, noise_rng))
            out = model(outputs=plan.refs, **feed)
            for key, val in _losses(plan, out, n).items():
                sums[key] = sums.get(key, 0.0) + val * n
            if acc is not None:
                acc.update(out[plan.predict], out[plan.target], plan.mask(batch, split))
            n_total += n
    finally:
        model.train(was_training)
    res: dict[str, Any] = {k: v / max(n_total, 1) for k, v in sums.items()}
    if acc is not None:
        res.update(acc.result())
        res["confusion_matrix"] = acc.cm
    res["samples"] = n_total
    return res


def _losses(plan: Plan, out: dict[str, Any], n: int) -> dict[str, float]:
    """History entries of one batch of n samples: 'loss' and the per-term / per-phase values. A term with
    reduction: sum is divided by n (a per-sample value), so the training and evaluation batch sizes, which
    differ, do not show in the numbers."""
    def val(ref: str) -> float:
        v = out[ref]
        v = float(v.data if isinstance(v, Tensor) else v)
        return v / max(n, 1) if ref in plan.per_sample else v

    res: dict[str, float] = {}
    if len(plan.phases) == 1:
        terms = plan.phases[0].terms
        res["loss"] = sum(w * val(r) for r, w in terms.items())
        if len(terms) > 1:
            res.update({part_key(r): val(r) for r in terms})
    else:
        total = 0.0
        for p in plan.phases:
            v = sum(w * val(r) for r, w in p.terms.items())
            res[part_key(p.label)] = v
            total += v
        res["loss"] = total
    return res


def part_key(name: str) -> str:
    """History key of an objective term or phase; 'loss' is the total, so a term called loss is loss_term."""
    return "loss_term" if name == "loss" else name


# -- helpers for fit ------------------------------------------------------------------------------------
def _matching(names: list[str], patterns: list[str], what: str) -> list[str]:
    out = []
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise UserError(f"{what}: the glob '{pat}' matches no trainable parameter",
                            hint=did_you_mean(pat, names) or f"parameters look like: {', '.join(names[:4])}")
        out += hits
    return list(dict.fromkeys(out))


def _mode(monitor: str, mode: str = "auto") -> str:
    return S.monitor_mode(monitor, mode)


def _better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


LAST = "last"


@dataclass
class Tracker:
    """The best epoch on one monitored history key; `last` makes every epoch the best."""

    monitor: str
    mode: str = "auto"
    min_delta: float = 0.0
    value: float | None = None
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.monitor != LAST:
            self.mode = _mode(self.monitor, self.mode)

    def update(self, rec: dict[str, Any], epoch: int) -> bool:
        """Record an epoch; True when it is the new best."""
        if self.monitor == LAST:
            self.epoch = epoch
            return True
        if not _better(rec.get(self.monitor), self.value, self.mode, self.min_delta):
            return False
        self.value, self.epoch = float(rec[self.monitor]), epoch
        return True


def _checkpoint_tracker(cfg: Train, stop: Tracker | None, has_val: bool, monitor_key: Callable) -> Tracker:
    """What best.npz follows: train.checkpoint.monitor; else early stopping's monitor; else the last epoch
    for a spec with phases (a GAN's summed losses say nothing about its samples); else val.loss."""
    ck = cfg.checkpoint
    if ck is not None and ck.monitor is not None:
        if ck.monitor == LAST:
            return Tracker(LAST)
        m = monitor_key(ck.monitor, "train.checkpoint")
        same = stop is not None and stop.monitor == m
        return Tracker(m, ck.mode, stop.min_delta if same else 0.0)
    if stop is not None:
        return Tracker(stop.monitor, stop.mode, stop.min_delta)
    if cfg.phases:
        return Tracker(LAST)
    return Tracker(monitor_key("val.loss" if has_val else "train.loss", "the best checkpoint"),
                   ck.mode if ck is not None else "auto")


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state


def _set_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    from compiler.files import atomic_write_text
    cols: list[str] = []
    for rec in history:
        for k in rec:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for rec in history:
        w.writerow(["" if rec.get(c) is None else (format(rec[c], ".8g") if isinstance(rec[c], float)
                                                   else rec[c]) for c in cols])
    atomic_write_text(path, buf.getvalue())


def plot_curves(path: Path, history: list[dict[str, Any]], log: Callable | None = None,
                best_epoch: int | None = None) -> bool:
    """curves.png: one panel for the loss and one per metric, train and validation per epoch; a dashed line
    marks the best epoch."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        if log:
            log("note: matplotlib is not installed, so curves.png was not drawn (pip install matplotlib)")
        return False
    from compiler.files import atomic_write
    keys: list[str] = []
    for rec in history:
        for k in rec:
            if k.startswith(("train.", "val.")):
                q = k.split(".", 1)[1]
                if q not in keys:
                    keys.append(q)
    if not keys:
        return False
    fig = Figure(figsize=(4.2 * min(len(keys), 3), 3.2 * math.ceil(len(keys) / 3)), dpi=100)
    FigureCanvasAgg(fig)
    cols = min(len(keys), 3)
    rows = math.ceil(len(keys) / cols)
    epochs = [r["epoch"] for r in history]
    for i, q in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        for split_, style in (("train", "-o"), ("val", "-s")):
            ys = [r.get(f"{split_}.{q}") for r in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else y for y in ys], style, markersize=3, label=split_)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=0.8, label=f"best ({best_epoch})")
        ax.set_title(q)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png")

    atomic_write(path, write)
    return True


# -- fit ------------------------------------------------------------------------------------------------
def fit(model: Model, train_data: Any, val_data: Any = None, *, epochs: int | None = None,
        out_dir: str | Path | None = None, resume: str | Path | None = None, log: Callable | None = print,
        config: Train | None = None, seed: int | None = None, progress: Progress | bool | None = None,
        callback: Callable[[int, dict], Any] | None = None) -> list[dict[str, Any]]:
    """Train `model` on `train_data` (a .npz path, builtin:NAME, {name: array} or a data.Dataset).

    `val_data` is a data set, a fraction of the training data (float), or None (then `train.data.val` when
    it is a fraction). `out_dir` receives best.npz, last.npz, history.csv and curves.png. `resume` is a
    last.npz to continue from. `callback(epoch, record)` runs after each epoch's checkpoints; returning
    False stops training. Returns the history: one dict per epoch."""
    g = model.graph
    cfg = config or g.train
    if cfg is None:
        raise UserError(f"the spec '{g.name}' has no train section",
                        hint="add train: {objective: <loss node>, optimizer: {type: adam, lr: 1.0e-3}}")
    say = log or (lambda *a, **k: None)
    seed = cfg.seed if seed is None else seed
    ckpt = None
    if resume is not None:
        ckpt = split(read_npz(resume, "checkpoint"))
        check_numeric(ckpt[0], resume)
        if ckpt[1].get("kind") != STATE_KIND:
            raise UserError(f"'{resume}' holds weights only, not a training state to resume from",
                            hint="resume from the run's last.npz")
        if ckpt[1].get("spec_hash") and ckpt[1]["spec_hash"] != g.spec_hash:
            raise UserError(f"'{resume}' was made from a different spec (or different --set params)",
                            hint="resume with the same spec and params, or start a new run")
        if epochs is None:                  # continue to the interrupted run's goal
            epochs = int(ckpt[1].get("epochs", cfg.epochs))
    epochs = cfg.epochs if epochs is None else epochs
    plan = make_plan(model, cfg)

    # data
    train_ds = D.as_dataset(g, train_data, plan.needed, "train")
    if val_data is None and isinstance(cfg.data.val, float) and not isinstance(cfg.data.val, bool):
        val_data = cfg.data.val
    if isinstance(val_data, float):
        train_ds, val_ds = D.split(train_ds, val_data, seed, "val")
    elif val_data is not None:
        val_ds = D.as_dataset(g, val_data, plan.needed, "val")
    else:
        val_ds = None
    for ds in (train_ds, val_ds):
        if ds is not None:
            ds.meta["checked"] = True
    model.data_meta = train_ds.meta.get("derived")     # category names, classes, vocabulary: saved with checkpoints

    # parameters: freeze, phases, optimisers, schedule
    all_names = [k for k in model.named_tensors() if k not in model._buffers]
    if cfg.freeze:
        model.freeze(_matching(all_names, cfg.freeze, "train.freeze"))
    trainable = model.parameters()
    if not trainable:
        raise UserError("nothing to train: every parameter is frozen (or the model has none)")
    if cfg.lr_scale:
        _matching(all_names, list(cfg.lr_scale), "train.lr_scale")
    if cfg.phases:
        for ph, spec in zip(plan.phases, cfg.phases):
            names = [n for n in _matching(all_names, spec.update, f"phase '{ph.label}' update") if n in trainable]
            if not names:
                raise UserError(f"phase '{ph.label}': every parameter its update globs match is frozen")
            ph.params = {n: trainable[n] for n in names}
            ph.steps = spec.steps
            ph.optimizer = optim.make(spec.optimizer or cfg.optimizer, optim.grouped(ph.params, cfg.lr_scale))
    else:
        ph = plan.phases[0]
        ph.params = dict(trainable)
        ph.optimizer = optim.make(cfg.optimizer, optim.grouped(ph.params, cfg.lr_scale))
    optimizers = [p.optimizer for p in plan.phases]
    sched = S.make(cfg.schedule, optimizers, epochs)

    # monitors
    parts = ([*plan.phases[0].terms] if len(plan.phases) == 1 and len(plan.phases[0].terms) > 1
             else [p.label for p in plan.phases] if len(plan.phases) > 1 else [])
    keys = ["loss"] + [part_key(k) for k in parts] + plan.metrics
    es = cfg.early_stopping

    def monitor_key(m: str, what: str) -> str:
        part, _, q = m.partition(".")
        if part not in ("train", "val") or q not in keys:
            opts = [f"{s}.{k}" for s in ("train", "val") for k in keys]
            raise UserError(f"{what} monitors '{m}', which this run does not measure",
                            hint=did_you_mean(m, opts) or f"choose one of: {', '.join(opts)}")
        if part == "val" and val_ds is None:
            say(f"note: no validation data, so {what} monitors 'train.{q}' instead of '{m}'")
            return f"train.{q}"
        return m

    stop = Tracker(monitor_key(es.monitor, "early_stopping"), es.mode, es.min_delta) if es else None
    best = _checkpoint_tracker(cfg, stop, val_ds is not None, monitor_key)
    plateau_key = monitor_key(cfg.schedule.monitor, "the plateau schedule") if cfg.schedule.type == "plateau" else None

    augment = None
    if cfg.augment is not None:
        name = cfg.augment.input
        if name not in g.inputs:
            raise UserError(f"augment: unknown input '{name}'", hint=did_you_mean(name, list(g.inputs)))
        augment = Augmenter(name, cfg.augment.ops, g.inputs[name].shape)

    # state
    shuffle_rng = np.random.default_rng([seed, 0])
    aug_rng = np.random.default_rng([seed, 1])
    model.rng = np.random.default_rng([seed, 2])
    noise_rng = np.random.default_rng([seed, 3])
    history: list[dict[str, Any]] = []
    best_state: dict[str, np.ndarray] | None = None
    wait = 0
    start = 0
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise UserError(f"the output folder '{out}' exists and is not a folder",
                            hint="choose another --out")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the output folder '{out}': "
                            + ("a part of the path is a file, not a folder"
                               if isinstance(e, (NotADirectoryError, FileExistsError)) else (e.strerror or str(e))),
                            hint="choose another --out") from None

    if ckpt is not None:
        state, meta, opt_state = ckpt
        model.load_state_dict(state)
        for i, p in enumerate(plan.phases):
            pre = f"p{i}."
            p.optimizer.load_state_dict({k[len(pre):]: v for k, v in opt_state.items() if k.startswith(pre)})
        if sched is not None and meta.get("scheduler") is not None:
            sched.load_state_dict(meta["scheduler"])
            if not sched.needs_metric:      # closed-form schedules: the lr follows this run's epochs
                for grp in sched.groups:
                    grp["lr"] = sched._lr(grp["initial_lr"], grp["lr"])
        _set_rng(shuffle_rng, meta["rng"]["shuffle"])
        _set_rng(aug_rng, meta["rng"]["augment"])
        _set_rng(model.rng, meta["rng"]["model"])
        if "noise" in meta["rng"]:
            _set_rng(noise_rng, meta["rng"]["noise"])
        history = list(meta.get("history", []))
        start = int(meta["epoch"])
        best.value, best.epoch, wait = meta.get("best_value"), int(meta.get("best_epoch", 0)), int(meta.get("wait", 0))
        if stop is not None:
            stop.value, stop.epoch = meta.get("stop_value", best.value), int(meta.get("stop_epoch", best.epoch))
        best_state = {k[5:]: v for k, v in opt_state.items() if k.startswith("best.")} or None
        if start >= epochs:
            say(f"nothing to do: '{resume}' has already trained {start} epochs (goal {epochs}); nothing was written")
            return history
        say(f"resuming from '{resume}' after epoch {start}")
        if meta.get("stopped_early"):
            say("note: that run had stopped early; training continues from its last epoch")
    else:
        fit_standardize(model, train_ds, log=say)

    n_batches = train_ds.num_batches(cfg.batch_size)
    prog = progress if isinstance(progress, Progress) else Progress(epochs, n_batches,
                                                                   enabled=None if progress is None else progress)
    say(f"training {g.name}: {len(train_ds)} samples" + (f", validating on {len(val_ds)}" if val_ds else "") +
        f", {n_batches} batch{'es' if n_batches != 1 else ''} of {min(cfg.batch_size, len(train_ds))}, "
        f"epochs {start + 1}..{epochs}, "
        f"{sum(t.data.size for t in trainable.values()):,} trainable parameters")
    if plan.noise:
        say("noise drawn per batch: " + ", ".join(
            f"{k} ~ {'N(0, 1)' if v == 'normal' else 'U[0, 1)'}" for k, v in plan.noise.items()))

    stopped_early = False
    metrics_phase = plan.phases[0]
    failure: BaseException | None = None
    try:
        for epoch in range(start + 1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            prog.start_epoch(epoch)
            sums: dict[str, float] = {}
            acc = plan.accumulator() if plan.metrics else None
            seen = 0
            for bi, batch in enumerate(D.prefetch(train_ds.batches(cfg.batch_size, shuffle_rng)), 1):
                if augment is not None:
                    batch = augment(batch, aug_rng)
                n = train_ds.batch_len(batch)
                feed = {k: batch[k] for k in plan.needed}
                feed.update(draw_noise(plan, g, n, noise_rng))
                step_losses: dict[str, float] = {}
                for ph in plan.phases:
                    for s in range(ph.steps):
                        want_metrics = acc is not None and ph is metrics_phase and s == 0
                        refs = list(ph.terms) + ([plan.predict, plan.target] if want_metrics else [])
                        outs = _train_step(model, ph, refs, feed, cfg, plan, epoch, bi, out)
                        if want_metrics:
                            acc.update(outs[plan.predict].data, outs[plan.target].data, plan.mask(feed, "train"))
                        if s == 0:
                            step_losses.update({r: float(outs[r].data) for r in ph.terms})
                for key, v in _losses(plan, step_losses, n).items():
                    sums[key] = sums.get(key, 0.0) + v * n
                seen += n
                prog.update(bi, seen, sums["loss"] / seen)
            rate = prog.end_epoch()
            rec: dict[str, Any] = {"epoch": epoch}
            rec.update({f"train.{k}": v / seen for k, v in sums.items()})
            if acc is not None:
                rec.update({f"train.{k}": v for k, v in acc.result().items() if k in plan.metrics})
            if val_ds is not None:
                res = evaluate(model, val_ds, config=cfg, plan=plan, split="val")
                rec.update({f"val.{k}": v for k, v in res.items() if k in keys})
            rec["lr"] = optimizers[0].param_groups[0]["lr"]
            rec["time"] = round(time.perf_counter() - t0, 3)
            history.append(rec)

            improved = best.update(rec, epoch)
            if improved:
                if es is not None and es.restore_best:
                    best_state = {k: v.copy() for k, v in model.state_dict().items()}
                if out is not None:
                    save(model, out / "best.npz", meta={"kind": "specc.weights", "epoch": epoch,
                                                        "monitor": best.monitor, "value": best.value,
                                                        "mode": best.mode})
            if stop is not None:
                wait = 0 if stop.update(rec, epoch) else wait + 1
            if sched is not None:
                sched.step(rec.get(plateau_key) if sched.needs_metric else None)
            if es is not None and wait >= max(1, es.patience) and epoch < epochs:
                stopped_early = True

            if epoch == start + 1:
                say(epoch_legend(out is not None))
            say(epoch_line(epoch, epochs, rec, keys, SHORT, rate, improved))
            if out is not None:
                _save_state(model, out / "last.npz", plan, sched, epoch, epochs, history,
                            (shuffle_rng, aug_rng, model.rng, noise_rng), best, stop, wait, best_state,
                            stopped_early)
                write_history(out / "history.csv", history)
            if callback is not None and callback(epoch, rec) is False:
                break
            if stopped_early:
                say(f"early stopping: {stop.monitor} has not improved for {wait} epochs "
                    f"(best {stop.value:.4f} at epoch {stop.epoch})")
                break
    except BaseException as e:
        failure = e
        raise
    finally:
        prog.end_epoch()
        # after a failed write (a full disk) nothing more is written: the first failure is the one reported
        if out is not None and history and not isinstance(failure, WriteError):
            try:
                plot_curves(out / "curves.png", history, log, best.epoch or None)
            except UserError:
                if failure is None:
                    raise

    model.zero_grad()
    if es is not None and es.restore_best and best_state is not None:
        model.load_state_dict(best_state)
        say(f"restored the best weights (epoch {best.epoch}" +
            (f", {best.monitor} {best.value:.4f})" if best.value is not None else ")"))
    return history


def _train_step(model: Model, ph: Phase, refs: list[str], feed: dict[str, np.ndarray], cfg: Train,
                plan: Plan, epoch: int, batch_no: int, out: Path | None) -> dict[str, Tensor]:
    """One optimiser step of one phase on one batch; returns the forward outputs."""
    model.zero_grad()
    others = [t for n, t in model.parameters().items() if n not in ph.params]
    for t in others:                      # only the phase's parameters get gradients
        t.requires_grad = False
    try:
        outs = model.forward(outputs=refs, **feed)
        total = weighted_sum(outs, ph.terms)
        if not np.isfinite(total.data).all():
            _diverged(model, refs, feed, epoch, batch_no, out)
        total.backward()
    finally:
        for t in others:
            t.requires_grad = True
    params = list(ph.params.values())
    if cfg.grad_clip is not None:
        if cfg.grad_clip.max_norm is not None:
            optim.clip_grad_norm(params, cfg.grad_clip.max_norm)
        else:
            optim.clip_grad_value(params, cfg.grad_clip.value)
    bad = [n for n, t in ph.params.items() if t.grad is not None and not np.isfinite(t.grad.sum(dtype=np.float64))]
    bad = [n for n in bad if not np.isfinite(ph.params[n].grad).all()]
    if bad:
        raise UserError(f"training stopped at epoch {epoch}, batch {batch_no}: the gradients of "
                        f"{', '.join(bad[:5])}{' and more' if len(bad) > 5 else ''} are not finite "
                        "(the loss was finite)", hint=_hint(out, "clip gradients (train.grad_clip: {max_norm: 1.0}) "
                                                             "or lower the learning rate"))
    ph.optimizer.step()
    return outs


def _hint(out: Path | None, advice: str) -> str:
    where = (f"; the last good checkpoint is {out / 'last.npz'}" if out is not None and (out / "last.npz").exists()
             else "")
    return advice + where


def _diverged(model: Model, refs: list[str], feed: dict[str, np.ndarray], epoch: int, batch_no: int,
              out: Path | None) -> None:
    model.check_finite = True
    try:
        model(outputs=refs, **feed)
        found = None
    except NonFiniteError as e:
        found = e
    finally:
        model.check_finite = False
    advice = "lower the learning rate, clip gradients (train.grad_clip), or check the input data"
    if found is not None:
        found.message = f"training stopped at epoch {epoch}, batch {batch_no}: the loss is not finite; " \
                        f"{found.message}"
        found.args = (found.message,)
        found.hint = _hint(out, advice)
        raise found
    raise UserError(f"training stopped at epoch {epoch}, batch {batch_no}: the loss is not finite",
                    hint=_hint(out, advice))


def _save_state(model: Model, path: Path, plan: Plan, sched: Any, epoch: int, epochs: int,
                history: list[dict[str, Any]], rngs: tuple, best: "Tracker", stop: "Tracker | None",
                wait: int, best_state: dict[str, np.ndarray] | None, stopped_early: bool) -> None:
    opt_state: dict[str, np.ndarray] = {}
    for i, p in enumerate(plan.phases):
        opt_state.update({f"p{i}.{k}": v for k, v in p.optimizer.state_dict().items()})
    if best_state is not None:
        opt_state.update({f"best.{k}": v for k, v in best_state.items()})
    meta = {"kind": STATE_KIND, "epoch": epoch, "epochs": epochs, "history": history,
            "rng": {"shuffle": _rng_state(rngs[0]), "augment": _rng_state(rngs[1]), "model": _rng_state(rngs[2]),
                    "noise": _rng_state(rngs[3])},
            "scheduler": sched.state_dict() if sched is not None else None,
            "best_value": best.value, "best_epoch": best.epoch, "wait": wait, "monitor": best.monitor,
            "stop_value": stop.value if stop else None, "stop_epoch": stop.epoch if stop else 0,
            "stopped_early": stopped_early}
    save(model, path, meta=meta, optimizer_state=opt_state)


def summary_lines(res: dict[str, Any], binary_hint: bool = True) -> list[str]:
    """Human-readable lines for an evaluate() result (used by `specc eval` and at the end of training)."""
    lines = []
    for k, v in res.items():
        if k in ("confusion_matrix", "samples") or k in M.NAMES:
            continue
        lines.append(f"{k:<10} {v:.4f}")
    if "accuracy" in res:
        cm = res.get("confusion_matrix")
        avg = "binary, positive class 1" if cm is not None and cm.shape[0] == 2 else "macro"
        lines.append(f"{'accuracy':<10} {res['accuracy']:.4f}")
        for k in ("precision", "recall", "f1"):
            lines.append(f"{k:<10} {res[k]:.4f} ({avg})")
        if cm is not None:
            lines.append(M.format_confusion(cm))
    return lines
