"""Learning-rate schedules, stepped once per epoch, as PyTorch's StepLR, CosineAnnealingLR and ReduceLROnPlateau.

Each scheduler rewrites `group["lr"]` of every parameter group of one or more optimisers, starting from
the group's `initial_lr`; per-group `lr_scale` factors are applied by the optimiser on top, so ratios
between groups are kept. `state_dict()` is JSON-serialisable (it goes into a checkpoint's metadata).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from .optim import Optimizer

__all__ = ["Scheduler", "StepLR", "CosineAnnealingLR", "ReduceLROnPlateau", "make", "monitor_mode"]

MAX_METRICS = ("accuracy", "precision", "recall", "f1", "token_accuracy", "sequence_accuracy", "r2")


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """'max' for accuracy-like metrics, 'min' otherwise (losses), unless `mode` says."""
    if mode != "auto":
        return mode
    return "max" if monitor.rpartition(".")[2] in MAX_METRICS else "min"


class Scheduler:
    needs_metric = False

    def __init__(self, optimizers: Optimizer | Sequence[Any]):
        """`optimizers`: one or more objects with PyTorch-style `param_groups` (lr, initial_lr) — specc's
        optimisers or the torch backend's wrappers, which then follow the same learning rates."""
        self.optimizers = [optimizers] if isinstance(optimizers, Optimizer) else list(optimizers)
        self.last_epoch = 0

    @property
    def groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def get_lr(self) -> list[float]:
        return [g["lr"] for g in self.groups]

    def step(self, metric: float | None = None) -> None:
        self.last_epoch += 1
        self.apply()

    def apply(self) -> None:
        """Set every group's lr to the schedule's value at `last_epoch` (after load_state_dict, a resumed run's
        closed-form schedule follows this run's epochs). ReduceLROnPlateau keeps the lrs as they are."""
        if self.needs_metric:
            return
        for g in self.groups:
            g["lr"] = self._lr(g["initial_lr"], g["lr"])

    def _lr(self, base: float, current: float) -> float:
        return current

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class StepLR(Scheduler):
    """lr = initial_lr · gamma ** (epoch // step_size)."""

    def __init__(self, optimizers: Any, step_size: int, gamma: float = 0.1):
        super().__init__(optimizers)
        if step_size < 1:
            raise ValueError("step_size must be at least 1")
        self.step_size, self.gamma = step_size, gamma

    def _lr(self, base: float, current: float) -> float:
        return base * self.gamma ** (self.last_epoch // self.step_size)


class CosineAnnealingLR(Scheduler):
    """lr = eta_min + (initial_lr − eta_min) · (1 + cos(π · epoch / t_max)) / 2 (PyTorch's closed form)."""

    def __init__(self, optimizers: Any, t_max: int, eta_min: float = 0.0):
        super().__init__(optimizers)
        self.t_max, self.eta_min = max(1, int(t_max)), eta_min

    def _lr(self, base: float, current: float) -> float:
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.t_max)) / 2

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch}          # t_max follows the run's epochs


class ReduceLROnPlateau(Scheduler):
    """Multiply lr by `factor` when the monitored metric has not improved (relative threshold 1e-4) for more
    than `patience` epochs; never below min_lr. PyTorch's defaults and rules (mode rel, cooldown)."""

    needs_metric = True

    def __init__(self, optimizers: Any, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0, eps: float = 1e-8):
        super().__init__(optimizers)
        if factor >= 1.0:
            raise ValueError("factor should be < 1.0")
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.cooldown, self.min_lr, self.eps = threshold, cooldown, min_lr, eps
        self.best: float = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _better(self, a: float) -> bool:
        if self.mode == "min":
            return a < self.best * (1 - self.threshold) if self.best != math.inf else a < self.best
        return a > self.best * (1 + self.threshold) if self.best != -math.inf else a > self.best

    def step(self, metric: float | None = None) -> None:
        if metric is None:
            raise ValueError("ReduceLROnPlateau.step needs the monitored metric")
        current = float(metric)
        self.last_epoch += 1
        if self._better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g in self.groups:
                new = max(g["lr"] * self.factor, self.min_lr)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        best = self.best if math.isfinite(self.best) else None
        return {"last_epoch": self.last_epoch, "best": best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if state.get("best") is None:
            state["best"] = math.inf if self.mode == "min" else -math.inf
        super().load_state_dict(state)


def make(cfg: Any, optimizers: Any, epochs: int) -> Scheduler | None:
    """A scheduler from a spec's `schedule:` settings (compiler.spec.Schedule), or None for type none."""
    if cfg is None or cfg.type == "none":
        return None
    if cfg.type == "step":
        return StepLR(optimizers, cfg.step_size, cfg.gamma)
    if cfg.type == "cosine":
        return CosineAnnealingLR(optimizers, cfg.t_max or max(1, epochs), cfg.eta_min)
    if cfg.type == "plateau":
        return ReduceLROnPlateau(optimizers, mode=monitor_mode(cfg.monitor), factor=cfg.factor,
                                 patience=cfg.patience, min_lr=cfg.min_lr)
    raise ValueError(f"unknown schedule type {cfg.type!r}")
