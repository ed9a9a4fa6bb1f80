"""Per-step training records (`train.log`): DIR/steps.csv, DIR/steps.jsonl and TensorBoard event files in
DIR/tb/ (through tensorboardX, an optional extra: `pip install 'specc[tensorboard]'`).

    train:
      log: {every: 10, to: [csv, tensorboard]}        # or: specc train SPEC --set train.log.every=10

runtime/loop.py opens a StepLog when training starts, calls `start_epoch()`, `batch(...)` after every
batch and `epoch(...)` after every epoch's checkpoints, then `close()`. A step is one batch: one
optimiser step (with `phases`, every phase's steps on that batch). Every `every`-th step gives a record:

    step, epoch, batch, loss[, loss.<term or phase>...], lr[, lr.<glob>...], grad_norm, clipped,
    samples_per_s, step_time

`loss` and its terms are that batch's values (as history.csv's train.* but not averaged over the
epoch); `lr` is the schedule's learning rate before lr_scale and `lr.<glob>` the effective rate of each
group an lr_scale glob makes (with phases: `lr.<phase>`, `lr.<phase>.<glob>`, and `grad_norm.<phase>`,
`clipped.<phase>`); `grad_norm` is the global L2 norm of the gradients before clipping, `clipped` 1
when grad_clip changed them; `samples_per_s` and `step_time` are averaged over the steps since the
previous record. TensorBoard gets the same values as `step/<column>` and each epoch's history values
as `epoch/<column>`, all on the step axis.

Files follow history.csv's rule: a fresh run replaces the previous run's steps files and event files;
a resumed run (`--resume DIR/last.npz`) keeps the records up to the checkpoint's step, drops the later
ones (from the interrupted epoch, which is trained again) and appends, continuing the step count.
"""
from __future__ import annotations

import csv
import fnmatch
import importlib
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

from compiler.errors import UserError
from compiler.files import WriteError, atomic_write_text

from .train import _losses

STEPS_CSV, STEPS_JSONL, TB_DIR = "steps.csv", "steps.jsonl", "tb"
TB_EVENTS = "events.out.tfevents."


def require(cfg: Any) -> None:
    """Before training: a clear error when `to: [tensorboard]` asks for a library that is not installed."""
    if cfg is None or "tensorboard" not in cfg.to:
        return
    try:
        importlib.import_module("tensorboardX")
    except ImportError:
        raise UserError("train.log.to asks for tensorboard, but the tensorboardX package is not installed",
                        hint="pip install tensorboardX (or: pip install 'specc[tensorboard]'), "
                             "or remove tensorboard from train.log.to") from None


def open_log(out: Path | None, cfg: Any, plan: Any, lr_scale: Mapping[str, float],
             start_step: int = 0, resume: bool = False) -> "StepLog | None":
    """The run's step log, its files opened (a fresh run's replaced), or None when nothing is asked or
    there is no output folder."""
    if out is None or cfg is None or not cfg.to:
        return None
    log = StepLog([], cfg.every, plan, lr_scale)
    try:
        for kind in dict.fromkeys(cfg.to):
            if kind == "tensorboard":
                log.sinks.append(TensorBoardSink(out / TB_DIR, start_step, resume))
            elif cfg.every > 0:
                cls = CsvSink if kind == "csv" else JsonlSink
                path = out / (STEPS_CSV if kind == "csv" else STEPS_JSONL)
                log.sinks.append(cls(path, log.columns, start_step, resume))
    except BaseException:
        log.close()
        raise
    return log if log.sinks else None


class StepLog:
    """Turns the loop's batches into records every `every` steps and hands them to the sinks."""

    def __init__(self, sinks: list[Any], every: int, plan: Any, lr_scale: Mapping[str, float]):
        self.sinks, self.every, self.phases = sinks, every, plan.phases
        self.rates = Rates(self.phases, lr_scale)
        one = len(self.phases) == 1
        terms = {r: 0.0 for p in self.phases for r in p.terms}
        self.columns = ["step", "epoch", "batch", "loss"]
        self.columns += [f"loss.{k}" for k in _losses(plan, terms, 1) if k != "loss"]
        self.columns += list(self.rates())
        self.columns += [c if one else f"{c}.{p.label}" for c in ("grad_norm", "clipped") for p in self.phases]
        self.columns += ["samples_per_s", "step_time"]
        self.start_epoch()

    def due(self, step: int) -> bool:
        """Whether step `step` gives a record (the backend then measures its gradient norm)."""
        return self.every > 0 and step % self.every == 0

    def start_epoch(self) -> None:
        self._t, self._samples, self._steps = time.perf_counter(), 0, 0

    def batch(self, step: int, epoch: int, batch: int, n: int, losses: Mapping[str, float],
              grads: Mapping[str, tuple[float, bool]]) -> None:
        """After step `step` (batch `batch` of `epoch`, n samples): its losses (loop's _losses keys) and, on
        a due step, each phase's (gradient norm, clipped)."""
        self._samples += n
        self._steps += 1
        if not self.due(step):
            return
        now = time.perf_counter()
        dt = max(now - self._t, 1e-12)
        rec: dict[str, Any] = {"step": step, "epoch": epoch, "batch": batch, "loss": losses["loss"]}
        rec.update({f"loss.{k}": v for k, v in losses.items() if k != "loss"})
        rec.update(self.rates())
        one = len(self.phases) == 1
        for c in ("grad_norm", "clipped"):
            for p in self.phases:
                norm, clipped = grads.get(p.label, (math.nan, False))
                rec[c if one else f"{c}.{p.label}"] = norm if c == "grad_norm" else int(clipped)
        rec["samples_per_s"] = self._samples / dt
        rec["step_time"] = dt / self._steps
        for s in self.sinks:
            s.step(rec)
        self._t, self._samples, self._steps = now, 0, 0

    def epoch(self, rec: Mapping[str, Any], step: int) -> None:
        """After an epoch's checkpoints: its history record (TensorBoard), and every file flushed."""
        for s in self.sinks:
            s.epoch(rec, step)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class Rates:
    """The learning-rate columns of steps.csv (and history.csv's beyond `lr`): `lr` — `lr.<phase>` with
    phases — as the schedule set it (before lr_scale), and `<that>.<glob>` = lr × factor for each group an
    lr_scale glob makes."""

    def __init__(self, phases: list[Any], lr_scale: Mapping[str, float]):
        self.phases = phases
        self.groups = [_group_names(p.optimizer, lr_scale) for p in phases]

    def __call__(self) -> dict[str, float]:
        out: dict[str, float] = {}
        one = len(self.phases) == 1
        for p, names in zip(self.phases, self.groups):
            groups = p.optimizer.param_groups
            base = "lr" if one else f"lr.{p.label}"
            out[base] = float(groups[0]["lr"])
            for g, name in zip(groups, names):
                if name is not None:
                    out[f"{base}.{name}"] = float(g["lr"]) * float(g.get("lr_scale", 1.0))
        return out


def _group_names(opt: Any, lr_scale: Mapping[str, float]) -> list[str | None]:
    """Each optimiser group's column suffix: the lr_scale glob(s) that gave it its scale; None for scale 1."""
    names: list[str | None] = []
    for g in opt.param_groups:
        if float(g.get("lr_scale", 1.0)) == 1.0:
            names.append(None)
            continue
        won: list[str] = []
        for pname in g["params"]:
            pat = next((p for p in lr_scale if fnmatch.fnmatchcase(pname, p)), None)
            if pat is not None and pat not in won:
                won.append(pat)
        names.append("|".join(won) or f"x{g['lr_scale']:g}")
    return names


# -- sinks -------------------------------------------------------------------------------------------
def _fmt(v: Any) -> Any:
    return format(v, ".8g") if isinstance(v, float) else v


class _FileSink:
    """A text file of one record per line, appended to and flushed record by record."""

    def __init__(self, path: Path, columns: list[str], start_step: int, resume: bool):
        self.path, self.f = path, None
        kept = self._kept(start_step) if resume and path.is_file() else []
        self._open(self._head(columns, kept))

    def _kept(self, start_step: int) -> list[Any]:
        """A resumed run's records up to its checkpoint's step."""
        raise NotImplementedError

    def _head(self, columns: list[str], kept: list[Any]) -> str:
        raise NotImplementedError

    def _open(self, head: str) -> None:
        """Replace the file with `head` (a header, the kept records) and open it for appending."""
        atomic_write_text(self.path, head)
        try:
            self.f = open(self.path, "a", encoding="utf-8", newline="")
        except OSError as e:
            raise WriteError(f"cannot write '{self.path}': {e.strerror or e}") from None

    def _write(self, text: str) -> None:
        try:
            self.f.write(text)
            self.f.flush()
        except OSError as e:
            raise WriteError(f"cannot write '{self.path}': {e.strerror or e}") from None

    def epoch(self, rec: Mapping[str, Any], step: int) -> None:
        pass

    def close(self) -> None:
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None


class CsvSink(_FileSink):
    """steps.csv: a header, then one row per record (a resumed run keeps the old header and adds any new
    column at the end)."""

    cols: list[str]

    def _kept(self, start_step: int) -> list[Any]:
        try:
            with open(self.path, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error):
            return []
        return [r for r in rows if _int(r.get("step")) is not None and _int(r.get("step")) <= start_step]

    def _head(self, columns: list[str], kept: list[Any]) -> str:
        self.cols = list(kept[0]) if kept else []
        self.cols += [k for k in columns if k not in self.cols]
        return self._rows([self.cols] + [[r.get(c, "") for c in self.cols] for r in kept])

    def step(self, rec: Mapping[str, Any]) -> None:
        self._write(self._rows([[_fmt(rec.get(c, "")) for c in self.cols]]))

    @staticmethod
    def _rows(rows: list[list[Any]]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue()


class JsonlSink(_FileSink):
    """steps.jsonl: one JSON object per line; a non-finite number is written as null."""

    def _kept(self, start_step: int) -> list[Any]:
        kept = []
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue            # a line cut short when the run was killed
                    if isinstance(obj, dict) and isinstance(obj.get("step"), int) and obj["step"] <= start_step:
                        kept.append(line if line.endswith("\n") else line + "\n")
        except (OSError, UnicodeDecodeError):
            return []
        return kept

    def _head(self, columns: list[str], kept: list[Any]) -> str:
        return "".join(kept)

    def step(self, rec: Mapping[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
        self._write(json.dumps(clean) + "\n")


class TensorBoardSink:
    """Event files in DIR/tb/ (tensorboardX): `step/<column>` per record, `epoch/<key>` per epoch, on the step
    axis. A fresh run removes the previous run's event files there; a resumed one starts a new event file
    with purge_step, so TensorBoard drops the interrupted epoch's stale points."""

    def __init__(self, folder: Path, start_step: int, resume: bool):
        from tensorboardX import SummaryWriter
        try:
            if folder.is_dir() and not resume:
                for f in folder.glob(TB_EVENTS + "*"):
                    if f.is_file():
                        f.unlink()
            self.w = SummaryWriter(logdir=str(folder), purge_step=start_step + 1 if resume else None,
                                   flush_secs=30)
        except OSError as e:
            raise WriteError(f"cannot write TensorBoard events in '{folder}': {e.strerror or e}") from None

    def step(self, rec: Mapping[str, Any]) -> None:
        step = int(rec["step"])
        for k, v in rec.items():
            if k not in ("step", "batch"):
                self.w.add_scalar(f"step/{k}", float(v), step)

    def epoch(self, rec: Mapping[str, Any], step: int) -> None:
        for k, v in rec.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.w.add_scalar(f"epoch/{k}", float(v), step)
        self.w.flush()

    def close(self) -> None:
        self.w.close()


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
