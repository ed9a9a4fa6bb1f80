"""The training loop, written once for every backend (what `specc train` runs; see runtime/train.py for the
choices it makes).

    history = run(NumpyBackend(model), "data/train.npz", out_dir="runs/lenet5")

The loop owns everything that is not arithmetic: epochs, shuffling and batching, noise draws,
augmentation, schedules, early stopping, the checkpoint monitor, checkpoints (best.npz, last.npz),
history.csv, curves.png, the step log (runtime/steplog.py: train.log), progress and resume. A backend
(runtime/backend_numpy.py, the torch backend's runtime/torch_backend/trainer.py) supplies the
arithmetic, through this surface:

- `model`: what evaluate(), make_plan() and checkpoint.save() take (graph, resolve, train/eval,
  `model(outputs=..., **inputs)` -> arrays, state_dict()).
- `prepare(plan, cfg)`, `parameter_names()`, `freeze(names)`, `trainable()` -> {name: handle}, `count(handles)`,
  `make_optimizer(cfg, names, lr_scale)` -> an object with PyTorch-style `param_groups` (lr, initial_lr),
  `state_dict()`/`load_state_dict()` in specc's flat optimiser-state format.
- `step(phase, refs, feed, where)`: forward, backward, clipping and one optimiser step of a phase on a
  batch; returns the outputs `refs` as arrays (the whole batch's losses and predictions). When
  `where.log` (a step the step log records), it also sets `grad_stats` = (global gradient norm before
  clipping, whether clipping changed the gradients).
- `shard(feed, n, batched)`: the rows of a batch this process trains on (data parallel; else all), and
  `epoch_end()`: called before validation (data parallel: make the replicas' buffers equal).
- `state_dict()`, `load_state_dict(state)`, `seed(seed)`, `rng_state()`, `set_rng_state(states)`,
  `fit_standardize(ds, log)`, `zero_grad()`, `done()`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.files import WriteError
from compiler.spec import Train

from . import data as D
from . import schedule as S
from . import steplog
from .augment import Augmenter
from .checkpoint import check_numeric, read_npz, save, split
from .progress import Progress, epoch_legend, epoch_line
from .train import (LAST, SHORT, STATE_KIND, Plan, Tracker, _checkpoint_tracker, _losses, _matching,
                    _rng_state, _set_rng, draw_noise, evaluate, make_plan, part_key, plot_curves, write_history)


@dataclass
class Where:
    """Where a training step is, for its error messages."""

    epoch: int
    batch: int
    out: Path | None
    log: bool = False                             # the step log records this step: measure the gradients


@dataclass
class Run:
    """Everything one training run carries from epoch to epoch."""

    backend: Any
    cfg: Train
    plan: Plan
    epochs: int
    train_ds: D.Dataset
    val_ds: D.Dataset | None
    out: Path | None
    say: Callable
    log: Callable | None
    keys: list[str] = field(default_factory=list)
    sched: Any = None
    stop: Tracker | None = None
    best: Tracker = None                         # type: ignore[assignment]
    plateau_key: str | None = None
    augment: Augmenter | None = None
    rngs: dict[str, np.random.Generator] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, np.ndarray] | None = None
    wait: int = 0
    start: int = 0
    stopped_early: bool = False
    step: int = 0                                 # batches trained since the run began (resumes continue it)
    steps: steplog.StepLog | None = None
    rates: steplog.Rates | None = None            # the learning-rate columns (per phase, per lr_scale group)

    @property
    def optimizers(self) -> list[Any]:
        return [p.optimizer for p in self.plan.phases]


def run(backend: Any, train_data: Any, val_data: Any = None, *, epochs: int | None = None,
        out_dir: str | Path | None = None, resume: str | Path | None = None, log: Callable | None = print,
        config: Train | None = None, seed: int | None = None, progress: Progress | bool | None = None,
        callback: Callable[[int, dict], Any] | None = None) -> list[dict[str, Any]]:
    """runtime.fit's loop over any backend (same arguments, same result: the history)."""
    g = backend.model.graph
    cfg = config or g.train
    if cfg is None:
        raise UserError(f"the spec '{g.name}' has no train section",
                        hint="add train: {objective: <loss node>, optimizer: {type: adam, lr: 1.0e-3}}")
    say = log or (lambda *a, **k: None)
    steplog.require(cfg.log)
    seed = cfg.seed if seed is None else seed
    ckpt, epochs = _open_resume(resume, g, cfg, epochs)
    plan = make_plan(backend.model, cfg)
    backend.prepare(plan, cfg)
    train_ds, val_ds = _datasets(g, cfg, plan, train_data, val_data, seed)
    backend.model.data_meta = train_ds.meta.get("derived")   # categories, classes, vocabulary: saved with checkpoints
    r = Run(backend, cfg, plan, epochs, train_ds, val_ds, None, say, log)
    trainable = _optimisers(r)
    _monitors(r)
    r.augment = _augmenter(cfg, g)
    r.rngs = {"shuffle": np.random.default_rng([seed, 0]), "augment": np.random.default_rng([seed, 1])}
    backend.seed(seed)
    r.rngs["noise"] = np.random.default_rng([seed, 3])
    r.out = _out_folder(out_dir)
    if ckpt is not None:
        if not _restore(r, ckpt, resume):
            return r.history
    else:
        backend.fit_standardize(train_ds, say)
    n_batches = train_ds.num_batches(cfg.batch_size)
    prog = progress if isinstance(progress, Progress) else Progress(epochs, n_batches,
                                                                   enabled=None if progress is None else progress)
    _announce(r, n_batches, backend.count(trainable.values()))
    failure: BaseException | None = None
    try:
        r.steps = steplog.open_log(r.out, cfg.log, plan, cfg.lr_scale, r.step, ckpt is not None)
        for epoch in range(r.start + 1, epochs + 1):
            if not _epoch(r, epoch, prog, callback):
                break
    except BaseException as e:
        failure = e
        raise
    finally:
        prog.end_epoch()
        if r.steps is not None:
            r.steps.close()
        # after a failed write (a full disk) nothing more is written: the first failure is the one reported
        if r.out is not None and r.history and not isinstance(failure, WriteError):
            try:
                plot_curves(r.out / "curves.png", r.history, log, r.best.epoch or None)
            except UserError:
                if failure is None:
                    raise
    backend.zero_grad()
    es = cfg.early_stopping
    if es is not None and es.restore_best and r.best_state is not None:
        backend.load_state_dict(r.best_state)
        say(f"restored the best weights (epoch {r.best.epoch}" +
            (f", {r.best.monitor} {r.best.value:.4f})" if r.best.value is not None else ")"))
    backend.done()
    return r.history


# -- setting up ---------------------------------------------------------------------------------------
def _open_resume(resume: str | Path | None, g: Any, cfg: Train,
                 epochs: int | None) -> tuple[tuple | None, int]:
    """The checkpoint to resume from (state, meta, optimiser state), checked, and the run's epoch goal."""
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
    return ckpt, cfg.epochs if epochs is None else epochs


def _datasets(g: Any, cfg: Train, plan: Plan, train_data: Any, val_data: Any,
              seed: int) -> tuple[D.Dataset, D.Dataset | None]:
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
    return train_ds, val_ds


def _optimisers(r: Run) -> dict[str, Any]:
    """Freeze, the phases' parameters, one optimiser per phase, the schedule; returns the trainable ones."""
    b, cfg, plan = r.backend, r.cfg, r.plan
    all_names = b.parameter_names()
    if cfg.freeze:
        b.freeze(_matching(all_names, cfg.freeze, "train.freeze"))
    trainable = b.trainable()
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
            ph.optimizer = b.make_optimizer(spec.optimizer or cfg.optimizer, names, cfg.lr_scale)
    else:
        ph = plan.phases[0]
        ph.params = dict(trainable)
        ph.optimizer = b.make_optimizer(cfg.optimizer, list(trainable), cfg.lr_scale)
    r.sched = S.make(cfg.schedule, r.optimizers, r.epochs)
    r.rates = steplog.Rates(plan.phases, cfg.lr_scale)
    return trainable


def _monitors(r: Run) -> None:
    """The history keys, early stopping's and the best checkpoint's trackers, the plateau schedule's key."""
    plan, cfg = r.plan, r.cfg
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
        if part == "val" and r.val_ds is None:
            r.say(f"note: no validation data, so {what} monitors 'train.{q}' instead of '{m}'")
            return f"train.{q}"
        return m

    r.keys = keys
    r.stop = Tracker(monitor_key(es.monitor, "early_stopping"), es.mode, es.min_delta) if es else None
    r.best = _checkpoint_tracker(cfg, r.stop, r.val_ds is not None, monitor_key)
    r.plateau_key = (monitor_key(cfg.schedule.monitor, "the plateau schedule")
                     if cfg.schedule.type == "plateau" else None)


def _augmenter(cfg: Train, g: Any) -> Augmenter | None:
    if cfg.augment is None:
        return None
    name = cfg.augment.input
    if name not in g.inputs:
        raise UserError(f"augment: unknown input '{name}'", hint=did_you_mean(name, list(g.inputs)))
    return Augmenter(name, cfg.augment.ops, g.inputs[name].shape)


def _out_folder(out_dir: str | Path | None) -> Path | None:
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
    return out


def _restore(r: Run, ckpt: tuple, resume: Any) -> bool:
    """Load a last.npz's training state into the run; False when it has nothing left to train."""
    state, meta, opt_state = ckpt
    r.backend.load_state_dict(state)
    for i, p in enumerate(r.plan.phases):
        pre = f"p{i}."
        p.optimizer.load_state_dict({k[len(pre):]: v for k, v in opt_state.items() if k.startswith(pre)})
    if r.sched is not None and meta.get("scheduler") is not None:
        r.sched.load_state_dict(meta["scheduler"])
        r.sched.apply()                     # closed-form schedules: the lr follows this run's epochs
    rng = meta["rng"]
    _set_rng(r.rngs["shuffle"], rng["shuffle"])
    _set_rng(r.rngs["augment"], rng["augment"])
    r.backend.set_rng_state(rng)
    if "noise" in rng:
        _set_rng(r.rngs["noise"], rng["noise"])
    r.history = list(meta.get("history", []))
    r.start = int(meta["epoch"])
    r.step = int(meta.get("step", r.start * r.train_ds.num_batches(r.cfg.batch_size)))
    best = r.best
    best.value, best.epoch, r.wait = meta.get("best_value"), int(meta.get("best_epoch", 0)), int(meta.get("wait", 0))
    if r.stop is not None:
        r.stop.value, r.stop.epoch = meta.get("stop_value", best.value), int(meta.get("stop_epoch", best.epoch))
    r.best_state = {k[5:]: v for k, v in opt_state.items() if k.startswith("best.")} or None
    if r.start >= r.epochs:
        r.say(f"nothing to do: '{resume}' has already trained {r.start} epochs (goal {r.epochs}); nothing was written")
        return False
    r.say(f"resuming from '{resume}' after epoch {r.start}")
    if meta.get("stopped_early"):
        r.say("note: that run had stopped early; training continues from its last epoch")
    return True


def _announce(r: Run, n_batches: int, n_params: int) -> None:
    g, cfg, train_ds, val_ds = r.backend.model.graph, r.cfg, r.train_ds, r.val_ds
    r.say(f"training {g.name}: {len(train_ds)} samples" + (f", validating on {len(val_ds)}" if val_ds else "") +
          f", {n_batches} batch{'es' if n_batches != 1 else ''} of {min(cfg.batch_size, len(train_ds))}, "
          f"epochs {r.start + 1}..{r.epochs}, {n_params:,} trainable parameters")
    if r.plan.noise:
        r.say("noise drawn per batch: " + ", ".join(
            f"{k} ~ {'N(0, 1)' if v == 'normal' else 'U[0, 1)'}" for k, v in r.plan.noise.items()))


# -- one epoch ----------------------------------------------------------------------------------------
def _epoch(r: Run, epoch: int, prog: Progress, callback: Callable | None) -> bool:
    """Train one epoch, validate, step the schedule, track the best, write the checkpoints; False to stop."""
    t0 = time.perf_counter()
    r.backend.model.train()
    prog.start_epoch(epoch)
    if r.steps is not None:
        r.steps.start_epoch()
    rec = _train_batches(r, epoch, prog)
    rate = prog.end_epoch()
    r.backend.epoch_end()
    if r.val_ds is not None:
        res = evaluate(r.backend.model, r.val_ds, config=r.cfg, plan=r.plan, split="val")
        rec.update({f"val.{k}": v for k, v in res.items() if k in r.keys})
    rec["lr"] = r.optimizers[0].param_groups[0]["lr"]
    rec["time"] = round(time.perf_counter() - t0, 3)
    rec.update({k: v for k, v in r.rates().items() if k not in rec})     # after the old columns: lr.<group>
    r.history.append(rec)
    improved = _track(r, rec, epoch)
    if epoch == r.start + 1:
        r.say(epoch_legend(r.out is not None))
    r.say(epoch_line(epoch, r.epochs, rec, r.keys, SHORT, rate, improved))
    if r.out is not None:
        save(r.backend.model, r.out / "last.npz", meta=_state_meta(r, epoch), optimizer_state=_opt_state(r))
        write_history(r.out / "history.csv", r.history)
        if r.steps is not None:
            r.steps.epoch(rec, r.step)
    if callback is not None and callback(epoch, rec) is False:
        return False
    if r.stopped_early:
        r.say(f"early stopping: {r.stop.monitor} has not improved for {r.wait} epochs "
              f"(best {r.stop.value:.4f} at epoch {r.stop.epoch})")
        return False
    return True


def _train_batches(r: Run, epoch: int, prog: Progress) -> dict[str, Any]:
    """The epoch's optimiser steps; returns its history record so far (train.* entries)."""
    plan, g = r.plan, r.backend.model.graph
    sums: dict[str, float] = {}
    acc = plan.accumulator() if plan.metrics else None
    seen = 0
    metrics_phase = plan.phases[0]
    batched = set(r.train_ds.batched) | set(plan.noise)
    for bi, batch in enumerate(D.prefetch(r.train_ds.batches(r.cfg.batch_size, r.rngs["shuffle"])), 1):
        if r.augment is not None:
            batch = r.augment(batch, r.rngs["augment"])
        n = r.train_ds.batch_len(batch)
        feed = {k: batch[k] for k in plan.needed}
        feed.update(draw_noise(plan, g, n, r.rngs["noise"]))
        feed = r.backend.shard(feed, n, batched)        # data parallel: this process's rows of the batch
        step_losses: dict[str, float] = {}
        grads: dict[str, tuple[float, bool]] = {}
        measure = r.steps is not None and r.steps.due(r.step + 1)
        for ph in plan.phases:
            for s in range(ph.steps):
                want_metrics = acc is not None and ph is metrics_phase and s == 0
                refs = list(ph.terms) + ([plan.predict, plan.target] if want_metrics else [])
                outs = r.backend.step(ph, refs, feed, Where(epoch, bi, r.out, measure))
                if want_metrics:
                    acc.update(outs[plan.predict], outs[plan.target], plan.mask(feed, "train"))
                if s == 0:
                    step_losses.update({ref: float(outs[ref]) for ref in ph.terms})
                if measure:
                    grads[ph.label] = r.backend.grad_stats
        losses = _losses(plan, step_losses, n)
        for key, v in losses.items():
            sums[key] = sums.get(key, 0.0) + v * n
        r.step += 1
        if r.steps is not None:
            r.steps.batch(r.step, epoch, bi, n, losses, grads)
        seen += n
        prog.update(bi, seen, sums["loss"] / seen)
    rec: dict[str, Any] = {"epoch": epoch}
    rec.update({f"train.{k}": v / seen for k, v in sums.items()})
    if acc is not None:
        rec.update({f"train.{k}": v for k, v in acc.result().items() if k in plan.metrics})
    return rec


def _track(r: Run, rec: dict[str, Any], epoch: int) -> bool:
    """best.npz, early-stopping counters and the schedule after an epoch; True when it is the best."""
    es, best = r.cfg.early_stopping, r.best
    improved = best.update(rec, epoch)
    if improved:
        if es is not None and es.restore_best:
            r.best_state = {k: v.copy() for k, v in r.backend.state_dict().items()}
        if r.out is not None:
            save(r.backend.model, r.out / "best.npz", meta={"kind": "specc.weights", "epoch": epoch,
                                                          "monitor": best.monitor, "value": best.value,
                                                          "mode": best.mode})
    if r.stop is not None:
        r.wait = 0 if r.stop.update(rec, epoch) else r.wait + 1
    if r.sched is not None:
        r.sched.step(rec.get(r.plateau_key) if r.sched.needs_metric else None)
    if es is not None and r.wait >= max(1, es.patience) and epoch < r.epochs:
        r.stopped_early = True
    return improved


# -- last.npz -----------------------------------------------------------------------------------------
def _opt_state(r: Run) -> dict[str, np.ndarray]:
    """The optimisers' states (`p<i>.`) and, with restore_best, the best weights (`best.`)."""
    opt_state: dict[str, np.ndarray] = {}
    for i, p in enumerate(r.plan.phases):
        opt_state.update({f"p{i}.{k}": v for k, v in p.optimizer.state_dict().items()})
    if r.best_state is not None:
        opt_state.update({f"best.{k}": v for k, v in r.best_state.items()})
    return opt_state


def _state_meta(r: Run, epoch: int) -> dict[str, Any]:
    best, stop = r.best, r.stop
    rng = {"shuffle": _rng_state(r.rngs["shuffle"]), "augment": _rng_state(r.rngs["augment"])}
    rng.update(r.backend.rng_state())
    rng["noise"] = _rng_state(r.rngs["noise"])
    return {"kind": STATE_KIND, "epoch": epoch, "epochs": r.epochs, "step": r.step, "history": r.history,
            "rng": rng,
            "scheduler": r.sched.state_dict() if r.sched is not None else None,
            "best_value": best.value, "best_epoch": best.epoch, "wait": r.wait, "monitor": best.monitor,
            "stop_value": stop.value if stop else None, "stop_epoch": stop.epoch if stop else 0,
            "stopped_early": r.stopped_early}


__all__ = ["run", "Run", "Where", "LAST"]
