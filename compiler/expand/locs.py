"""Where each part of a layer was written: the node itself, each field's value and each field's key."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Loc


@dataclass
class Locs:
    """The source locations of one layer, so an error points at the value or key it is about."""
    node: Loc                                                 # the layer's list item
    values: dict[str, Loc] = field(default_factory=dict)      # field -> where its value is
    keys: dict[str, Loc] = field(default_factory=dict)        # field -> where its key is

    def at(self, name: str) -> Loc:
        """Where field `name`'s value is written (the layer's own location when it has no such field)."""
        return self.values.get(name, self.node)

    def key(self, name: str) -> Loc:
        """Where field `name`'s key is written (for "unknown attribute"), else its value, else the layer."""
        return self.keys.get(name) or self.values.get(name, self.node)

    def add(self, name: str, value: Loc, key: Loc | None = None) -> None:
        self.values[name] = value
        if key is not None:
            self.keys[name] = key
