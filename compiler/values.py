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


class Abort(Exception):
    """A limit on the whole expansion was reached (e.g. the node count); its error has been reported
    and nothing more is expanded."""
