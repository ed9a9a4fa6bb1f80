"""A scope of names: the top level of a spec, or the inside of one block instance."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import Loc
from ..values import Value
from .modules import Module

NAME_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|[0-9]+)$")


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
