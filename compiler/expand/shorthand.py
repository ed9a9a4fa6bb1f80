"""A layer as written (`relu`, `{conv2d: 16}`, `{linear: {out_features: 10}}`, `{op: ...}`) to one canonical
mapping of fields, with the location of each."""
from __future__ import annotations

from typing import Any

from .. import ops as ops_pkg
from ..errors import Loc, did_you_mean
from ..load import SMap
from ..spec import RESERVED
from ..values import Poisoned
from .diagnose import Compiler
from .locs import Locs
from .scope import Scope

OPS = ops_pkg.OPS
STARTERS = ("op", "use", "call")            # the keys that say what a layer is


def unknown_op(c: Compiler, op: str, loc: Loc, scope: Scope) -> Poisoned:
    """Report `op` as unknown (naming the block or the op it may be) and return the exception to raise."""
    blocks = scope.module.block_names()
    hint = (f"'{op}' is a block: write use: {op}" if op in blocks else
            did_you_mean(op, list(OPS)) or "see `specc schema` or docs/ops.md for the catalogue")
    c.error(f"unknown op '{op}'", loc, hint, use_sites=scope.use_sites)
    return Poisoned()


def normalise(c: Compiler, raw: Any, loc: Loc, scope: Scope) -> tuple[dict, Locs]:
    """Shorthands to the canonical mapping; returns (fields, where each field is)."""
    if isinstance(raw, str):
        return {"op": raw}, Locs(loc, {"op": loc})
    if not isinstance(raw, SMap):
        c.error(f"a layer must be an op name or a mapping, found {raw!r}", loc, use_sites=scope.use_sites)
        raise Poisoned
    if len(raw) == 0:
        c.error("empty layer", loc, use_sites=scope.use_sites)
        raise Poisoned
    plain = [k for k in raw if k not in RESERVED]
    op_keys = [k for k in plain if k in OPS]
    if len(plain) > 1 and len(op_keys) == 1 and not any(k in raw for k in STARTERS):
        plain = op_keys                   # {conv2d: 16, kernel_size: 3}: the op key, plus attributes
    if len(plain) == 1 and not any(k in raw for k in STARTERS):
        return _op_shorthand(c, raw, plain[0], loc, scope)
    locs = Locs(loc)
    for k in raw:
        locs.add(k, raw.loc_of(k), raw.key_locs[k])
    return dict(raw), locs


def _op_shorthand(c: Compiler, raw: SMap, key: str, loc: Loc, scope: Scope) -> tuple[dict, Locs]:
    """`{op_name: primary}` or `{op_name: {attributes}}`, with any reserved keys beside it."""
    if any(k in raw for k in RESERVED) and key not in OPS and key not in scope.module.block_names():
        c.error("a layer needs one of op, use or call", loc,
                f"write {{op: <operator>, ...}}; '{key}' looks like an attribute", use_sites=scope.use_sites)
        raise Poisoned
    if key not in OPS:
        raise unknown_op(c, key, raw.key_locs[key], scope)
    inner = raw[key]
    fields, locs = {"op": key}, Locs(loc, {"op": raw.key_locs[key]})
    if isinstance(inner, SMap):
        fields.update(inner)
        for k in inner:
            locs.add(k, inner.loc_of(k), inner.key_locs[k])
    elif inner is not None:
        primary = OPS[key].primary
        if primary is None:
            c.error(f"op '{key}' has no primary attribute, so '{{{key}: {inner}}}' is ambiguous",
                    raw.loc_of(key), f"write {{op: {key}, <attribute>: {inner}}}", use_sites=scope.use_sites)
            raise Poisoned
        fields[primary] = inner
        locs.add(primary, raw.loc_of(key))
    for k in raw:
        if k != key:
            fields[k] = raw[k]
            locs.add(k, raw.loc_of(k), raw.key_locs[k])
    return fields, locs
