"""The `train:` section: `${...}` expressions evaluated with the spec's params, `--set train.KEY=VALUE`
overrides (a dotted path into the section), then validation by the Train model.

    specc train spec.yaml --set train.optimizer.lr=3e-4 --set train.batch_size=64 --set width=32

A `--set` key starting with `train.` is applied here (any key of the section, at any depth:
`train.early_stopping.patience`, `train.phases.0.steps`); every other key is a spec param. Overrides are
applied before the section's expressions are evaluated, so `--set train.epochs='${2 * base}'` works too.
A bad value or an unknown key is reported by the Train model with the full dotted key, as any spec error.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from .expr import ExprError, is_template, render
from .load import SList, SMap, locate
from .spec import Train

PREFIX = "train."
SHORTHAND = "type"                       # `optimizer: adam` is {type: adam}; a --set below it expands it
SHORTHANDS = ("optimizer", "schedule")


def train_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The `--set train.…` entries of a params mapping, keyed by their path inside the section."""
    return {k[len(PREFIX):]: v for k, v in params.items() if k.startswith(PREFIX)}


def is_train_key(key: str) -> bool:
    return key.startswith(PREFIX)


def build_train(c: Any, tree: SMap, env: Mapping[str, Any], params: Mapping[str, Any], path: str) -> Train | None:
    """The validated Train section of a spec (None when it has none and no --set names it); errors go to
    the compiler `c` with their locations."""
    sets = train_overrides(params)
    if "train" not in tree or tree["train"] is None:
        if sets:
            c.error(f"--set train.{next(iter(sets))}: the spec has no train section", tree.loc,
                    "add a train: section to the spec")
        return None
    ttree = tree["train"]
    if not isinstance(ttree, SMap):
        return c.validate_model(Train, ttree, path, prefix=("train",))
    ttree = _copy(ttree)                     # the loaded tree stays as written (it may be compiled again)
    for key, value in sets.items():
        _set(c, ttree, key, value)
    _render(c, ttree, env, ttree)
    first = len(c.diags)
    train = c.validate_model(Train, ttree, path, prefix=("train",))
    _blame_sets(c.diags[first:], sets)
    return train


def _blame_sets(diags: list, sets: Mapping[str, Any]) -> None:
    """A Train error about a key given with --set names the flag, not the spec line it does not come from."""
    for d in diags:
        for key, value in sets.items():
            dotted = PREFIX + key
            parent, _, leaf = dotted.rpartition(".")
            inside = d.message.startswith(dotted + ".")        # an item of a list given whole: train.log.to.0
            if d.message.startswith(dotted + ":") or inside or d.message == f"unknown key '{leaf}' in {parent}":
                shown = value if isinstance(value, str) else json.dumps(value, default=str)   # null, not None
                d.message = f"--set {dotted}={shown}: " + d.message.removeprefix(dotted + ": ")
                d.loc = None
                break


def _copy(node: Any) -> Any:
    """A deep copy of a loaded subtree that keeps every location."""
    if isinstance(node, SMap):
        out = SMap(node.loc)
        out.locs, out.key_locs = dict(node.locs), dict(node.key_locs)
        out.update({k: _copy(v) for k, v in node.items()})
        return out
    if isinstance(node, SList):
        out_l = SList(node.loc)
        out_l.locs = list(node.locs)
        out_l.extend(_copy(v) for v in node)
        return out_l
    return node


def _set(c: Any, ttree: SMap, key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = ttree
    for i, part in enumerate(parts):
        where = "train." + ".".join(parts[:i + 1])
        last = i == len(parts) - 1
        if isinstance(node, SList):
            if not part.isdigit() or int(part) >= len(node):
                c.error(f"--set {where}: '{part}' is not an index of a list of {len(node)} item(s)",
                        node.loc, f"use 0..{len(node) - 1}" if node else None)
                return
            idx = int(part)
            if last:
                node[idx] = value
                return
            node[idx] = _descend(node[idx], node.loc_of(idx))
            node = node[idx]
            continue
        if not isinstance(node, SMap) or not part:
            c.error(f"--set {where}: '{'.'.join(parts[:i])}' is not a section with keys", getattr(node, "loc", None))
            return
        if last:
            node[part] = value
            return
        if part not in node or node[part] is None:
            if parts[i + 1].isdigit():
                c.error(f"--set train.{key}: the spec has no {where} list to index", None,
                        f"write {where} in the spec")
                return
            node[part] = SMap(node.loc)
            node.locs[part] = node.loc
        if part in SHORTHANDS:
            node[part] = _descend(node[part], node.loc_of(part))
        node = node[part]
        if not isinstance(node, (SMap, SList)):
            c.error(f"--set train.{key}: {where} is a value ({node!r}), not a section with keys", None)
            return


def _descend(value: Any, loc: Any) -> Any:
    """A shorthand string (`optimizer: adam`) becomes {type: adam} so a key below it can be set."""
    if isinstance(value, str):
        out = SMap(loc)
        out[SHORTHAND] = value
        out.locs[SHORTHAND] = loc
        return out
    return value


def _render(c: Any, node: Any, env: Mapping[str, Any], root: SMap, path: tuple = ()) -> None:
    """Evaluate every `${...}` string of the section in place, with the spec's params in scope."""
    items = node.items() if isinstance(node, SMap) else enumerate(node) if isinstance(node, SList) else ()
    for key, value in list(items):
        if isinstance(value, (SMap, SList)):
            _render(c, value, env, root, path + (key,))
        elif is_template(value):
            try:
                node[key] = render(value, env)
            except ExprError as e:
                c.error(f"train.{'.'.join(map(str, path + (key,)))}: {e.message}", locate(root, path + (key,)), e.hint)
