"""Expansion: from a loaded, validated spec to typed IR nodes.

One pass over the layers, in order. Each node is normalised (shorthands), its expressions are
evaluated, blocks are instantiated, `repeat` and `when` applied, and its shape rule run at once,
so later expressions can read `shape(ref)` of anything built before. Errors are collected; a node
that depends on a failed one is skipped quietly instead of reporting the same problem again.

| module | holds |
|---|---|
| `compile.py` | `compile_tree`: the whole spec, in order; `spec_hash` |
| `diagnose.py` | `Compiler` (collected diagnostics, expression budget); pydantic errors as spec messages |
| `modules.py` | spec files as `Module`s: loading, `imports:` (std:, relative, cycles) |
| `shorthand.py` | a layer as written to its canonical fields (`normalise`), the one "unknown op" error |
| `locs.py` | `Locs`: where a layer's fields (values and keys) are written |
| `scope.py` | `Scope`: the names of the top level or of one block instance |
| `layers.py`, `op_nodes.py`, `blocks.py`, `expander.py` | the `Expander`: layers, names, `repeat`, `when`; op nodes and their shape rules; block uses and calls |
| `node_init.py` | a layer's `init:` parsed and checked |
| `boundaries.py` | params overrides, `inputs:`, `outputs:`, the `train:` section's references |
"""
from .compile import compile_tree, spec_hash
from .diagnose import Compiler, type_text
from .expander import Expander
from .modules import STD_LIB, Module
from .node_init import INIT_ARGS, USER_INITS, init_args_problem
from .scope import NAME_RE, Scope

__all__ = ["compile_tree", "spec_hash", "Compiler", "Expander", "Scope", "Module", "STD_LIB", "NAME_RE",
           "type_text", "init_args_problem", "INIT_ARGS", "USER_INITS"]
