"""What a reference can mean during expansion: a node's ports, an input, a block instance."""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Ref, TensorType


@dataclass
class Value:
    """The outputs a name stands for: port -> (Ref, TensorType); the first port is the default."""

    ports: dict[str, tuple[Ref, TensorType]] = field(default_factory=dict)
    poisoned: bool = False            # built from an earlier error: stay quiet, don't cascade
    kind: str = "node"                # node | input | instance | call
    owner: str = ""                   # the full name of the node/instance it came from

    @property
    def default(self) -> tuple[Ref, TensorType]:
        return next(iter(self.ports.values()))

    def port(self, name: str | None) -> tuple[Ref, TensorType] | None:
        if name is None:
            return self.default
        return self.ports.get(name)


POISON = Value(poisoned=True)


class Poisoned(Exception):
    """A node depends on one that already failed; its error has been reported."""


def public_aliases(values: dict[str, Value], nodes: set[str], inputs: dict) -> dict[str, dict[str, Ref]]:
    """The names a graph keeps besides its nodes and inputs (block instances, disabled `when` layers), so a
    block instance can be named from outside the spec as inside it (Graph.ref_of)."""
    return {name: {p: r for p, (r, _) in v.ports.items()} for name, v in values.items()
            if not v.poisoned and v.ports and name not in nodes and name not in inputs}


class Abort(Exception):
    """A limit on the whole expansion was reached (e.g. the node count); its error has been reported
    and nothing more is expanded."""
