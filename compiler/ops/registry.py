"""The op registry: one OpDef per catalogue op, declared next to its shape rule.

An op module declares an attribute model and decorates its shape rule:

    class Linear(Attrs):
        out_features: int
        bias: bool = True
        in_features: int | None = None

    @op("linear", Linear, inputs=["x"], primary="out_features", family="dense")
    def linear(a: Linear, x: TensorType) -> Inferred:
        ...

The rule gets the validated attributes and one TensorType per declared input (None for an
omitted optional one) and returns the output types, the parameters and the multiply-adds
per sample. It raises ShapeError for anything wrong; the compiler adds file:line:col.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict, field_validator

from ..ir import ParamSpec, TensorType


INT_LIMIT = 2**63                    # attribute integers must fit in int64, as NumPy and ONNX hold them


def _too_big(v: object) -> bool:
    """An int beyond int64 anywhere in v (nested lists walked without recursion: they may be deep, or even
    contain themselves through a YAML alias)."""
    stack, seen = [v], set()
    while stack:
        u = stack.pop()
        if isinstance(u, (list, tuple)):
            if id(u) not in seen:
                seen.add(id(u))
                stack.extend(u)
        elif isinstance(u, int) and not isinstance(u, bool) and not -INT_LIMIT <= u < INT_LIMIT:
            return True
    return False


class Attrs(BaseModel):
    """Base of every op's attribute model: unknown attributes are refused, and so are integers beyond int64
    (they overflowed in shape rules, kernels and lowerings)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @field_validator("*", mode="before")
    @classmethod
    def _fits_int64(cls, v: object) -> object:
        if _too_big(v):
            raise ValueError("an integer beyond the 64-bit range (-2**63 .. 2**63 - 1)")
        return v


class NoAttrs(Attrs):
    pass


@dataclass
class Inferred:
    outputs: list[TensorType]               # one per port, in the op's port order
    params: list[ParamSpec] = field(default_factory=list)
    macs: int = 0                           # per sample (the batch dimension excluded)
    ports: list[str] | None = None          # only for ops whose ports depend on attributes (split)


@dataclass
class OpDef:
    name: str
    family: str
    attrs: type[Attrs]
    rule: Callable[..., Inferred | TensorType]
    inputs: tuple[str, ...]                 # input names; names in `optional` may be omitted
    optional: tuple[str, ...] = ()
    variadic: bool = False                  # concat, add: any number of inputs >= len(inputs)
    ports: tuple[str, ...] = ("out",)       # output ports; the first is the default
    primary: str | None = None              # the attribute a shorthand scalar fills
    loss: bool = False                      # pruned from inference/export graphs
    training_only: bool = False             # pruned from inference graphs too (besides losses)
    doc: str = ""

    def infer(self, attrs: Attrs, ins: list[TensorType | None]) -> Inferred:
        result = self.rule(attrs, *ins)
        return Inferred([result]) if isinstance(result, TensorType) else result


OPS: dict[str, OpDef] = {}


def op(name: str, attrs: type[Attrs] = NoAttrs, *, inputs: list[str] | tuple[str, ...] = ("x",),
       optional: tuple[str, ...] | list[str] = (), variadic: bool = False,
       ports: tuple[str, ...] | list[str] = ("out",), primary: str | None = None, family: str = "",
       loss: bool = False, training_only: bool = False) -> Callable:
    """Register the decorated shape rule as op `name`."""

    def register(rule: Callable) -> Callable:
        if name in OPS:
            raise RuntimeError(f"op {name!r} registered twice")
        OPS[name] = OpDef(name, family or rule.__module__.rsplit(".", 1)[-1], attrs, rule,
                          tuple(inputs), tuple(optional), variadic, tuple(ports), primary,
                          loss, training_only, (rule.__doc__ or "").strip())
        return rule

    return register
