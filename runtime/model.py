"""Model: runs a compiled Graph with the NumPy kernels, with or without a tape."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.init import NP_DTYPES, initial_state
from compiler.weights_convert import positional_hint
from compiler.ir import Graph, Node, Ref

from . import fusion, mlas_conv
from .kernels import KERNELS, Ctx
from .kernels.registry import FUSED
from .memory import guard_activations, guard_params
from .tensor import Entry, Tensor



class StateDictError(UserError):
    """load_state_dict found missing, unexpected or mis-shaped keys (all of them are listed)."""


class IncompatibleKeys(NamedTuple):
    """What load_state_dict skipped (strict=False), as PyTorch's load_state_dict returns it."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class NonFiniteError(UserError):
    def __init__(self, node: str, op: str):
        super().__init__(f"non-finite values (nan or inf) first appear in the output of node '{node}' ({op})",
                         hint="lower the learning rate, clip gradients (train.grad_clip), or check the input data")
        self.node = node


@dataclass
class _Plan:
    nodes: list[Node]
    inputs: list[str]                       # graph inputs the plan reads
    wanted: dict[str, tuple[bool, ...]]     # node -> per-port: read by someone
    refs: dict[str, Ref]                    # requested name -> ref
    steps: list | None = None               # per node, what _run looks up for it (Model._steps)
    fused: dict[int, int] | None = None     # training: node index -> the index fused into it (fusion.py)


def _kernel_error(node: Node, args: list, symbols: dict[str, int], e: Exception) -> UserError:
    """A kernel failed on the data. When the sizes the data gave to the spec's symbols break the op's shape
    rule (a symbol `check` could not tie to a number, say x [V, 3] against adj [4, 4] with V = 5 at run time),
    say so in the rule's words instead of NumPy's; otherwise pass the kernel's message on."""
    from compiler.errors import ShapeError
    from compiler.ir import TensorType
    from compiler.ops import OPS
    ins = args[:len(node.inputs)]
    types = [None if a is None else TensorType(tuple(a.data.shape), str(a.data.dtype)) for a in ins]
    try:
        OPS[node.op].infer(node.attrs, types)
    except ShapeError as rule:
        shown = ", ".join(f"'{r.node if r.port is None else f'{r.node}:{r.port}'}' {list(t.shape)}"
                          for r, t in zip(node.inputs, types) if r is not None and t is not None)
        bound = ", ".join(f"{k}={v}" for k, v in symbols.items())
        why = rule.message[len(node.op) + 2:] if rule.message.startswith(node.op + ": ") else rule.message
        return UserError(f"node '{node.name}' ({node.op}) cannot run on the sizes the inputs gave"
                         f"{f' ({bound})' if bound else ''}: {why} (inputs here: {shown})",
                         hint="the spec leaves these sizes to the data, but the op needs them to agree: use the "
                              "same number or symbol in `inputs` for dimensions that must match")
    except Exception:                                   # noqa: BLE001 - the kernel's own message is the fallback
        pass
    return UserError(f"node '{node.name}' ({node.op}): {e}")


_MLAS_OPS = ("conv1d", "conv2d", "conv_transpose2d")


class Model:
    """A spec's network with NumPy parameters named and laid out as PyTorch's state_dict."""

    def __init__(self, graph: Graph, seed: int = 0):
        self.graph = graph
        self.training = True
        self.check_finite = False
        self.rng = np.random.default_rng(seed)
        self._params: dict[str, Tensor] = {}
        self._buffers: set[str] = set()
        guard_params(graph)
        params = graph.params()
        for name, arr in initial_state(graph, seed).items():
            spec = params[name][0]
            self._params[name] = Tensor(arr, requires_grad=not spec.buffer)
            if spec.buffer:
                self._buffers.add(name)
        self._plans: dict[tuple, _Plan] = {}
        self.pretrained: set[str] = set()   # names whose values were loaded from another run (fit keeps them)
        self._nodes = {n.name: n for n in graph.nodes}
        self._sized: set[tuple] = set()         # (plan, symbol sizes, grad) already found to fit in memory
        self.planned = True                     # eval-mode calls run through runtime/inference_plan.py
        self._inference_plans: dict[tuple, Any] = {}    # (plan, symbol sizes) -> InferencePlan
        if any(n.op in _MLAS_OPS for n in graph.nodes):
            mlas_conv.block_size()      # load onnxruntime's kernels now, not inside the first training step

    # -- modes and parameters ----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Model":
        self.training = mode
        return self

    def eval(self) -> "Model":
        return self.train(False)

    def parameters(self) -> dict[str, Tensor]:
        """Trainable parameters (frozen ones, with requires_grad False, are left out)."""
        return {k: t for k, t in self._params.items() if k not in self._buffers and t.requires_grad}

    def named_tensors(self) -> dict[str, Tensor]:
        return dict(self._params)

    def parameter_names(self) -> list[str]:
        """Every parameter's name, frozen or not, in state_dict order; buffers (running statistics) left out."""
        return [k for k in self._params if k not in self._buffers]

    def freeze(self, names: Iterable[str], frozen: bool = True) -> None:
        for n in names:
            self._params[n].requires_grad = not frozen

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: t.data for k, t in self._params.items()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy the arrays in. Mis-shaped keys are always an error (nothing is loaded then); missing and
        unexpected keys too unless strict=False, which skips them and returns their names."""
        missing = [k for k in self._params if k not in state]
        unexpected = [k for k in state if k not in self._params]
        bad = []
        for k, v in state.items():
            if k in self._params and tuple(np.shape(v)) != self._params[k].shape:
                bad.append(f"{k}: checkpoint {list(np.shape(v))}, model {list(self._params[k].shape)}")
        problems = []
        if bad:
            problems.append("mis-shaped: " + "; ".join(bad))
        if strict and missing:
            problems.append("missing: " + ", ".join(missing))
        if strict and unexpected:
            seq = positional_hint(unexpected)
            hints = [f"{k} ({h})" if not seq and (h := did_you_mean(k, missing, n=1)) else k for k in unexpected]
            problems.append("unexpected: " + ", ".join(hints))
        if problems:
            raise StateDictError(f"the weights do not fit model '{self.graph.name}':\n  " + "\n  ".join(problems),
                                 hint=(strict and positional_hint(unexpected))
                                 or "check that the checkpoint was made from this spec (same params)")
        for k, v in state.items():
            if k in self._params:
                t = self._params[k]
                t.data = np.array(v, dtype=t.data.dtype, copy=True)
        return IncompatibleKeys(missing, unexpected)

    def grads(self) -> dict[str, np.ndarray]:
        return {k: t.grad for k, t in self.parameters().items() if t.grad is not None}

    def zero_grad(self) -> None:
        for t in self._params.values():
            t.grad = None

    # -- running ------------------------------------------------------------------------------
    def __call__(self, outputs: list[str] | None = None, **inputs: Any) -> dict[str, np.ndarray]:
        """Inference: no tape is kept. Returns {output name: ndarray}. In eval mode this runs the inference
        plan (batch norm folded, elementwise ops in place: runtime/inference_plan.py) unless
        `model.planned = False` or SPECC_INFERENCE_PLAN=0."""
        if not self.training and self.planned and not self.check_finite:
            from . import inference_plan
            if inference_plan.enabled():
                return self._run_planned(inputs, outputs)
        res = self._run(inputs, outputs, grad=False)
        return {k: v.data for k, v in res.items()}

    def forward(self, outputs: list[str] | None = None, **inputs: Any) -> dict[str, Tensor]:
        """Run with a tape, so any returned Tensor can `.backward()`."""
        return self._run(inputs, outputs, grad=True)

    def plan(self, outputs: list[str] | None = None) -> _Plan:
        key = tuple(outputs) if outputs else ()
        if key not in self._plans:
            self._plans[key] = self._make_plan(outputs)
        return self._plans[key]

    def resolve(self, name: str) -> Ref:
        """An output name, input, node[:port] or block instance[:port] (Graph.ref_of)."""
        return self.graph.ref_of(name)

    def _make_plan(self, outputs: list[str] | None) -> _Plan:
        refs = {name: self.resolve(name) for name in (outputs or list(self.graph.output_refs))}
        need: set[str] = set()
        stack = [r.node for r in refs.values()]
        while stack:
            n = stack.pop()
            if n in need:
                continue
            need.add(n)
            if n in self._nodes:
                stack.extend(r.node for r in self._nodes[n].inputs if r is not None)
        nodes = [n for n in self.graph.nodes if n.name in need]
        used: dict[str, set] = {}
        for n in nodes:
            for r in n.inputs:
                if r is not None:
                    used.setdefault(r.node, set()).add(r.port)
        for r in refs.values():
            used.setdefault(r.node, set()).add(r.port)
        wanted = {}
        for n in nodes:
            ports = list(n.outputs)
            u = used.get(n.name, set())
            wanted[n.name] = tuple((p in u) or (i == 0 and None in u) for i, p in enumerate(ports))
        inputs = [k for k in self.graph.inputs if k in need]
        return _Plan(nodes, inputs, wanted, refs)

    def _bind_inputs(self, given: Mapping[str, Any], plan: _Plan) -> tuple[dict[str, Tensor], dict[str, int]]:
        g = self.graph
        unknown = [k for k in given if k not in g.inputs]
        if unknown:
            raise UserError(f"unknown input '{unknown[0]}'", hint=did_you_mean(unknown[0], list(g.inputs)) or
                            f"the inputs are: {', '.join(g.inputs)}")
        missing = [k for k in plan.inputs if k not in given]
        if missing:
            raise UserError(f"missing input '{missing[0]}' (shape {g.inputs[missing[0]]}, "
                            f"{g.inputs[missing[0]].dtype})")
        symbols: dict[str, int] = {}
        values: dict[str, Tensor] = {}
        for name in plan.inputs:
            t = given[name]
            tt = g.inputs[name]
            if isinstance(t, Tensor) and t.data.dtype != NP_DTYPES[tt.dtype]:
                if t.tracked:                   # converting would cut the gradient's way back to t
                    raise UserError(f"input '{name}' is a {t.data.dtype} Tensor that needs a gradient, but the "
                                    f"spec declares {tt.dtype}",
                                    hint=f"pass runtime.Tensor(x.astype(np.{tt.dtype}), requires_grad=True)")
                t = t.data                      # a constant: converted as an array is
            if isinstance(t, Tensor):
                arr = t.data
            else:
                arr = np.asarray(t)
                want = NP_DTYPES[tt.dtype]
                if tt.dtype == "float32" and arr.dtype.kind not in "fiub":
                    raise UserError(f"input '{name}' must be numeric, got dtype {arr.dtype}")
                if tt.dtype == "int64" and arr.dtype.kind not in "iub":
                    if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
                        arr = arr.astype(np.int64)
                    else:
                        raise UserError(f"input '{name}' must hold integers (int64), got dtype {arr.dtype}")
                if arr.dtype != want:
                    arr = arr.astype(want)
                t = Tensor(arr)
            if arr.ndim != tt.rank:
                raise UserError(f"input '{name}' must have shape {tt} (rank {tt.rank}), got {list(arr.shape)}")
            for d, s in zip(tt.shape, arr.shape):
                if isinstance(d, int):
                    if d != s:
                        raise UserError(f"input '{name}' must have shape {tt}, got {list(arr.shape)}")
                elif symbols.setdefault(d, s) != s:
                    raise UserError(f"symbol {d} is {symbols[d]} in one input but {s} in '{name}' "
                                    f"(shape {list(arr.shape)})")
            values[name] = t
        return values, symbols

    def _steps(self, plan: _Plan) -> list[tuple]:
        """Per node of the plan: (node, the keys of its inputs in _run's values, its parameter tensors, the
        ports read, the keys of its outputs), worked out once per plan instead of once per node and call."""
        if plan.steps is None:
            plan.steps = [(n, [None if r is None else (r.node, r.port) for r in n.inputs],
                           [self._params[n.param_name(p)] for p in n.params], plan.wanted[n.name],
                           [(n.name, None if i == 0 else p) for i, p in enumerate(n.outputs)]) for n in plan.nodes]
        return plan.steps

    def _fused(self, plan: _Plan) -> dict[int, int]:
        if plan.fused is None:
            plan.fused = fusion.pairs(plan.nodes, list(plan.refs.values()))
        return plan.fused

    def _run_planned(self, given: Mapping[str, Any], outputs: list[str] | None) -> dict[str, np.ndarray]:
        from .inference_plan import plan_for
        plan = self.plan(outputs)
        env, symbols = self._bind_inputs(given, plan)
        self._guard(plan, symbols, False)
        return plan_for(self, plan, symbols).run({k: v.data for k, v in env.items()})

    def _guard(self, plan: _Plan, symbols: dict[str, int], grad: bool) -> None:
        key = (id(plan), tuple(sorted(symbols.items())), grad)
        if key not in self._sized:
            guard_activations(self.graph.name, plan.nodes, symbols, grad)
            self._sized.add(key)

    def _run(self, given: Mapping[str, Any], outputs: list[str] | None, grad: bool) -> dict[str, Tensor]:
        plan = self.plan(outputs)
        env, symbols = self._bind_inputs(given, plan)
        self._guard(plan, symbols, grad)
        vals: dict[tuple[str, str | None], Tensor | None] = {(k, None): v for k, v in env.items()}
        training, rng, check = self.training, self.rng, self.check_finite
        steps = self._steps(plan)
        # check_finite names the first node whose output is not finite: every node keeps its own output
        fused = self._fused(plan) if training and fusion.enabled() and not check else {}
        inside = set(fused.values())
        for i, (node, keys, params, wanted, out_keys) in enumerate(steps):
            if i in inside:
                continue                                # computed by the node it is fused into
            args: list[Tensor | None] = [None if k is None else vals[k] for k in keys]
            if params:
                args += params
            needs = tuple(a is not None and (a.requires_grad or a._entry is not None) for a in args) if grad else ()
            ctx = Ctx(node.attrs, training, rng, needs, wanted, symbols, node)
            fn = KERNELS[node.op]
            if i in fused:
                second = steps[fused[i]]
                fn, out_keys = FUSED[(node.op, second[0].op)], second[4]
            try:
                out, bwd = fn(ctx, *[None if a is None else a.data for a in args])
            except (ValueError, IndexError) as e:         # bad data reaching a kernel, e.g. a label out of range
                raise _kernel_error(node, args, symbols, e) from None
            outs = out if len(out_keys) > 1 else (out,)
            tensors = [None if o is None else Tensor(o) for o in outs]
            if grad and bwd is not None and True in needs:
                entry = Entry(bwd, args, tensors)
                for t in tensors:
                    if t is not None:
                        t._entry = entry
            if check:
                for t in tensors:
                    if t is not None and t.data.dtype.kind == "f" and not np.isfinite(t.data).all():
                        raise NonFiniteError(node.name, node.op)
            for k, t in zip(out_keys, tensors):
                vals[k] = t
        out = {}
        for name, r in plan.refs.items():
            v = vals.get((r.node, r.port))
            if v is None:
                raise UserError(f"output '{name}' was not computed")
            out[name] = v
        return out
