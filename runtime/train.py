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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.spec import Train

from . import data as D
from . import metrics as M
from . import schedule as S
from .model import Model, NonFiniteError
from .progress import Progress
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
    """curves.png: one panel for the loss and one per metric, train and validation per epoch (a dashed line
    marks the best epoch), and one for the learning rate."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
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
    rates = [k for k in dict.fromkeys(k for r in history for k in r) if k == "lr" or k.startswith("lr.")]
    panels = len(keys) + bool(rates)
    fig = Figure(figsize=(4.2 * min(panels, 3), 3.2 * math.ceil(panels / 3)), dpi=100)
    FigureCanvasAgg(fig)
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))      # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    if panels > len(keys):
        _lr_panel(fig.add_subplot(rows, cols, panels), epochs, history, rates)
    fig.tight_layout()

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png")

    atomic_write(path, write)
    return True


def _lr_panel(ax: Any, epochs: list[int], history: list[dict[str, Any]], rates: list[str]) -> None:
    """The learning rate each epoch trained with (history's `lr`, and `lr.<group>` with lr_scale or phases);
    a log scale when the rates span 20x or more."""
    from matplotlib.ticker import MaxNLocator
    lowest, highest = math.inf, 0.0
    for k in rates:
        ys = [float(v) if isinstance(v := r.get(k), (int, float)) else np.nan for r in history]
        ax.plot(epochs, ys, "-o", markersize=3, label=k)
        pos = [y for y in ys if y > 0]
        if pos:
            lowest, highest = min(lowest, min(pos)), max(highest, max(pos))
    if highest >= 20 * lowest:
        ax.set_yscale("log")
    ax.set_title("learning rate")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(rates) > 1:
        ax.legend()


# -- fit ------------------------------------------------------------------------------------------------
def fit(model: Model, train_data: Any, val_data: Any = None, *, epochs: int | None = None,
        out_dir: str | Path | None = None, resume: str | Path | None = None, log: Callable | None = print,
        config: Train | None = None, seed: int | None = None, progress: Progress | bool | None = None,
        callback: Callable[[int, dict], Any] | None = None) -> list[dict[str, Any]]:
    """Train `model` on `train_data` (a .npz path, builtin:NAME, {name: array} or a data.Dataset).

    `val_data` is a data set, a fraction of the training data (float), or None (then `train.data.val` when
    it is a fraction). `out_dir` receives best.npz, last.npz, history.csv and curves.png (and, as `train.log`
    asks, steps.csv, steps.jsonl, tb/: runtime/steplog.py). `resume` is a
    last.npz to continue from. `callback(epoch, record)` runs after each epoch's checkpoints; returning
    False stops training. Returns the history: one dict per epoch. The loop is runtime/loop.py's, shared
    with the torch backend; this runs it on the NumPy runtime."""
    from .backend_numpy import NumpyBackend
    from .loop import run
    return run(NumpyBackend(model), train_data, val_data, epochs=epochs, out_dir=out_dir, resume=resume, log=log,
               config=config, seed=seed, progress=progress, callback=callback)


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
