"""An independent PyTorch interpreter of a specc Graph: the reference for parity tests and benchmarks.

    import compiler, runtime
    from tools.torch_ref import TorchRef

    g = compiler.compile_file("specs/lenet5.yaml")
    model = runtime.Model(g, seed=0)
    ref = TorchRef(g, model.state_dict())          # same weights, torch parameters named as the state_dict
    out = ref(image=x, label=y, outputs=["logits", "loss"])   # {name: torch.Tensor}
    out["loss"].backward()                          # grads in ref.named_parameters(), same names

Every IR node runs as a small function of torch.nn.functional / torch ops: its op record's PyTorch
reference (compiler/ops/<family>.py; OPS below collects them, one per op of compiler.catalogue.ALL_OPS),
following docs/ops.md and the spec language's section 6. This module is the graph walker around them.
Nothing here uses specc's NumPy kernels: only the IR, and the compiler's geometry helpers (padding,
pooling sizes, the sinusoid table) that define what a spec means.

Parameters and buffers are registered in a tree of modules mirroring the dotted names, so
`ref.state_dict()` / `ref.named_parameters()` use exactly runtime.Model.state_dict()'s keys and
torch.load_state_dict works with them. batch_norm updates its running statistics (and
num_batches_tracked) in training mode as nn.BatchNorm does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from compiler.ir import Graph, Node, Ref
from compiler.ops import OPS as _RECORDS

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "bool": torch.bool,
                "int32": torch.int32}


class _Box(nn.Module):
    """A container for one level of the dotted parameter names."""

    def forward(self, *a):                                   # pragma: no cover - never called
        raise RuntimeError("_Box is a container")


@dataclass
class C:
    """What an op function gets besides its tensors."""

    a: Any                          # the node's attribute model
    node: Node
    training: bool
    symbols: dict[str, int]
    wanted: tuple[bool, ...]        # per output port: read by someone
    in_types: list                  # per input: compiler TensorType (None for an omitted one)
    fdtype: torch.dtype             # the float dtype the interpreter runs in


# Each op's reference is a small function of torch.nn.functional / torch ops declared on its record in
# compiler/ops/<family>.py (a `torch=` name, or a function registered with @reference): OPS derives from them.
OPS: dict[str, Callable[..., Any]] = {n: d.reference for n, d in _RECORDS.items() if d.reference is not None}


# ------------------------------------------------------------------------------------------ the module

@dataclass
class _Step:
    node: Node
    fn: Callable
    ins: list[tuple[str, str | None] | None]
    params: list[tuple[nn.Module, str]]
    ports: list[str]
    wanted: tuple[bool, ...]
    in_types: list


@dataclass
class _Plan:
    steps: list[_Step]
    inputs: list[str]
    refs: dict[str, tuple[str, str | None]]


class TorchRef(nn.Module):
    """A specc Graph as a torch.nn.Module; parameters and buffers named as runtime.Model.state_dict()."""

    def __init__(self, graph: Graph, state_dict: Mapping[str, Any] | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        missing = sorted({n.op for n in graph.nodes} - set(OPS))
        if missing:
            raise NotImplementedError(f"torch_ref has no function for op(s) {', '.join(missing)}")
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_fdtype", dtype)
        self._slots: dict[str, tuple[nn.Module, str]] = {}
        self._plans: dict[tuple, _Plan] = {}
        self._nodes = {n.name: n for n in graph.nodes}
        for name, (spec, _node) in graph.params().items():
            *path, leaf = name.split(".")
            mod: nn.Module = self
            for part in path:
                if part not in mod._modules:
                    mod.add_module(part, _Box())
                mod = mod._modules[part]
            dt = TORCH_DTYPES.get(spec.dtype, torch.float32)
            dt = dtype if dt.is_floating_point else dt
            t = torch.zeros(spec.shape, dtype=dt)
            if spec.buffer:
                mod.register_buffer(leaf, t)
            else:
                mod.register_parameter(leaf, nn.Parameter(t))
            self._slots[name] = (mod, leaf)
        if state_dict is not None:
            self.load_numpy(state_dict)

    @property
    def graph(self) -> Graph:
        return self._graph

    def load_numpy(self, state: Mapping[str, Any]) -> None:
        """Copy a {name: ndarray} state_dict (runtime.Model.state_dict()) into the parameters and buffers."""
        missing = [k for k in self._slots if k not in state]
        unexpected = [k for k in state if k not in self._slots]
        if missing or unexpected:
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for k, (mod, leaf) in self._slots.items():
                t = getattr(mod, leaf)
                v = torch.as_tensor(np.asarray(state[k]))
                if tuple(v.shape) != tuple(t.shape):
                    raise ValueError(f"{k}: shape {tuple(v.shape)}, expected {tuple(t.shape)}")
                t.copy_(v.to(t.dtype))

    def numpy_state(self) -> dict[str, np.ndarray]:
        return {k: getattr(m, leaf).detach().cpu().numpy().copy() for k, (m, leaf) in self._slots.items()}

    def grads(self) -> dict[str, np.ndarray]:
        out = {}
        for k, (m, leaf) in self._slots.items():
            t = getattr(m, leaf)
            if isinstance(t, nn.Parameter) and t.grad is not None:
                out[k] = t.grad.detach().cpu().numpy()
        return out

    # -- planning: only the nodes the requested outputs need -----------------------------------
    def _resolve(self, name: str) -> tuple[str, str | None]:
        g = self._graph
        if name in g.output_refs:
            r = g.output_refs[name]
            return self._key(r)
        node, _, port = name.partition(":")
        if node in g.inputs and not port:
            return (node, None)
        return self._key(Ref(node, port or None))

    def _key(self, r: Ref) -> tuple[str, str | None]:
        if r.port is not None and r.node in self._nodes and r.port == next(iter(self._nodes[r.node].outputs)):
            return (r.node, None)
        return (r.node, r.port)

    def plan(self, outputs: list[str] | None) -> _Plan:
        key = tuple(outputs) if outputs else ()
        if key in self._plans:
            return self._plans[key]
        g = self._graph
        refs = {n: self._resolve(n) for n in (outputs or list(g.output_refs))}
        need: set[str] = set()
        stack = [r[0] for r in refs.values()]
        while stack:
            n = stack.pop()
            if n in need:
                continue
            need.add(n)
            if n in self._nodes:
                stack.extend(r.node for r in self._nodes[n].inputs if r is not None)
        used: set[tuple[str, str | None]] = set(refs.values())
        nodes = [n for n in g.nodes if n.name in need]
        for n in nodes:
            used.update(self._key(r) for r in n.inputs if r is not None)
        steps = []
        for n in nodes:
            ports = list(n.outputs)
            wanted = tuple((n.name, None if i == 0 else p) in used for i, p in enumerate(ports))
            steps.append(_Step(n, OPS[n.op], [None if r is None else self._key(r) for r in n.inputs],
                               [self._slots[n.param_name(p)] for p in n.params], ports, wanted,
                               [None if r is None else g.type_of(r) for r in n.inputs]))
        plan = _Plan(steps, [k for k in g.inputs if k in need], refs)
        self._plans[key] = plan
        return plan

    # -- running ---------------------------------------------------------------------------------
    def forward(self, outputs: list[str] | None = None, **inputs: Any) -> dict[str, torch.Tensor]:
        g = self._graph
        plan = self.plan(outputs)
        env: dict[tuple[str, str | None], Any] = {}
        symbols: dict[str, int] = {}
        for name in plan.inputs:
            tt = g.inputs[name]
            v = inputs[name]
            if not isinstance(v, torch.Tensor):
                v = torch.as_tensor(np.asarray(v))
            want = TORCH_DTYPES[tt.dtype]
            want = self._fdtype if want.is_floating_point else want
            if v.dtype != want:
                v = v.to(want)
            for d, s in zip(tt.shape, v.shape):
                if isinstance(d, str):
                    symbols.setdefault(d, int(s))
            env[(name, None)] = v
        training = self.training
        for st in plan.steps:
            args = [None if k is None else env[k] for k in st.ins]
            args += [getattr(m, leaf) for m, leaf in st.params]
            c = C(st.node.attrs, st.node, training, symbols, st.wanted, st.in_types, self._fdtype)
            out = st.fn(c, *args)
            if len(st.ports) > 1:
                for i, (p, o) in enumerate(zip(st.ports, out)):
                    env[(st.node.name, None if i == 0 else p)] = o
            else:
                env[(st.node.name, None)] = out
        return {k: env[r] for k, r in plan.refs.items()}


class Positional(nn.Module):
    """TorchRef with positional inputs and a tuple of outputs (for torch.onnx.export / tracing)."""

    def __init__(self, ref: TorchRef, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.ref = ref
        self.input_names = list(inputs)
        self.output_names = list(outputs)

    def forward(self, *args):
        res = self.ref(outputs=self.output_names, **dict(zip(self.input_names, args)))
        return tuple(res[k] for k in self.output_names)


def from_model(model: Any, dtype: torch.dtype = torch.float32) -> TorchRef:
    """A TorchRef with the weights of a runtime.Model, in the same train/eval mode."""
    ref = TorchRef(model.graph, model.state_dict(), dtype=dtype)
    ref.train(model.training)
    return ref
