"""The converter table (ONNX op_type -> function) and the Context converters write spec layers into.

    @converter("Relu")
    def relu(cx: Context, nd: OnnxNode) -> None:
        cx.emit("relu", [nd.inputs[0]], outputs=nd.outputs[:1])

A converter reads its node's inputs as run-time values (`cx.src`) or constants (`cx.const`), emits
spec layers (`cx.emit`, with parameters under their specc names) and binds the node's outputs to layer
ports. It may take over the nodes that follow when they complete a pattern (`cx.take`): MatMul + Add
becomes one `linear`. Anything it cannot express raises `cx.refuse(nd, why)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import UserError

Converter = Callable[["Context", "OnnxNode"], None]
CONVERTERS: dict[str, Converter] = {}
MAX_INLINE = 64                        # constants up to this size are written into the spec as `constant`
MAX_BUFFER = 65536                     # integer / bool constants (written into the spec as `buffer`) up to this size


def converter(*op_types: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for t in op_types:
            if t in CONVERTERS:
                raise RuntimeError(f"converter for {t!r} registered twice")
            CONVERTERS[t] = fn
        return fn
    return register


def arange_of(arr: np.ndarray) -> dict[str, int] | None:
    """{end, start, step} of `specc`'s arange when the 1-d integer `arr` counts evenly (3 values or more)."""
    if arr.ndim != 1 or arr.size < 3 or arr.dtype.kind not in "iu":
        return None
    start, step = int(arr[0]), int(arr[1]) - int(arr[0])
    if step == 0 or not np.array_equal(arr, start + step * np.arange(arr.size, dtype=np.int64)):
        return None
    out = {"end": start + step * arr.size}
    if start:
        out["start"] = start
    if step != 1:
        out["step"] = step
    return out


class OnnxImportError(UserError):
    """The ONNX model cannot become a spec (an unknown op, a pattern specc cannot express)."""


@dataclass
class OnnxNode:
    op_type: str
    name: str
    inputs: list[str]                  # "" for an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any]
    index: int = 0

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def describe(self) -> str:
        return f"node '{self.name or self.outputs[0]}' ({self.op_type})"


@dataclass(eq=False)
class Layer:
    """One spec node: inputs are (Layer or graph-input name, port index) pairs."""
    op: str
    attrs: dict[str, Any]
    inputs: list[tuple[Any, int]]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    hint: "str | list[str]" = ""     # name candidates, best first (ONNX initialiser / node names)
    ports: tuple[str, ...] = ("out",)
    name: str = ""                     # set by the writer
    auto: bool = False                 # the writer leaves it unnamed (specc names it <op>_<k>)


Src = tuple[Any, int]                  # (Layer | input name, port index)


class Context:
    def __init__(self, source: Any):
        self.g = source                                    # graph.Source
        self.layers: list[Layer] = []
        self.bound: dict[str, Src] = {n: (n, 0) for n in source.inputs}
        self.taken: set[int] = set()
        self.node: OnnxNode | None = None                  # the node being converted (named by refusals)

    # -- reading values
    def is_const(self, name: str) -> bool:
        return name in self.g.consts

    def const(self, name: str) -> np.ndarray | None:
        return self.g.consts.get(name)

    def shape(self, name: str) -> tuple | None:
        if name in self.g.consts:
            return tuple(self.g.consts[name].shape)
        return self.g.shapes.get(name)

    def src(self, name: str, nd: OnnxNode | None = None) -> Src:
        """The layer port holding run-time value `name`; a constant becomes a layer (`_constant_layer`)."""
        if name in self.bound:
            return self.bound[name]
        nd = nd or self.node
        if name in self.g.consts:
            self.bound[name] = (self._constant_layer(name, nd), 0)
            return self.bound[name]
        if name in self.g.symbolic:
            raise self.refuse(nd, f"it computes with the run-time shape value '{name}'")
        raise self.refuse(nd, f"its input '{name}' comes from a node that was not converted")

    def _constant_layer(self, name: str, nd: OnnxNode | None) -> "Layer":
        """A constant read as data: a model tensor (or one too big to write) becomes a `param`, a small float
        one a `constant`; integer and bool tensors become `arange` when they count evenly, else a `buffer`
        (kept in the state_dict under its name when it is a named initialiser, as a model's buffer is)."""
        arr = self.g.consts[name]
        learned = self.g.learned_name(name)
        if arr.dtype.kind == "f":
            if arr.size <= MAX_INLINE and not learned:
                return self.emit("constant", [], {"value": arr.astype(np.float32).tolist()}, hint=name)
            return self.emit("param", [], {"shape": list(arr.shape)}, {"": arr.astype(np.float32)},
                             hint=[learned or name, name])
        if arr.dtype.kind not in "biu":
            raise self.refuse(nd, f"it reads the constant '{name}' of type {arr.dtype}, which specc has no dtype for")
        dtype = "bool" if arr.dtype.kind == "b" else "int64"
        named = self.g.named(name)
        if dtype == "int64" and not named and (rng := arange_of(arr)) is not None:
            return self.emit("arange", [], rng, hint=name)
        if arr.size > MAX_BUFFER:
            raise self.refuse(nd, f"it reads the {dtype} constant '{name}' of {arr.size:,} values as data; specc "
                                  f"writes such a tensor into the spec as a buffer, which takes at most {MAX_BUFFER:,}",
                              hint="a mask or index table this large is better computed in the spec (comparisons, "
                                   "arange) than stored")
        attrs: dict[str, Any] = {"value": arr.reshape(-1).tolist() if arr.ndim > 1 else arr.tolist(),
                                 "dtype": dtype}
        if arr.ndim > 1:
            attrs["shape"] = list(arr.shape)
        value = arr.astype(np.int64 if dtype == "int64" else np.bool_)
        if not named:
            attrs["persistent"] = False
        return self.emit("buffer", [], attrs, {"": value} if named else {}, hint=name)

    # -- writing layers
    def emit(self, op: str, inputs: list, attrs: dict | None = None, params: dict | None = None,
             hint: "str | list[str]" = "", outputs: list[str] | None = None, ports: tuple[str, ...] = ("out",)) -> Layer:
        ins = [x if isinstance(x, tuple) else self.src(x) for x in inputs]
        layer = Layer(op, dict(attrs or {}), ins, dict(params or {}), hint, ports)
        self.layers.append(layer)
        for i, o in enumerate(outputs or []):
            if o:
                self.bound[o] = (layer, i)
        return layer

    def bind(self, name: str, src: Src) -> None:
        self.bound[name] = src

    # -- patterns over the nodes that follow
    def consumers(self, name: str) -> list[OnnxNode]:
        return self.g.consumers.get(name, [])

    def only_consumer(self, name: str, op_type: str | tuple[str, ...]) -> OnnxNode | None:
        """The single node reading `name` when it has that op_type (and `name` is no graph output)."""
        cs = self.consumers(name)
        types = (op_type,) if isinstance(op_type, str) else op_type
        if len(cs) == 1 and cs[0].op_type in types and name not in self.g.outputs and cs[0].index not in self.taken:
            return cs[0]
        return None

    def take(self, nd: OnnxNode) -> None:
        """Mark a following node as converted by the current pattern."""
        self.taken.add(nd.index)

    def refuse(self, nd: OnnxNode | None, why: str, hint: str | None = None) -> OnnxImportError:
        where = nd.describe() if nd is not None else "the model"
        return OnnxImportError(f"cannot import {where}: {why}", hint=hint)
