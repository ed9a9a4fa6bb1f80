"""`specc train --backend torch`: PyTorch as a training backend of runtime/loop.py (imports torch).

    model = runtime.Model(graph, seed=graph.train.seed)        # specc's initialisation, as on NumPy
    history = fit_torch(model, "data/train.npz", out_dir="runs/x", device="cpu", precision="fp32")

The loop (epochs, batches, noise, augmentation, schedules, early stopping, checkpoints, history,
resume) is runtime/loop.py's, the one the NumPy runtime runs; this file supplies the arithmetic:
the generated nn.Module (build.TorchModel, specc's parameter names), autograd, torch.nn.utils' clipping
and torch.optim's SGD/Adam/AdamW with the spec's hyper-parameters. runtime/optim.py follows torch's
update rules (L2 weight decay for SGD and Adam, decoupled for AdamW), so the two backends take the same
steps. Learning rates come from runtime/schedule.py through `param_groups` (lr, initial_lr, lr_scale)
and are copied into torch's groups (lr · lr_scale) before every step; the optimiser state is stored in
specc's flat format (`state.<param>.<slot>`, `group.<i>.<setting>`), so a last.npz resumes on either
backend. The weights start from the NumPy Model given (its initialisation, --init, standardize
from_data are computed there) and are copied back into it when training ends.
"""
from __future__ import annotations

import base64
import contextlib
import math
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from compiler.errors import UserError

from runtime import optim
from runtime.backend_numpy import raise_bad_grads
from runtime.train import Phase, Plan, _diverged, _rng_state, _set_rng, fit_standardize

from .build import TorchModel

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SETTINGS = ("momentum", "dampening", "weight_decay", "nesterov", "eps")


class TorchOptimizer:
    """A torch.optim optimiser with specc's optimiser surface: `param_groups` holds specc's groups (lr,
    initial_lr, lr_scale and the settings, which schedules and checkpoints read and write), and
    state_dict()/load_state_dict() use runtime/optim.py's flat format."""

    def __init__(self, cfg: Any, named_np: Mapping[str, Any], named_torch: Mapping[str, torch.nn.Parameter],
                 lr_scale: Mapping[str, float]):
        self.spec = optim.make(cfg, optim.grouped(named_np, lr_scale))
        self.param_groups = self.spec.param_groups
        self.params = dict(named_torch)
        groups = [{"params": [self.params[n] for n in g["params"]]} for g in self.spec.param_groups]
        g0 = self.spec.param_groups[0]
        self.fused = _fusable(self.params.values())
        impl = {"fused": True} if self.fused else {}
        if isinstance(self.spec, optim.SGD):
            self.opt = torch.optim.SGD(groups, lr=g0["lr"], momentum=g0["momentum"], dampening=g0["dampening"],
                                       weight_decay=g0["weight_decay"], nesterov=g0["nesterov"], **impl)
        else:
            cls = torch.optim.AdamW if isinstance(self.spec, optim.AdamW) else torch.optim.Adam
            self.opt = cls(groups, lr=g0["lr"], betas=tuple(g0["betas"]), eps=g0["eps"],
                           weight_decay=g0["weight_decay"], **impl)
        self.sync()

    def sync(self) -> None:
        """Copy specc's group settings into torch's groups: lr · lr_scale, momentum, betas, ..."""
        for tg, sg in zip(self.opt.param_groups, self.spec.param_groups):
            tg["lr"] = sg["lr"] * sg["lr_scale"]
            for k in SETTINGS:
                if k in sg:
                    tg[k] = sg[k]
            if "betas" in sg:
                tg["betas"] = tuple(sg["betas"])

    def step(self, scaler: Any = None) -> None:
        self.sync()
        if scaler is not None:
            scaler.step(self.opt)
            scaler.update()
        else:
            self.opt.step()

    def state_dict(self) -> dict[str, np.ndarray]:
        names = {id(p): n for n, p in self.params.items()}
        for p, st in self.opt.state.items():
            slots: dict[str, Any] = {}
            for k, v in st.items():
                if v is None:
                    continue
                if k == "step":
                    slots[k] = int(v.item() if torch.is_tensor(v) else v)
                else:
                    slots[k] = v.detach().cpu().numpy().copy()
            self.spec.state[names[id(p)]] = slots
        return self.spec.state_dict()

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.spec.load_state_dict(state)            # checks names, shapes and groups; keeps the settings
        for name, slots in self.spec.state.items():
            p = self.params[name]
            st: dict[str, Any] = {}
            for k, v in slots.items():
                if k == "step":               # the fused kernels keep it on the parameter's device
                    st[k] = torch.tensor(float(v), dtype=torch.float32, device=p.device if self.fused else "cpu")
                else:
                    st[k] = torch.from_numpy(np.array(v, copy=True)).to(device=p.device, dtype=p.dtype)
            if st:
                self.opt.state[p] = st
        self.sync()


class TorchBackend:
    """Trains a spec's generated nn.Module; `np_model` gives the initial weights and gets the final ones."""

    name = "torch"

    def __init__(self, np_model: Any, device: str = "cpu", precision: str = "fp32", rank: int = 0, world: int = 1):
        """`world` > 1: one of a data-parallel run (torch.distributed already initialised, distributed.py)."""
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision '{precision}'", hint="use fp32, bf16 or fp16", code=2)
        self.rank, self.world = rank, world
        self.ddp: dict[int, tuple[Any, Any]] = {}        # id(phase) -> (its Export, its DDP wrapper)
        self.sizes: list[int] = [0]
        self.np_model = np_model
        self.model = TorchModel(np_model.graph, device)
        self.model.load_numpy(np_model.state_dict())
        self.params = dict(self.model.module.named_parameters(remove_duplicate=False))
        self.precision = precision
        self.scaler = None
        self.clip = None
        self.grad_stats: tuple[float, bool] = (float("nan"), False)     # set by step() when where.log

    # -- parameters and optimisers ------------------------------------------------------------
    def prepare(self, plan: Plan, cfg: Any) -> None:
        self.clip = cfg.grad_clip
        self.plan = plan
        if self.precision == "fp16":
            self.scaler = torch.amp.GradScaler(self.model.device.type)

    def parameter_names(self) -> list[str]:
        return self.np_model.parameter_names()

    def freeze(self, names: Iterable[str]) -> None:
        names = list(names)
        self.np_model.freeze(names)
        for n in names:
            self.params[n].requires_grad_(False)

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: self.params[n] for n in self.np_model.parameters()}

    @staticmethod
    def count(params: Iterable[torch.Tensor]) -> int:
        return sum(p.numel() for p in params)

    def make_optimizer(self, cfg: Any, names: list[str], lr_scale: Mapping[str, float]) -> TorchOptimizer:
        np_params = self.np_model.parameters()
        return TorchOptimizer(cfg, {n: np_params[n] for n in names}, {n: self.params[n] for n in names}, lr_scale)

    # -- one step -----------------------------------------------------------------------------
    def _autocast(self) -> Any:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.model.device.type, dtype=dtype)

    def step(self, ph: Phase, refs: list[str], feed: dict[str, np.ndarray], where: Any) -> dict[str, np.ndarray]:
        """Forward, the weighted objective, backward, clipping and one optimiser step of a phase."""
        self.zero_grad()
        others = [p for n, p in self.params.items() if n not in ph.params and p.requires_grad]
        for p in others:                      # only the phase's parameters get gradients
            p.requires_grad_(False)
        try:
            outs = self._forward(ph, refs, feed)
            total = _weighted(outs, ph.terms) if self.world == 1 else self._weighted_share(outs, ph.terms)
            (self.scaler.scale(total) if self.scaler is not None else total).backward()
        finally:
            for p in others:
                p.requires_grad_(True)
        params = list(ph.params.values())
        if self.scaler is not None:
            self.scaler.unscale_(ph.optimizer.opt)
        self._clip(params, getattr(where, "log", False))
        self._check_finite(total, ph, refs, feed, where)
        ph.optimizer.step(self.scaler)
        if self.world > 1:
            outs = self._whole_batch(outs, refs, ph.terms)
        return {k: _numpy(outs[k]) for k in refs}

    def _clip(self, params: list[torch.nn.Parameter], measure: bool) -> None:
        """grad_clip; when `measure`, grad_stats = (global norm before clipping, whether clipping changed it)."""
        clip = self.clip
        if clip is not None and clip.max_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip.max_norm))
            self.grad_stats = (norm, clip.max_norm / (norm + 1e-6) < 1)     # clip_grad_norm_'s own test
            return
        if measure:
            grads = [p.grad.detach() for p in params if p.grad is not None]
            norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads]))
                         ) if grads else 0.0
            over = clip is not None and any(bool((g.abs() > clip.value).any()) for g in grads)
            self.grad_stats = (norm, over)
        if clip is not None:
            torch.nn.utils.clip_grad_value_(params, clip.value)

    def _check_finite(self, total: torch.Tensor, ph: Phase, refs: list[str], feed: dict[str, np.ndarray],
                      where: Any) -> None:
        """Stop before the optimiser step when the objective or a gradient is NaN or infinite. One test (and
        one wait for the device) per step: the sum of the objective and of every gradient's sum, in which NaN
        and inf propagate; only when it fails, the exact tests. Backward has run on a non-finite objective
        by then (harmless: nothing is stepped; and under DDP every process reaches the all-reduce). With
        fp16 the gradients are not tested: the scaler skips the steps whose gradients overflowed."""
        grads = [] if self.scaler is not None else [p.grad for p in ph.params.values() if p.grad is not None]
        if math.isfinite(float(torch.stack([total.detach().float()] + [g.sum() for g in grads]).sum())):
            return
        if not math.isfinite(float(total.detach())):
            self._diverged(refs, feed, where)
        bad = _nonfinite_grads(ph.params) if self.scaler is None else []
        if bad:
            raise_bad_grads(bad, where)

    # -- data parallel --------------------------------------------------------------------------
    def shard(self, feed: dict[str, np.ndarray], n: int, batched: Any) -> dict[str, np.ndarray]:
        """This process's rows of a global batch of n: np.array_split's rank-th piece."""
        if self.world == 1:
            return feed
        self.sizes = [len(p) for p in np.array_split(np.arange(n), self.world)]
        a = sum(self.sizes[:self.rank])
        b = a + self.sizes[self.rank]
        return {k: v[a:b] if k in batched else v for k, v in feed.items()}

    def _forward(self, ph: Phase, refs: list[str], feed: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        if self.world == 1:
            with self._autocast():
                return self.model.forward(outputs=refs, **feed)
        exp, ddp = self._ddp_for(ph)
        args = [self.model.tensor(k, feed[k]) for k in exp.inputs]
        with self._autocast():
            out = ddp(*args)
        return dict(zip(exp.outputs, out if len(exp.outputs) > 1 else (out,)))

    def _ddp_for(self, ph: Phase) -> tuple[Any, Any]:
        """One DDP wrapper per phase, built on first use: its module returns the phase's objective terms (and
        the metrics' predict/target for the first phase), its reducer all-reduces the phase's parameters only
        (the others are in DDP's ignore list: a GAN's discriminator step leaves the generator's gradients
        alone, and the reverse). A phase's backward fires the hooks of its own wrapper only: the other
        phases' parameters do not require gradients during it (TorchBackend.step)."""
        if id(ph) not in self.ddp:
            from torch.nn.parallel import DistributedDataParallel
            plan = self.plan
            metrics = [plan.predict, plan.target] if ph is plan.phases[0] and plan.predict and plan.target else []
            exp, mod = self.model.module_for(list(dict.fromkeys([*ph.terms, *metrics])))
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                mod, [n for n in self.params if n not in ph.params])
            ids = [self.model.device.index] if self.model.device.type == "cuda" else None
            self.ddp[id(ph)] = (exp, DistributedDataParallel(mod, device_ids=ids,
                                                             find_unused_parameters=not self._all_used(ph)))
        return self.ddp[id(ph)]

    def _all_used(self, ph: Phase) -> bool:
        """Whether the phase's objective reaches each of the phase's parameters (else DDP must look for unused
        ones every step, or it would wait for their gradients). A `detach` ends a path: no gradient passes."""
        g = self.np_model.graph
        need: set[str] = set()
        stack = [g.ref_of(r).node for r in ph.terms]
        while stack:
            n = stack.pop()
            if n not in need:
                need.add(n)
                if g.has_node(n) and g.node(n).op != "detach":
                    stack.extend(r.node for r in g.node(n).inputs if r is not None)
        return all(node.name in need for name, (_spec, node) in g.params().items() if name in ph.params)

    def _share(self, ref: str) -> float:
        """This process's part of the batch's value of a term: n_rank / n of a mean, all of a sum."""
        return 1.0 if ref in self.plan.per_sample else self.sizes[self.rank] / sum(self.sizes)

    def _weighted_share(self, outs: dict[str, torch.Tensor], terms: dict[str, float]) -> torch.Tensor:
        """DDP averages the processes' gradients; scaled by world · share, their mean is the gradient of the
        whole batch's objective (exact for terms that average or sum over the samples, uneven shards too)."""
        return sum(w * self.world * self._share(r) * outs[r].float() for r, w in terms.items())

    def _whole_batch(self, outs: dict[str, torch.Tensor], refs: list[str], terms: dict[str, float]) -> dict:
        from . import distributed
        vals = distributed.all_sum(torch.stack([outs[r].detach().float() * self._share(r) for r in terms]))
        res = dict(zip(terms, vals))
        for r in refs:
            if r not in res:                  # predict / target: every process's rows, for the metrics
                res[r] = distributed.gather_rows(outs[r].detach(), self.sizes)
        return res

    def epoch_end(self) -> None:
        if self.world > 1:                    # per-replica batch norm: validate with rank 0's statistics
            from . import distributed
            distributed.broadcast_buffers(self.model.module)

    def _diverged(self, refs: list[str], feed: dict[str, np.ndarray], where: Any) -> None:
        """Name the first non-finite node: the NumPy runtime re-runs the batch with these weights."""
        self.np_model.load_state_dict(self.model.numpy_state())
        self.np_model.train()
        with np.errstate(all="ignore"):       # the overflow is what is being reported
            _diverged(self.np_model, refs, feed, where.epoch, where.batch, where.out)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        return self.model.numpy_state()

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.model.load_numpy(state)

    def seed(self, seed: int) -> None:
        self.np_model.rng = np.random.default_rng([seed, 2])
        torch.manual_seed(int(np.random.SeedSequence([seed, 2]).generate_state(1)[0]))

    def rng_state(self) -> dict[str, Any]:
        raw = torch.get_rng_state().numpy().tobytes()
        return {"model": _rng_state(self.np_model.rng), "torch": base64.b64encode(raw).decode("ascii")}

    def set_rng_state(self, states: Mapping[str, Any]) -> None:
        _set_rng(self.np_model.rng, states["model"])
        if "torch" in states:                 # a last.npz of the NumPy backend has none: keep the seed's
            try:
                raw = np.frombuffer(base64.b64decode(states["torch"]), dtype=np.uint8).copy()
                torch.set_rng_state(torch.from_numpy(raw))
            except (ValueError, RuntimeError, TypeError):
                raise UserError("the checkpoint's torch random state is damaged",
                                hint="resume from an intact last.npz") from None

    def fit_standardize(self, ds: Any, log: Callable) -> None:
        self.np_model.load_state_dict(self.model.numpy_state())
        fit_standardize(self.np_model, ds, log=log)
        self.model.load_numpy(self.np_model.state_dict())

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def done(self) -> None:
        """The trained weights into the NumPy Model too (specc train evaluates the test set with them)."""
        self.np_model.load_state_dict(self.model.numpy_state())


def _weighted(outs: dict[str, torch.Tensor], terms: dict[str, float]) -> torch.Tensor:
    if len(terms) == 1 and next(iter(terms.values())) == 1.0:
        return outs[next(iter(terms))].float()
    return sum(w * outs[r].float() for r, w in terms.items())


def _fusable(params: Iterable[torch.Tensor]) -> bool:
    """torch.optim's fused kernels (one kernel per step for all parameters; the same update rule, within a
    float32 rounding) take floating-point parameters on CPU and CUDA; elsewhere torch's default is used."""
    params = list(params)
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def _nonfinite_grads(params: Mapping[str, torch.Tensor]) -> list[str]:
    """The parameters whose gradient holds a NaN or an infinity (element-wise: a sum of finite values can
    overflow on its own)."""
    return [n for n, p in params.items() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]


def _numpy(v: torch.Tensor) -> np.ndarray:
    v = v.detach()
    if v.dtype in (torch.bfloat16, torch.float16):
        v = v.float()
    return v.cpu().numpy()


def fit_torch(model: Any, train_data: Any, val_data: Any = None, *, device: str = "cpu", precision: str = "fp32",
              **kwargs: Any) -> list[dict[str, Any]]:
    """runtime.fit on PyTorch: the same arguments, plus the device and the precision."""
    from runtime.loop import run
    return run(TorchBackend(model, device, precision), train_data, val_data, **kwargs)
