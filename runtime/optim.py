"""Optimisers with PyTorch's signatures and update rules: SGD (momentum, dampening, Nesterov), Adam, AdamW.

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss.backward(); opt.step(); opt.zero_grad()

`params` is a {name: Tensor} mapping (what Model.parameters() returns), an iterable of Tensors, or a
list of parameter groups `{"params": ..., "lr": ..., ...}` as in PyTorch, where a group's own settings
override the defaults. Updates are in place on `Tensor.data`; a parameter whose `.grad` is None is
skipped (as PyTorch does). Weight decay follows PyTorch: SGD and Adam add `weight_decay * param` to the
gradient (L2), AdamW decays the weights directly (`param *= 1 - lr * weight_decay`, decoupled).

Each group has an `lr_scale` (default 1): the step uses `lr * lr_scale`, so a schedule that rewrites
`group["lr"]` keeps the per-group ratios (this is how `train.lr_scale` is implemented).

`state_dict()` is flat — {str: ndarray} — so it can be stored in a checkpoint `.npz` as is, and
`load_state_dict()` restores it exactly (momentum buffers, moments, step counts, learning rates).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np

from compiler.errors import UserError

from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "make"]


class Optimizer:
    defaults: dict[str, Any] = {}

    def __init__(self, params: Any, defaults: dict[str, Any]):
        self.defaults = dict(defaults, lr_scale=1.0)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[str, dict[str, Any]] = {}
        self._names: dict[int, str] = {}
        groups = _as_groups(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        counter = 0
        for g in groups:
            named: dict[str, Tensor] = {}
            items = g["params"]
            if isinstance(items, Mapping):
                named.update(items)
            else:
                for t in items:
                    named[str(counter)] = t
                    counter += 1
            for name, t in named.items():
                if not isinstance(t, Tensor):
                    raise TypeError(f"optimizer parameters must be runtime.Tensor, got {type(t).__name__} "
                                    f"for '{name}'")
                if name in self.state or id(t) in self._names:
                    raise ValueError(f"parameter '{name}' appears in more than one group")
                self.state[name] = {}
                self._names[id(t)] = name
            group = {**self.defaults, **{k: v for k, v in g.items() if k != "params"}, "params": named}
            group.setdefault("initial_lr", group["lr"])
            self._check(group)
            self.param_groups.append(group)

    def _check(self, group: dict[str, Any]) -> None:
        if group["lr"] < 0:
            raise ValueError(f"invalid learning rate: {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"invalid weight_decay: {group['weight_decay']}")

    # -- PyTorch's surface ---------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for t in group["params"].values():
                if set_to_none or t.grad is None:
                    t.grad = None
                else:
                    t.grad = np.zeros_like(t.data)

    def step(self) -> None:
        for group in self.param_groups:
            lr = group["lr"] * group["lr_scale"]
            for name, p in group["params"].items():
                if p.grad is None:
                    continue
                grad = np.asarray(p.grad, dtype=p.data.dtype)
                self._update(p, grad, self.state[name], group, lr)

    def _update(self, p: Tensor, grad: np.ndarray, state: dict, group: dict, lr: float) -> None:
        raise NotImplementedError

    @property
    def lr(self) -> float:
        """The first group's learning rate (before lr_scale)."""
        return self.param_groups[0]["lr"]

    def named_parameters(self) -> dict[str, Tensor]:
        return {n: t for g in self.param_groups for n, t in g["params"].items()}

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat {key: ndarray}: `state.<param>.<slot>` and `group.<i>.<setting>`."""
        out: dict[str, np.ndarray] = {}
        for name, st in self.state.items():
            for slot, v in st.items():
                out[f"state.{name}.{slot}"] = np.array(v, copy=True)
        for i, g in enumerate(self.param_groups):
            for k, v in g.items():
                if k == "params":
                    continue
                out[f"group.{i}.{k}"] = np.asarray(v, dtype=np.float64) if not isinstance(v, bool) \
                    else np.asarray(v)
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        slots: dict[str, dict[str, Any]] = {n: {} for n in self.state}
        groups: dict[int, dict[str, Any]] = {}
        for key, v in state.items():
            kind, _, rest = key.partition(".")
            if kind == "state":
                name, _, slot = rest.rpartition(".")
                if name not in slots:
                    raise UserError(f"the optimizer state names a parameter '{name}' that this optimizer "
                                    "does not train", hint="resume with the same spec, freeze and phases")
                arr = np.asarray(v)
                slots[name][slot] = int(arr) if slot == "step" else np.array(arr, copy=True)
            elif kind == "group":
                i, _, k = rest.partition(".")
                groups.setdefault(int(i), {})[k] = np.asarray(v)
        if groups and len(groups) != len(self.param_groups):
            raise UserError(f"the optimizer state has {len(groups)} parameter groups, this optimizer "
                            f"{len(self.param_groups)}", hint="resume with the same spec (lr_scale, phases)")
        for i, g in groups.items():
            for k, v in g.items():
                cur = self.param_groups[i].get(k)
                if isinstance(cur, tuple):
                    self.param_groups[i][k] = tuple(float(x) for x in v)
                elif isinstance(cur, bool):
                    self.param_groups[i][k] = bool(v)
                else:
                    self.param_groups[i][k] = float(v)
        for name, st in slots.items():
            p = self.named_parameters()[name]
            for slot, v in st.items():
                if isinstance(v, np.ndarray) and v.shape != p.data.shape:
                    raise UserError(f"the optimizer state for '{name}' has shape {list(v.shape)}, "
                                    f"the parameter {list(p.data.shape)}")
            self.state[name] = st

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.param_groups[0].items()
                             if k not in ("params", "initial_lr"))
        return f"{type(self).__name__}({settings})"


def _as_groups(params: Any) -> list[dict[str, Any]]:
    if isinstance(params, Tensor):
        raise TypeError("params must be an iterable of Tensors or a {name: Tensor} mapping, not one Tensor")
    if isinstance(params, Mapping):
        if "params" in params:
            return [dict(params)]
        return [{"params": dict(params)}]
    items = list(params)
    if items and all(isinstance(g, Mapping) and "params" in g for g in items):
        return [dict(g, params=g["params"] if isinstance(g["params"], Mapping) else list(g["params"]))
                for g in items]
    return [{"params": items}] if items else []


class SGD(Optimizer):
    """torch.optim.SGD: d = g + wd·p; b = μ·b + (1−τ)·d (b = d at the first step); d = d + μ·b (Nesterov) or b;
    p −= lr·d."""

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if momentum < 0:
            raise ValueError(f"invalid momentum value: {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, p: Tensor, grad: np.ndarray, state: dict, group: dict, lr: float) -> None:
        wd, mom = group["weight_decay"], group["momentum"]
        d = grad + wd * p.data if wd != 0 else grad
        if mom != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = np.array(d, copy=True)
            else:
                buf *= mom
                damp = 1 - group["dampening"]
                buf += d if damp == 1 else damp * d     # no scaled temporary in the usual case
            state["momentum_buffer"] = buf
            d = d + mom * buf if group["nesterov"] else buf
        p.data -= lr * d


class Adam(Optimizer):
    """torch.optim.Adam (amsgrad off): L2 weight decay added to the gradient, bias-corrected moments."""

    decoupled = False

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"invalid betas: {betas}")
        if eps < 0:
            raise ValueError(f"invalid eps: {eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(float(b) for b in betas), eps=eps,
                                      weight_decay=weight_decay))

    def _update(self, p: Tensor, grad: np.ndarray, state: dict, group: dict, lr: float) -> None:
        b1, b2 = group["betas"]
        wd, eps = group["weight_decay"], group["eps"]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        if wd != 0:
            if self.decoupled:
                p.data *= 1 - lr * wd
            else:
                grad = grad + wd * p.data
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (grad - m) * (1 - b1)                  # torch's lerp_(grad, 1 - beta1)
        v *= b2
        v += (1 - b2) * grad * grad
        bias1 = 1 - b1 ** t
        bias2_sqrt = math.sqrt(1 - b2 ** t)
        denom = np.sqrt(v) / bias2_sqrt
        denom += eps
        p.data -= (lr / bias1) * (m / denom)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (param *= 1 − lr·wd before the Adam step)."""

    decoupled = True

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def make(cfg: Any, params: Any) -> Optimizer:
    """An optimiser from a spec's `optimizer:` settings (compiler.spec.Optimizer) over `params`."""
    kind = cfg.type
    if kind == "sgd":
        return SGD(params, lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                   weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    fields = getattr(cfg, "model_fields_set", set())
    wd = cfg.weight_decay
    if kind == "adamw" and "weight_decay" not in fields:
        wd = 1e-2                                   # PyTorch's AdamW default
    cls = Adam if kind == "adam" else AdamW
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=wd)


def grouped(named: Mapping[str, Tensor], lr_scale: Mapping[str, float]) -> list[dict[str, Any]]:
    """Parameter groups by lr_scale glob (the first matching glob wins; unmatched params scale 1)."""
    import fnmatch
    groups: dict[float, dict[str, Tensor]] = {}
    for name, t in named.items():
        scale = 1.0
        for pat, s in lr_scale.items():
            if fnmatch.fnmatchcase(name, pat):
                scale = float(s)
                break
        groups.setdefault(scale, {})[name] = t
    return [{"params": ps, "lr_scale": s} for s, ps in groups.items()]


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_: scale all gradients by max_norm / (total_norm + 1e-6) when above."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(sum(float(np.dot(g.ravel().astype(np.float64), g.ravel().astype(np.float64)))
                          for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * np.asarray(coef, dtype=p.grad.dtype)
    return total


def clip_grad_value(params: Iterable[Tensor], value: float) -> None:
    """torch.nn.utils.clip_grad_value_: clamp every gradient element to [−value, value]."""
    for p in params:
        if p.grad is not None:
            p.grad = np.clip(p.grad, -value, value)
