"""Running part of a model's graph with some node ports given: decoding steps that carry a state, a decoder
fed from a latent code, an encoder run up to its code.

`Model.__call__` runs from the graph inputs to named outputs. Using a trained model as the course does
also needs the other direction: start in the middle (a VAE's latent `z`, an LSTM decoder's `enc:h`
replaced by the previous step's `dec:h`). `Runner.run(wanted, inputs, fixed)` computes only the nodes the
wanted refs need, stopping wherever a value is given in `fixed`; no tape is kept.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.ir import Node, TensorType

from ..kernels import KERNELS, Ctx
from ..model import NP_DTYPES, Model

Key = tuple[str, "str | None"]            # (node or input, port; None for the first port)


class Runner:
    def __init__(self, model: Model):
        self.model = model
        self.graph = model.graph
        self.nodes: dict[str, Node] = {n.name: n for n in self.graph.nodes}
        self.order = {n.name: i for i, n in enumerate(self.graph.nodes)}

    # -- references ---------------------------------------------------------------------------
    def key(self, ref: str) -> Key:
        """(node, port) of 'node', 'node:port', an output name or an input name."""
        g = self.graph
        if ref in g.output_refs:
            r = g.output_refs[ref]
            return self.norm(r.node, r.port)
        node, _, port = ref.partition(":")
        if node in g.inputs and node not in self.nodes and not port:
            return (node, None)
        if node not in self.nodes and node in g.aliases:    # a block instance: its first (or named) output
            r = g.ref_of(ref)
            return self.norm(r.node, r.port)
        if node not in self.nodes:
            raise UserError(f"unknown node or output '{ref}'",
                            hint=did_you_mean(ref, list(g.output_refs) + list(self.nodes) + list(g.inputs)))
        if port and port not in self.nodes[node].outputs:
            raise UserError(f"node '{node}' has no port '{port}' (ports: {', '.join(self.nodes[node].outputs)})")
        return self.norm(node, port or None)

    def norm(self, node: str, port: str | None) -> Key:
        n = self.nodes.get(node)
        if n is None or port is None or port == next(iter(n.outputs)):
            return (node, None)
        return (node, port)

    def type_of(self, key: Key) -> TensorType:
        node, port = key
        if node in self.graph.inputs and node not in self.nodes:
            return self.graph.inputs[node]
        n = self.nodes[node]
        return n.outputs[port] if port else n.out

    def upstream(self, key: Key, stop: frozenset = frozenset()) -> set[str]:
        """Nodes and inputs `key` is computed from, not looking behind the keys in `stop`."""
        seen: set[str] = set()
        stack = [key]
        while stack:
            k = stack.pop()
            if k in stop or k[0] in seen:
                continue
            seen.add(k[0])
            if k[0] in self.nodes:
                stack.extend(self.norm(r.node, r.port) for r in self.nodes[k[0]].inputs if r is not None)
        return seen

    # -- running ------------------------------------------------------------------------------
    def run(self, wanted: list[Key], inputs: Mapping[str, Any], fixed: Mapping[Key, np.ndarray] | None = None
            ) -> dict[Key, np.ndarray]:
        fixed = dict(fixed or {})
        stop = frozenset(fixed)
        need: set[str] = set()
        for k in wanted:
            if k not in fixed:
                need |= self.upstream(k, stop)
        nodes = [self.nodes[n] for n in sorted((n for n in need if n in self.nodes), key=self.order.__getitem__)]
        missing = [n for n in need if n not in self.nodes and n not in inputs and (n, None) not in fixed]
        if missing:
            t = self.graph.inputs[missing[0]]
            raise UserError(f"missing input '{missing[0]}' (shape {t}, {t.dtype})")
        vals: dict[Key, np.ndarray] = {}
        symbols: dict[str, int] = {}
        for name, arr in inputs.items():
            if name in need and name in self.graph.inputs:
                t = self.graph.inputs[name]
                vals[(name, None)] = checked_input(name, arr, t)
                self._bind(symbols, t, vals[(name, None)].shape)
        for k, arr in fixed.items():
            vals[k] = arr
            self._bind(symbols, self.type_of(k), np.shape(arr))
        used = self._used_ports(nodes, wanted)
        m = self.model
        params = m.named_tensors()
        for node in nodes:
            args = [None if r is None else vals[self.norm(r.node, r.port)] for r in node.inputs]
            args += [params[node.param_name(p)].data for p in node.params]
            ports = list(node.outputs)
            wanted_ports = tuple(p in used.get(node.name, ()) or (i == 0 and None in used.get(node.name, ()))
                                 for i, p in enumerate(ports))
            ctx = Ctx(node.attrs, m.training, m.rng, (), wanted_ports, symbols, node)
            try:
                out, _ = KERNELS[node.op](ctx, *args)
            except (ValueError, IndexError) as e:
                raise UserError(f"node '{node.name}' ({node.op}): {e}") from None
            outs = out if len(ports) > 1 else (out,)
            for i, (p, o) in enumerate(zip(ports, outs)):
                k = (node.name, None if i == 0 else p)
                if k not in fixed:
                    vals[k] = o
        return {k: vals[k] for k in wanted}

    @staticmethod
    def _bind(symbols: dict[str, int], t: TensorType, shape: tuple) -> None:
        if len(shape) != t.rank:
            return
        for d, s in zip(t.shape, shape):
            if isinstance(d, str):
                symbols.setdefault(d, int(s))

    def _used_ports(self, nodes: list[Node], wanted: list[Key]) -> dict[str, set]:
        used: dict[str, set] = {}
        for n in nodes:
            for r in n.inputs:
                if r is not None:
                    node, port = self.norm(r.node, r.port)
                    used.setdefault(node, set()).add(port)
        for node, port in wanted:
            used.setdefault(node, set()).add(port)
        return used


def checked_input(name: str, arr: Any, t: TensorType) -> np.ndarray:
    """An input array in the spec's dtype, refused with a clear message when its rank, a fixed size or its
    kind (integers for int64 inputs) does not fit."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fiub":
        raise UserError(f"input '{name}' must be numeric, got dtype {a.dtype}")
    if t.dtype == "int64" and a.dtype.kind == "f" and not np.all(np.mod(a, 1) == 0):
        raise UserError(f"input '{name}' must hold integers (int64), got dtype {a.dtype}")
    if a.ndim != t.rank or any(isinstance(d, int) and d != s for d, s in zip(t.shape, a.shape)):
        raise UserError(f"input '{name}' must have shape {t}, got {list(a.shape)}")
    return a.astype(NP_DTYPES[t.dtype], copy=False)


def batch_axis(t: TensorType, symbol: str) -> int | None:
    """The axis of `t` that holds the batch symbol (an LSTM's h is [layers, N, H]: axis 1)."""
    for i, d in enumerate(t.shape):
        if d == symbol:
            return i
    return None
