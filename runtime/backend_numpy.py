"""The NumPy runtime as a training backend for runtime/loop.py: forward with a tape, backward, clipping and
specc's own optimisers (runtime/optim.py)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np

from compiler.errors import UserError

from . import optim
from .model import Model
from .tensor import Tensor
from .train import Phase, Plan, _diverged, _hint, _rng_state, _set_rng, fit_standardize, weighted_sum


class NumpyBackend:
    """Trains a runtime.Model in place."""

    name = "numpy"

    def __init__(self, model: Model):
        self.model = model
        self.grad_stats: tuple[float, bool] = (float("nan"), False)     # set by step() when where.log

    # -- parameters and optimisers ------------------------------------------------------------
    def prepare(self, plan: Plan, cfg: Any) -> None:
        self.clip = cfg.grad_clip

    def parameter_names(self) -> list[str]:
        return self.model.parameter_names()

    def freeze(self, names: Iterable[str]) -> None:
        self.model.freeze(names)

    def trainable(self) -> dict[str, Tensor]:
        return self.model.parameters()

    @staticmethod
    def count(params: Iterable[Tensor]) -> int:
        return sum(t.data.size for t in params)

    def make_optimizer(self, cfg: Any, names: list[str], lr_scale: Mapping[str, float]) -> optim.Optimizer:
        params = self.model.parameters()
        return optim.make(cfg, optim.grouped({n: params[n] for n in names}, lr_scale))

    # -- one step -----------------------------------------------------------------------------
    def step(self, ph: Phase, refs: list[str], feed: dict[str, np.ndarray], where: Any) -> dict[str, np.ndarray]:
        """One optimiser step of one phase on one batch; returns the forward outputs."""
        model = self.model
        model.zero_grad()
        others = [t for n, t in model.parameters().items() if n not in ph.params]
        for t in others:                      # only the phase's parameters get gradients
            t.requires_grad = False
        try:
            outs = model.forward(outputs=refs, **feed)
            total = weighted_sum(outs, ph.terms)
            if not np.isfinite(total.data).all():
                _diverged(model, refs, feed, where.epoch, where.batch, where.out)
            total.backward()
        finally:
            for t in others:
                t.requires_grad = True
        self._clip(list(ph.params.values()), getattr(where, "log", False))
        bad = [n for n, t in ph.params.items() if t.grad is not None and not np.isfinite(t.grad.sum(dtype=np.float64))]
        bad = [n for n in bad if not np.isfinite(ph.params[n].grad).all()]
        if bad:
            raise_bad_grads(bad, where)
        ph.optimizer.step()
        return {k: v.data for k, v in outs.items()}

    def _clip(self, params: list[Tensor], measure: bool) -> None:
        """grad_clip; when `measure`, grad_stats = (global norm before clipping, whether clipping changed it)."""
        clip = self.clip
        if clip is not None and clip.max_norm is not None:
            norm = optim.clip_grad_norm(params, clip.max_norm)
            self.grad_stats = (norm, clip.max_norm / (norm + 1e-6) < 1)     # clip_grad_norm's own test
            return
        if measure:
            grads = [t.grad for t in params if t.grad is not None]
            over = clip is not None and any(float(np.abs(g).max(initial=0.0)) > clip.value for g in grads)
            self.grad_stats = (global_norm(params), over)
        if clip is not None:
            optim.clip_grad_value(params, clip.value)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.model.load_state_dict(state)

    def seed(self, seed: int) -> None:
        self.model.rng = np.random.default_rng([seed, 2])

    def rng_state(self) -> dict[str, Any]:
        return {"model": _rng_state(self.model.rng)}

    def set_rng_state(self, states: Mapping[str, Any]) -> None:
        _set_rng(self.model.rng, states["model"])

    def fit_standardize(self, ds: Any, log: Callable) -> None:
        fit_standardize(self.model, ds, log=log)

    @staticmethod
    def shard(feed: dict[str, np.ndarray], n: int, batched: Any) -> dict[str, np.ndarray]:
        return feed

    def epoch_end(self) -> None:
        pass

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def done(self) -> None:
        pass


def global_norm(params: Iterable[Tensor]) -> float:
    """The L2 norm of all the gradients together (float64), as clip_grad_norm measures it."""
    return float(np.sqrt(sum(float(np.dot(g, g)) for g in
                             (t.grad.ravel().astype(np.float64) for t in params if t.grad is not None))))


def raise_bad_grads(bad: list[str], where: Any) -> None:
    raise UserError(f"training stopped at epoch {where.epoch}, batch {where.batch}: the gradients of "
                    f"{', '.join(bad[:5])}{' and more' if len(bad) > 5 else ''} are not finite "
                    "(the loss was finite)", hint=_hint(where.out, "clip gradients (train.grad_clip: {max_norm: 1.0}) "
                                                              "or lower the learning rate"))
