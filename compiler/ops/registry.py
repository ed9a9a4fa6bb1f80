"""The op registry: one OpDef per catalogue op, the single record everything else derives from.

An op module (compiler/ops/<family>.py) declares an attribute model and decorates its shape rule:

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

The same record holds, next to the rule (docs/architecture.md, "Adding an op"):
- its ONNX lowering: `onnx="Relu"` (one native ONNX node on the first input), or a function registered
  with `@lowering("linear")` in the same module, which writes nodes into the Builder of compiler/onnx;
- its PyTorch reference: `torch="F.relu"` (called on the inputs, then the parameters, with the attributes as
  keyword arguments renamed by `torch_kw`), or a function registered with `@reference("linear")`. torch is
  never imported by a record: `torch` and `F` (compiler/ops/lazy.py) are lazy names that import it on first use;
- its test cases: `cases=[Case(...)]`, which drive the generic shape, gradient, ONNX and PyTorch tests;
- `torch_module="nn.ReLU"`: the module form export-torch writes for it inside an nn.Sequential.
The NumPy kernel lives in runtime/kernels/<family>.py, registered by the op's name (the compiler never
imports the runtime).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, field_validator

from ..ir import ParamSpec, TensorType
from .cases import Case
from .lazy import torch_function, torch_kwargs


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
    lowering: Callable[..., Any] | None = None      # (Builder, Node, inputs, params) -> value name(s)
    reference: Callable[..., Any] | None = None     # (C, *tensors) -> torch tensor(s): tools/torch_ref.py's C
    torch: str | None = None                        # the torch function of a declarative reference ("F.relu")
    torch_kw: dict[str, str | None] = field(default_factory=dict)   # attribute -> torch keyword (None: drop)
    torch_module: str | None = None                 # export-torch's module form ("nn.ReLU")
    onnx: str | None = None                         # the ONNX op type of a declarative lowering ("Relu")
    cases: tuple[Case, ...] = ()
    no_grad: str = ""                               # why no gradient check applies (empty: one does)

    def infer(self, attrs: Attrs, ins: list[TensorType | None]) -> Inferred:
        result = self.rule(attrs, *ins)
        return Inferred([result]) if isinstance(result, TensorType) else result


OPS: dict[str, OpDef] = {}


def op(name: str, attrs: type[Attrs] = NoAttrs, *, inputs: list[str] | tuple[str, ...] = ("x",),
       optional: tuple[str, ...] | list[str] = (), variadic: bool = False,
       ports: tuple[str, ...] | list[str] = ("out",), primary: str | None = None, family: str = "",
       loss: bool = False, training_only: bool = False, onnx: str | None = None, torch: str | None = None,
       torch_kw: dict[str, str | None] | None = None, torch_module: str | None = None,
       cases: list[Case] | tuple[Case, ...] = (), no_grad: str = "") -> Callable:
    """Register the decorated shape rule as op `name`, with its declarative parts (see the module doc)."""

    def register(rule: Callable) -> Callable:
        if name in OPS:
            raise RuntimeError(f"op {name!r} registered twice")
        OPS[name] = OpDef(name, family or rule.__module__.rsplit(".", 1)[-1], attrs, rule,
                          tuple(inputs), tuple(optional), variadic, tuple(ports), primary,
                          loss, training_only, (rule.__doc__ or "").strip(),
                          lowering=_native(onnx) if onnx else None,
                          reference=_declared_reference(torch, torch_kw or {}) if torch else None,
                          torch=torch, torch_kw=dict(torch_kw or {}), torch_module=torch_module, onnx=onnx,
                          cases=tuple(cases), no_grad=no_grad)
        return rule

    return register


def _record(name: str, what: str) -> OpDef:
    if name not in OPS:
        raise RuntimeError(f"{what} for {name!r}, which no @op declared (declare the op first, same module)")
    return OPS[name]


def _attach(field: str, what: str, names: tuple[str, ...]) -> Callable:
    """A decorator setting the records' `field` (their lowering or reference) to the decorated function."""

    def register(fn: Callable) -> Callable:
        for name in names:
            d = _record(name, what)
            if getattr(d, field) is not None:
                raise RuntimeError(f"{field} {name!r} registered twice")
            setattr(d, field, fn)
        return fn

    return register


def lowering(*names: str) -> Callable:
    """Register the decorated function as the ONNX lowering of the ops `names` (declared above it)."""
    return _attach("lowering", "an ONNX lowering", names)


def reference(*names: str) -> Callable:
    """Register the decorated function as the PyTorch reference of the ops `names`: fn(c, *tensors) with c
    tools/torch_ref.py's C (attributes, training, symbols, wanted ports, input types, float dtype)."""
    return _attach("reference", "a PyTorch reference", names)


# ONNX's TensorProto data types, as plain numbers so that lowerings never import onnx.
DTYPES = {"float32": 1, "int64": 7, "bool": 9, "float64": 11}


def _native(op_type: str) -> Callable:
    def lower(b: Any, node: Any, x: list, p: list) -> str:
        return b.op(op_type, [x[0]])
    lower.__name__ = f"onnx_{op_type}"
    return lower


def _declared_reference(dotted: str, rename: dict[str, str | None]) -> Callable:
    def ref(c: Any, *args: Any) -> Any:
        return torch_function(dotted)(*args, **torch_kwargs(c.a, rename))
    ref.__name__ = f"torch_{dotted}"
    return ref
