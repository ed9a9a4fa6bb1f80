"""The dataflow IR: tensor types, parameters, nodes and the Graph over a networkx DiGraph.

networkx is imported when `Graph.nx` is first read, not with the IR, so `specc check` does not pay
for it (about 0.08 s) when nothing asks for the DiGraph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Union

from .errors import Loc

if TYPE_CHECKING:
    import networkx

Dim = Union[int, str]          # a concrete size or a symbol such as "N"


@dataclass(frozen=True)
class TensorType:
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return "×".join(str(d) for d in self.shape) if self.shape else "scalar"

    def numel(self, symbols: int = 1) -> int:
        """Element count, each symbolic dimension counted as `symbols`."""
        return math.prod(d if isinstance(d, int) else symbols for d in self.shape)


@dataclass(frozen=True)
class Init:
    """How to initialise a parameter. `kind` is one of compiler.init's initialisers."""

    kind: str                               # kaiming_uniform, uniform, normal, zeros, ones, constant, ...
    args: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def of(kind: str, **args: Any) -> "Init":
        return Init(kind, tuple(sorted(args.items())))

    @property
    def kw(self) -> dict[str, Any]:
        return dict(self.args)


@dataclass(frozen=True)
class ParamSpec:
    """A parameter or buffer of an op. `name` is local (`weight`); '' means the node's own name."""

    name: str
    shape: tuple[int, ...]
    init: Init
    buffer: bool = False                    # running statistics, `buffer` ops: in state_dict, not trained
    dtype: str = "float32"


@dataclass(frozen=True)
class Ref:
    """A reference to one output port of a node or graph input."""

    node: str
    port: str | None = None                 # None: the default (first) port

    def __str__(self) -> str:
        return self.node if self.port is None else f"{self.node}:{self.port}"


@dataclass
class Node:
    name: str                               # hierarchical, PyTorch-style: layer1.0.conv1
    op: str
    attrs: Any                              # the op's validated pydantic attribute model
    inputs: list[Ref | None]                # None for an omitted optional input
    outputs: dict[str, TensorType] = field(default_factory=dict)   # port -> type, default port first
    params: list[ParamSpec] = field(default_factory=list)
    param_prefix: str = ""                  # state_dict prefix; differs from name for a `call` (shared weights)
    init: Any = None                        # the node's `init:` override, if any
    macs: int = 0                           # multiply-adds per sample
    loc: Loc | None = None
    use_sites: list[Loc] = field(default_factory=list)   # enclosing block uses, innermost last
    block: str | None = None                # hierarchical name of the enclosing block instance

    @property
    def out(self) -> TensorType:
        return next(iter(self.outputs.values()))

    def param_name(self, p: ParamSpec) -> str:
        prefix = self.param_prefix or self.name
        return f"{prefix}.{p.name}" if p.name else prefix


@dataclass
class BlockUse:
    """One block instance (`use:` or a `call` of an instance), for code generators (specc export-torch).

    The IR itself is flat; this records which definition built the nodes under `name.`."""

    definition: str                         # "<module path>:<block name>": the same for every use of one block
    block: str                              # the block's own name, as defined (basic_block)
    params: dict[str, Any]                  # the block params this use was built with
    inputs: list[Ref]                       # the block's inputs, in its declared order
    input_names: list[str]                  # their names inside the block
    outputs: dict[str, Ref]                 # the block's output ports, default first
    param_prefix: str = ""                  # state_dict prefix (differs from the name for a call)


@dataclass
class Graph:
    """A typed, topologically ordered dataflow graph.

    `inputs` and `outputs` map public names to TensorTypes (the contract of interfaces.md);
    `output_refs` maps each public output name to the node port that computes it. `nx` is the
    networkx DiGraph over the nodes, built (and networkx imported) on first access.
    """

    name: str
    inputs: dict[str, TensorType]
    output_refs: dict[str, Ref]             # public name -> reference, in the spec's order
    nodes: list[Node]
    train: Any = None                       # the validated `train` section (compiler.spec.Train) or None
    generate: Any = None                    # the checked `generate` section (compiler.spec.Generate) or None
    spec_hash: str = ""
    source: str = ""
    # names that are neither nodes nor inputs (block instances, `when`-disabled aliases): port -> Ref,
    # the first port being what the bare name means, as in the spec language
    aliases: dict[str, dict[str, Ref]] = field(default_factory=dict)
    instances: dict[str, BlockUse] = field(default_factory=dict)   # block instance name -> its use

    def __post_init__(self) -> None:
        self._by_name = {n.name: n for n in self.nodes}

    @cached_property
    def nx(self) -> "networkx.DiGraph":
        """The underlying networkx.DiGraph: a vertex per node (attribute `node`: the IR Node), an edge
        from producer to consumer (attribute `port`: the producer's port, None for the default one).
        Graph inputs are not vertices."""
        import networkx
        d = networkx.DiGraph()
        for n in self.nodes:
            d.add_node(n.name, node=n)
            for r in n.inputs:
                if r is not None and r.node in self._by_name:
                    d.add_edge(r.node, n.name, port=r.port)
        return d

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def has_node(self, name: str) -> bool:
        return name in self._by_name

    def ref_of(self, name: str, error: type[Exception] | None = None, code: int = 1) -> Ref:
        """What a name given from outside the spec means (`--output`, `train.predict`, Model outputs): a public
        output, a graph input, a node (`node`, `node:port`) or a block instance (`enc` is its first output,
        `enc:mu` a named one). Anything else raises `error` (default UserError) with a did-you-mean hint."""
        from .errors import UserError, did_you_mean
        error = error or UserError
        if name in self.output_refs:
            return self.output_refs[name]
        node, _, port = name.partition(":")
        if node in self.inputs and node not in self._by_name and not port:
            return Ref(node)
        if node in self._by_name:
            n = self._by_name[node]
            if port and port not in n.outputs:
                raise error(f"node '{node}' has no port '{port}' (ports: {', '.join(n.outputs)})", code=code)
            return Ref(node, port if port and port != next(iter(n.outputs)) else None)
        if node in self.aliases:
            ports = self.aliases[node]
            if port and port not in ports:
                raise error(f"'{node}' has no output port '{port}' (ports: {', '.join(ports)})", code=code)
            return ports[port] if port else next(iter(ports.values()))
        cands = list(self.output_refs) + list(self.inputs) + list(self.aliases) + list(self._by_name)
        raise error(f"unknown output '{name}'", code=code, hint=did_you_mean(name, cands)
                    or f"the spec's outputs are: {', '.join(self.output_refs)}")

    def type_of(self, ref: Ref) -> TensorType:
        if ref.node in self.inputs and ref.node not in self._by_name:
            return self.inputs[ref.node]
        node = self._by_name[ref.node]
        return node.outputs[ref.port] if ref.port else node.out

    @property
    def outputs(self) -> dict[str, TensorType]:
        """{public output name: TensorType}, in the spec's order (a fresh dict: read-only)."""
        return {k: self.type_of(r) for k, r in self.output_refs.items()}

    def params(self) -> dict[str, tuple[ParamSpec, Node]]:
        """Every distinct parameter/buffer by state_dict name (shared weights appear once)."""
        seen: dict[str, tuple[ParamSpec, Node]] = {}
        for n in self.nodes:
            for p in n.params:
                seen.setdefault(n.param_name(p), (p, n))
        return seen

    def summary(self, batch: int = 1, frozen: list[str] | None = None) -> str:
        from .summary import render_table
        return render_table(self, batch=batch, frozen=frozen)
