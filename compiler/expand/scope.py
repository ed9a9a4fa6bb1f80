"""A scope of names: the top level of a spec, or the inside of one block instance."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import Loc
from ..values import Value
from .modules import Module

NAME_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,199}|[0-9]{1,200})\Z")   # an input's name (limits.NAME_CHARS)
# a node's name: a PyTorch module name (letters, digits, _ and -, not first) -- no `.` (hierarchy), `:` (ports),
# spaces or glob characters
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*\Z")
NAME_HINT = ("a name is made of ASCII letters, digits, _ and - (not first), as PyTorch module names are: conv1, 0, "
             "block1-0; dots are added by blocks and repeat, colons name ports")


@dataclass
class Scope:
    prefix: str                               # hierarchical name prefix: "" or "layer1.0."
    param_prefix: str                         # state_dict prefix (differs inside a `call`)
    env: dict[str, Any]                       # names visible to expressions
    module: Module
    names: dict[str, Value] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    first_input: Value | None = None
    last: Value | None = None
    use_sites: list[Loc] = field(default_factory=list)
    block_stack: tuple[str, ...] = ()         # recursion guard
    declared: dict[str, Loc] = field(default_factory=dict)   # names given in this scope's layers
    built: list[tuple[str, Value, bool]] = field(default_factory=list)   # (name, value, is a loss) in order
    disabled: set[str] = field(default_factory=set)          # names held by layers switched off by `when`


@dataclass
class Names:
    """The names one layer takes: `group` (its `name:`, which means the last copy; None when each copy is
    named by its own `name:`), one name per copy, and those it owns (a layer switched off by `when` leaves an
    earlier holder's name alone)."""
    group: str | None
    copies: list[str]
    owned: set[str]
