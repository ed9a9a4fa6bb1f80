"""The inference plan: eval-mode execution of a Model, planned once per (outputs, input sizes).

The IR is static, so for inference (eval mode, no tape) the node list is rewritten once into steps:

- **batch norm folded** into the conv1d/conv2d/linear that feeds it (that node's only reader): the
  convolution runs with W·s and b·s + t (s = γ/√(var+ε), t = β − mean·s) when the weight is smaller than
  the activation, else the convolution's own output is scaled and shifted in place. s and t are computed
  from the live parameters on every call (a few hundred numbers), so training between calls, an
  optimiser's in-place update or load_state_dict never leaves a stale fold;
- **elementwise ops in place**: relu, sigmoid, tanh and add write into an input that nobody else reads,
  that the node producing it allocated itself (checked on every call: it shares no memory with that
  node's arguments, so never a graph input, a parameter or a view of one);
- **dropout** (the identity in eval) is skipped;
- **buffers freed by liveness**: each value is dropped right after its last reader runs, so NumPy's
  allocator reuses the memory for the next activations of the same size;
- **linear on [..., K] inputs as one GEMM** over all leading positions (NumPy's matmul runs one GEMM
  per leading index of a 3-D operand: 30 % slower for the transformer's [16, 64, 128] activations);
- no Tensor objects, no tape bookkeeping, one Ctx per node made at planning time;
- **recurrent layers in onnxruntime** (lstm, gru, rnn): their own ONNX lowering run as a one-node
  session with the weights as inputs (runtime/onnx_steps.py; 3x faster than the NumPy time loop).

Outputs equal the unplanned path's up to float rounding (folding changes the order of two multiplies);
tests/test_inference_plan.py checks every spec in specs/ within 1e-5 relative.

Escape hatch: `model.planned = False`, or SPECC_INFERENCE_PLAN=0 in the environment.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from compiler.ir import Node, Ref

from . import onnx_steps
from .kernels import KERNELS, Ctx

Key = tuple[str, "str | None"]
_FOLD_INTO = ("conv1d", "conv2d", "linear")
_IN_PLACE: dict[str, Callable[[np.ndarray], np.ndarray]] = {"relu": lambda x: np.maximum(x, 0, out=x),
                                                         "tanh": lambda x: np.tanh(x, out=x)}


def enabled() -> bool:
    """False when the environment turns the plan off (SPECC_INFERENCE_PLAN=0)."""
    return os.environ.get("SPECC_INFERENCE_PLAN", "1").strip().lower() not in ("0", "false", "no", "off")


def _key(r: Ref) -> Key:
    return (r.node, r.port)


def _concrete(shape: tuple, symbols: dict[str, int]) -> int | None:
    """The element count of an IR shape with the symbols bound (None when a dim is not a known symbol)."""
    n = 1
    for d in shape:
        if isinstance(d, int):
            n *= d
        elif d in symbols:
            n *= symbols[d]
        else:
            return None
    return n


class Step:
    """One planned call: a node's kernel (or a fused pair), its argument keys, the keys it writes."""

    __slots__ = ("node", "kind", "args", "params", "outs", "ctx", "bn", "bn_params", "fold", "inplace", "free")

    def __init__(self, node: Node, kind: str, args: list[Key | None], params: list[str], outs: list[Key | None],
                 ctx: Ctx):
        self.node, self.kind, self.args, self.params, self.outs, self.ctx = node, kind, args, params, outs, ctx
        self.bn: Node | None = None              # the batch_norm folded into this step
        self.bn_params: list[str] = []
        self.fold = True                         # fold into the weights (else scale the output in place)
        self.inplace: int | None = None          # argument index this elementwise step may overwrite
        self.free: list[Key] = []                # values nobody reads after this step


class InferencePlan:
    """Eval-mode steps for one Model plan (its nodes and requested refs) at one set of input sizes."""

    def __init__(self, model: Any, plan: Any, symbols: dict[str, int]):
        self.model = model
        self.refs: dict[str, Ref] = plan.refs
        nodes: list[Node] = plan.nodes
        readers: dict[Key, list[str]] = {}
        for n in nodes:
            for r in n.inputs:
                if r is not None:
                    readers.setdefault(_key(r), []).append(n.name)
        self.requested = {_key(r) for r in self.refs.values()}
        self.readers = readers
        self.steps: list[Step] = []
        by_output: dict[Key, Step] = {}
        for n in nodes:
            step = self._fold_bn(n, by_output) if n.op == "batch_norm" else None
            if step is not None:
                by_output[(n.name, None)] = step
                continue
            step = self._step(n, plan.wanted[n.name], symbols)
            self.steps.append(step)
            for k in step.outs:
                if k is not None:
                    by_output[k] = step
        self._mark_in_place()
        self._liveness()

    # -- planning ---------------------------------------------------------------------------
    def _step(self, n: Node, wanted: tuple, symbols: dict[str, int]) -> Step:
        """The node's own kernel (dropout, the identity in eval, is skipped)."""
        ports = list(n.outputs)
        outs: list[Key | None] = [(n.name, None if i == 0 else p) for i, p in enumerate(ports)]
        ctx = Ctx(n.attrs, False, self.model.rng, (), wanted, symbols, n)
        kind = "skip" if n.op == "dropout" else "onnx" if onnx_steps.usable(n.op) else "kernel"
        return Step(n, kind, [None if r is None else _key(r) for r in n.inputs], [n.param_name(p) for p in n.params],
                    outs, ctx)

    def _fold_bn(self, bn: Node, by_output: dict[Key, Step]) -> Step | None:
        """Fold this batch_norm into the conv/linear step that produced its input, when that is legal: the
        producer's only reader is this node, its output is not requested, and its channels are dim 1."""
        src = bn.inputs[0]
        if src is None or src.port is not None:
            return None
        k = _key(src)
        prod = by_output.get(k)
        if prod is None or prod.kind != "kernel" or prod.node.op not in _FOLD_INTO or prod.bn is not None:
            return None
        if len(prod.outs) != 1 or self.readers.get(k) != [bn.name] or k in self.requested:
            return None
        if prod.node.op == "linear" and len(prod.node.out.shape) != 2:
            return None                      # batch_norm's channel is dim 1: for linear only on [N, C]
        prod.bn, prod.bn_params = bn, [bn.param_name(p) for p in bn.params]
        prod.kind = "conv_bn"
        prod.outs = [(bn.name, None)]
        weight = self.model._params[prod.params[0]].data
        symbols = prod.ctx.symbols
        out_size = _concrete(prod.node.out.shape, symbols)
        prod.fold = out_size is None or weight.size <= out_size
        return prod

    def _mark_in_place(self) -> None:
        """Elementwise steps whose input is read by them alone (and not requested) may overwrite it."""
        for s in self.steps:
            if s.kind != "kernel":
                continue
            op = s.node.op
            if op in ("relu", "tanh") or (op == "add" and len(s.args) == 2 and None not in s.args):
                for i, k in enumerate(s.args):
                    if k is not None and k[0] not in self.model.graph.inputs and len(self.readers.get(k, ())) == 1 \
                            and k not in self.requested:
                        s.inplace = i
                        s.kind = "inplace"
                        break

    def _liveness(self) -> None:
        last: dict[Key, Step] = {}
        for s in self.steps:
            for k in s.args:
                if k is not None:
                    last[k] = s
        for k, s in last.items():
            if k not in self.requested:
                s.free.append(k)

    # -- running ----------------------------------------------------------------------------
    def run(self, env: dict[str, np.ndarray], profile: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """The requested outputs. With `profile`, each step's seconds are added to profile[its label]
        (`label(step)`: the op, "conv2d+batch_norm", "relu in place", ...)."""
        params = {k: t.data for k, t in self.model._params.items()}
        vals: dict[Key, Any] = {(k, None): v for k, v in env.items()}
        fresh: set[Key] = set()              # values their producer allocated (no memory shared with its args)
        rng = self.model.rng
        for s in self.steps:
            t0 = time.perf_counter() if profile is not None else 0.0
            args = [None if k is None else vals[k] for k in s.args]
            if s.kind == "skip":
                vals[s.outs[0]] = args[0]
            elif s.kind == "inplace" and s.args[s.inplace] in fresh and self._fits(s, args):
                vals[s.outs[0]] = self._in_place(s, args)
                fresh.add(s.outs[0])
            else:
                self._call(s, args, params, vals, fresh, rng)
            for k in s.free:
                vals.pop(k, None)
                fresh.discard(k)
            if profile is not None:
                lab = label(s)
                profile[lab] = profile.get(lab, 0.0) + time.perf_counter() - t0
        return {name: vals[_key(r)] for name, r in self.refs.items()}

    def _call(self, s: Step, args: list, params: dict[str, np.ndarray], vals: dict, fresh: set, rng: Any) -> None:
        s.ctx.rng = rng
        pv = [params[p] for p in s.params]
        try:
            if s.kind == "conv_bn":
                out = self._conv_bn(s, args, pv, params)
            elif s.node.op == "linear" and isinstance(args[0], np.ndarray) and args[0].ndim > 2 \
                    and args[0].flags.c_contiguous:
                out = _linear_flat(s, args[0], pv)
            else:
                out = onnx_steps.run(s.node, s.ctx, args, pv) if s.kind == "onnx" else None
                if out is None:
                    out = KERNELS[s.node.op](s.ctx, *args, *pv)[0]
                elif len(s.outs) == 1:
                    out = out[0]
        except (ValueError, IndexError) as e:        # bad data reaching a kernel: as Model._run says it
            raise _data_error(s, args, pv, e) from None
        outs = out if len(s.outs) > 1 else (out,)
        for k, o in zip(s.outs, outs):
            vals[k] = o
            if isinstance(o, np.ndarray) and (args or pv) and _owned(o, args, pv):   # a constant may be cached
                fresh.add(k)

    @staticmethod
    def _fits(s: Step, args: list) -> bool:
        """The overwritten input already has the result's shape and dtype (no broadcasting into it)."""
        x = args[s.inplace]
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or not x.flags.writeable:
            return False
        if s.node.op != "add":
            return True
        other = args[1 - s.inplace]
        return isinstance(other, np.ndarray) and other.dtype == x.dtype and \
            np.broadcast_shapes(x.shape, other.shape) == x.shape

    @staticmethod
    def _in_place(s: Step, args: list) -> np.ndarray:
        x = args[s.inplace]
        op = s.node.op
        if op == "add":
            return np.add(x, args[1 - s.inplace], out=x)
        return _IN_PLACE[op](x)

    def _conv_bn(self, s: Step, args: list, pv: list, params: dict[str, np.ndarray]) -> np.ndarray:
        """conv/linear then batch_norm (eval), as the batch_norm kernel computes its scale and shift."""
        x = args[0]
        bn = s.bn
        bp = [params[p] for p in s.bn_params]
        if bn.attrs.affine:
            gamma, beta, mean, var = bp[:4]
        else:
            (mean, var), gamma, beta = bp[:2], None, None
        dt = x.dtype
        inv = 1.0 / np.sqrt(var.astype(dt, copy=False) + dt.type(bn.attrs.eps))
        scale = inv * gamma if gamma is not None else inv
        shift = -mean.astype(dt, copy=False) * scale
        if beta is not None:
            shift = shift + beta
        weight, bias = pv[0], (pv[1] if len(pv) > 1 else None)
        kern = KERNELS[s.node.op]
        if s.fold:
            w = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
            b = shift if bias is None else bias * scale + shift
            return kern(s.ctx, x, w, b)[0]
        y = kern(s.ctx, x, weight, bias)[0]
        shape = (-1,) + (1,) * (y.ndim - 2)
        if not _owned(y, args, pv):
            y = y.copy()
        y *= scale.reshape(shape)
        y += shift.reshape(shape)
        return y


def _linear_flat(s: Step, x: np.ndarray, pv: list) -> np.ndarray:
    """linear on [..., K] as one [rows, K] GEMM: NumPy's matmul would run one GEMM per leading index."""
    y = KERNELS["linear"](s.ctx, x.reshape(-1, x.shape[-1]), *pv)[0]
    return y.reshape(x.shape[:-1] + (y.shape[-1],))


def label(s: Step) -> str:
    """A step's kind for profiles: its op, or what the plan made of it."""
    if s.kind == "conv_bn":
        return f"{s.node.op}+batch_norm ({'folded' if s.fold else 'scaled'})"
    if s.kind == "inplace":
        return f"{s.node.op} (in place when allowed)"
    if s.kind == "skip":
        return f"{s.node.op} (skipped)"
    if s.kind == "onnx":
        return f"{s.node.op} (onnxruntime)"
    return s.node.op


def _data_error(s: Step, args: list, pv: list, e: Exception) -> Exception:
    from .model import _kernel_error
    from .tensor import Tensor
    wrapped = [None if a is None else Tensor(a) for a in (*args, *pv)]
    return _kernel_error(s.node, wrapped, s.ctx.symbols, e)


def _owned(y: np.ndarray, args: list, params: list) -> bool:
    """y shares no memory with the kernel's arguments or parameters: overwriting it harms nobody."""
    return not any(isinstance(a, np.ndarray) and np.may_share_memory(y, a) for a in (*args, *params))


def plan_for(model: Any, plan: Any, symbols: dict[str, int]) -> InferencePlan:
    """The cached InferencePlan of this Model plan at these input sizes."""
    cache: dict = model._inference_plans
    key = (id(plan), tuple(sorted(symbols.items())))
    ip = cache.get(key)
    if ip is None:
        ip = cache[key] = InferencePlan(model, plan, symbols)
    return ip


__all__ = ["InferencePlan", "enabled", "plan_for"]
