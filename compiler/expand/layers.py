"""Layers in order: names, references, expressions, `repeat` and `when` (the core of the Expander)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .. import limits
from .. import ops as ops_pkg
from ..errors import Loc, did_you_mean
from ..expr import ExprError, is_template, reads_name, render
from ..ir import Node
from ..load import SList, SMap
from ..values import POISON, Abort, Poisoned, Value
from .diagnose import Compiler
from .locs import Locs
from .scope import NAME_HINT, NODE_NAME_RE, Names, Scope
from .shorthand import STARTERS, normalise

if TYPE_CHECKING:
    from .expander import Expander

OPS = ops_pkg.OPS


class LayerExpansion:
    """The Expander's walk over a list of layers; ops, blocks and calls are built by its other parts."""
    c: Compiler
    nodes: list[Node]
    all: dict[str, Value]

    # -- references and expressions -----------------------------------------------------------
    def resolve(self, text: Any, scope: Scope, loc: Loc) -> Value:
        if isinstance(text, Value):
            return text
        if not isinstance(text, str) or not text:
            self.c.error(f"a reference must be a node or input name, found {text!r}", loc, use_sites=scope.use_sites)
            raise Poisoned
        name, _, port = text.partition(":")
        value = scope.names.get(name)
        if value is None:
            value = self.all.get(scope.prefix + name)
        if value is None and name in scope.declared:
            later = scope.declared[name]
            self.c.error(f"'{name}' is referenced before it is defined (it is defined later, at line {later.line})",
                         loc, "a reference must name an input or an earlier node: reorder the layers",
                         use_sites=scope.use_sites)
            raise Poisoned
        if value is None:
            cands = list(scope.names) + [k[len(scope.prefix):] for k in self.all if k.startswith(scope.prefix)]
            self.c.error(f"unknown reference '{text}'", loc,
                         did_you_mean(name, cands) or "a reference names an input or an earlier node in the same scope",
                         use_sites=scope.use_sites)
            raise Poisoned
        if value.poisoned:
            raise Poisoned
        if port:
            if port not in value.ports:
                self.c.error(f"'{name}' has no output port '{port}'", loc,
                             f"its ports are: {', '.join(value.ports)}", use_sites=scope.use_sites)
                raise Poisoned
            ref, t = value.ports[port]
            return Value({port: (ref, t)}, kind=value.kind, owner=value.owner)
        return value

    def shape_fn(self, scope: Scope, loc: Loc) -> Callable[[str], list]:
        def shape_of(ref: str) -> list:
            return list(self.resolve(ref, scope, loc).default[1].shape)
        return shape_of

    def evaluate(self, value: Any, scope: Scope, loc: Loc, env: dict[str, Any] | None = None) -> Any:
        env = scope.env if env is None else env
        if is_template(value):
            try:
                return render(value, env, self.shape_fn(scope, loc), self.c.budget)
            except ExprError as e:
                if not e.quiet:
                    self.c.error(e.message, loc, e.hint, use_sites=scope.use_sites)
                raise Poisoned from None
        if isinstance(value, list):
            locs = getattr(value, "locs", None)
            return [self.evaluate(v, scope, locs[i] if locs else loc, env) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.evaluate(v, scope, value.loc_of(k) if isinstance(value, SMap) else loc, env)
                    for k, v in value.items()}
        return value

    # -- layers -------------------------------------------------------------------------------
    def expand_layers(self: "Expander", layers: SList, scope: Scope) -> None:
        for i, raw in enumerate(layers):
            if isinstance(raw, SMap) and isinstance(raw.get("name"), (str, int)) and not is_template(raw["name"]):
                scope.declared.setdefault(str(raw["name"]), raw.loc_of("name"))
        for i, raw in enumerate(layers):
            loc = layers.loc_of(i)
            try:
                self.expand_item(raw, loc, scope)
            except Poisoned:
                if isinstance(raw, dict) and isinstance(raw.get("name"), (str, int)):
                    scope.names.setdefault(str(raw["name"]), POISON)
                scope.last = POISON

    def expand_item(self: "Expander", raw: Any, loc: Loc, scope: Scope) -> None:
        fields, locs = normalise(self.c, raw, loc, scope)
        kinds = [k for k in STARTERS if k in fields]
        if len(kinds) != 1:
            msg = ("a layer needs one of op, use or call" if not kinds else
                   f"a layer takes only one of op, use or call (found {', '.join(kinds)})")
            self.c.error(msg, loc, use_sites=scope.use_sites)
            scope.last = POISON
            raise Poisoned
        kind = kinds[0]
        target = self.evaluate(fields[kind], scope, locs.at(kind))
        if not isinstance(target, str):
            self.c.error(f"{kind} must be a name, found {target!r}", locs.at(kind), use_sites=scope.use_sites)
            raise Poisoned
        key = target.rsplit(".", 1)[-1] if kind != "call" else f"{target}_call"
        scope.counts[key] += 1
        default = f"{key}_{scope.counts[key]}"          # `linear_2`: the 2nd linear of this scope
        try:
            repeat = self.repeat_count(fields, locs, scope)
        except Poisoned:
            if "name" not in fields:
                scope.names.setdefault(default, POISON)   # references to it stay quiet
            raise
        names = self.layer_names(fields, locs, scope, default, repeat)
        n_errors = len(self.c.diags)
        if kind == "op":
            self.precheck_op(target, fields, locs, scope)
        try:
            inputs = self.node_inputs(fields, locs, scope, kind, target)
        except Poisoned:
            scope.last = POISON
            self.check_expressions(fields, locs, scope)
            raise
        if len(self.c.diags) > n_errors:
            raise Poisoned
        value = self.expand_copies(fields, locs, scope, kind, target, names, inputs)
        if names.group in names.owned:           # a repeat's name is taken even when its last copy is off
            self.bind(scope, names.group, value, free=value.kind == "alias" and "repeat" not in fields)
        scope.last = value
        if value.poisoned:
            raise Poisoned
        scope.built.append((names.group or names.copies[-1], value, kind == "op" and OPS[target].loss))

    def layer_names(self, fields: dict, locs: Locs, scope: Scope, name: str, repeat: int) -> Names:
        """The names a layer takes: its `name:` (else its default `name`) and, with `repeat`, `name.0` ...
        `name.K-1`; a `name:` that reads `index` names each copy itself (`denselayer${index + 1}`)."""
        if "name" in fields:
            if "repeat" in fields and reads_name(fields["name"], "index"):
                return self.copy_names(fields, locs, scope, repeat)
            if reads_name(fields["name"], "index") and "index" not in scope.env:
                self.c.error("this name reads `index`, the copy number of a repeated layer, but the layer has no "
                             "repeat", locs.at("name"), "add repeat: K, or name it without index",
                             use_sites=scope.use_sites)
                scope.last = POISON
                raise Poisoned
            name = self.node_name(fields["name"], locs, scope, scope.env)
        if "repeat" in fields:              # always numbered, as nn.Sequential does: repeat: 1 gives name.0
            copies = [f"{name}.{i}" for i in range(repeat)]
            self.claim(name, {}, locs, scope, scope.env)
            return Names(name, copies, {name, *copies})
        return Names(name, [name], {name} if self.claim(name, fields, locs, scope, scope.env) else set())

    def copy_names(self, fields: dict, locs: Locs, scope: Scope, repeat: int) -> Names:
        """A repeated layer whose `name:` reads `index`: each copy named by it (no group name)."""
        envs = [dict(scope.env, index=i) for i in range(repeat)]
        copies = [self.node_name(fields["name"], locs, scope, env) for env in envs]
        for i, copy in enumerate(copies):
            if copy in copies[:i]:
                self.c.error(f"copies {copies.index(copy)} and {i} of this repeated layer are both named '{copy}'",
                             locs.at("name"), "a name that reads `index` must differ for each copy, e.g. "
                             "name: \"layer${index + 1}\"", use_sites=scope.use_sites)
                scope.last = POISON
                raise Poisoned
        return Names(None, copies, {c for c, env in zip(copies, envs) if self.claim(c, fields, locs, scope, env)})

    def node_name(self, raw: Any, locs: Locs, scope: Scope, env: dict) -> str:
        """A `name:` evaluated and checked: any PyTorch module name without a dot (`conv1`, `0`, `block1-0`)."""
        name = self.evaluate(raw, scope, locs.at("name"), env)
        if isinstance(name, int) and not isinstance(name, bool) and name >= 0:
            name = str(name)
        if not isinstance(name, str) or not NODE_NAME_RE.match(name):
            self.c.error(f"invalid node name {name!r}", locs.at("name"), NAME_HINT, use_sites=scope.use_sites)
            scope.last = POISON
            raise Poisoned
        if len(name) > limits.NAME_CHARS:
            self.c.error(f"the name '{name[:40]}...' has {len(name):,} characters, more than the limit of "
                         f"{limits.NAME_CHARS}", locs.at("name"), "use a short name, as for a PyTorch module",
                         use_sites=scope.use_sites)
            scope.last = POISON
            raise Poisoned
        return name

    def claim(self, name: str, fields: dict, locs: Locs, scope: Scope, env: dict) -> bool:
        """Take `name` in this scope for a layer: True when it is free (never used, or left by a layer switched
        off by `when`); False when an earlier layer holds it and this one is switched off. Else an error."""
        if name in scope.names and name not in scope.disabled:
            if not self.switched_off(fields, locs, scope, env):
                self.c.error(f"duplicate name '{name}' in this scope", locs.at("name"),
                             "names must be unique within a scope; rename one of them", use_sites=scope.use_sites)
                raise Poisoned
            return False
        scope.names[name] = POISON          # until built; keeps later errors quiet
        scope.disabled.discard(name)
        return True

    def switched_off(self, fields: dict, locs: Locs, scope: Scope, env: dict) -> bool:
        if "when" not in fields:
            return False
        return self.evaluate(fields["when"], scope, locs.at("when"), env) is False

    def bind(self, scope: Scope, name: str, value: Value, free: bool) -> None:
        """`name` means `value` from here on in this scope; `free`: a layer switched off by `when`, whose name
        a later layer may take."""
        scope.names[name] = value
        self.all[scope.prefix + name] = value
        if free:
            scope.disabled.add(name)
        else:
            scope.disabled.discard(name)

    def repeat_count(self, fields: dict, locs: Locs, scope: Scope) -> int:
        if "repeat" not in fields:
            return 1
        repeat = self.evaluate(fields["repeat"], scope, locs.at("repeat"))
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            self.c.error(f"repeat must be a positive integer, found {repeat!r}", locs.at("repeat"),
                         use_sites=scope.use_sites)
            scope.last = POISON
            raise Poisoned
        if repeat > limits.REPEAT:
            self.c.error(f"repeat {repeat:,} is larger than the limit of {limits.REPEAT:,}", locs.at("repeat"),
                         "a network of that many layers cannot be built or trained", use_sites=scope.use_sites)
            scope.last = POISON
            raise Poisoned
        return repeat

    def expand_copies(self: "Expander", fields: dict, locs: Locs, scope: Scope, kind: str, target: str,
                      names: Names, inputs: list[Value | None]) -> Value:
        """The layer built once per copy name, in a chain; the value of the last copy (POISON when one failed)."""
        value: Value | None = None
        n_nodes = len(self.nodes)
        repeat = len(names.copies)
        for i, full in enumerate(names.copies):
            if i == 1:
                self.check_node_count(repeat, len(self.nodes) - n_nodes, locs.at("repeat"), scope)
            env = dict(scope.env, index=i) if "repeat" in fields else scope.env
            if value is not None:
                inputs = [value] + inputs[1:]
            try:
                value = self.build_copy(fields, locs, scope, kind, target, full, inputs, env)
            except Poisoned:
                value = POISON
            if full in names.owned:
                if names.group is None:
                    self.bind(scope, full, value, free=value.kind == "alias")
                else:
                    self.all[scope.prefix + full] = value
            if value.poisoned:
                break
        assert value is not None
        return value

    def build_copy(self: "Expander", fields: dict, locs: Locs, scope: Scope, kind: str, target: str, full: str,
                   inputs: list[Value | None], env: dict) -> Value:
        """One copy of a layer: passed through when `when` is false, else built as an op, block use or call."""
        if "when" in fields:
            enabled = self.evaluate(fields["when"], scope, locs.at("when"), env)
            if not isinstance(enabled, bool):
                self.c.error(f"when must be true or false, found {enabled!r}", locs.at("when"),
                             use_sites=scope.use_sites)
                raise Poisoned
            if not enabled:
                if not inputs:
                    self.c.error(f"'{full}' is disabled by `when` but has no input to pass through",
                                 locs.at("when"), use_sites=scope.use_sites)
                    raise Poisoned
                return Value({k: v for k, v in inputs[0].ports.items()}, kind="alias")
        if kind == "op":
            return self.build_op(target, fields, locs, scope, full, inputs, env)
        if kind == "use":
            return self.build_use(target, fields, locs, scope, full, inputs, env)
        return self.build_call(target, fields, locs, scope, full, inputs)

    def check_node_count(self, repeat: int, per_copy: int, loc: Loc, scope: Scope) -> None:
        """After a repeated layer's first copy: refuse at once a repeat that would pass limits.NODES."""
        total = len(self.nodes) + per_copy * (repeat - 1)
        if total > limits.NODES:
            self.c.error(f"repeat {repeat:,} would expand the spec to about {total:,} nodes ({per_copy:,} per copy), "
                         f"more than the limit of {limits.NODES:,}", loc, use_sites=scope.use_sites)
            raise Abort

    def node_inputs(self, fields: dict, locs: Locs, scope: Scope, kind: str, target: str) -> list[Value | None]:
        if "in" in fields:
            raw = fields["in"]
            items = raw if isinstance(raw, list) else [raw]
            item_locs = (raw.locs if isinstance(raw, SList) else [locs.at("in")] * len(items))
            out, failed = [], False
            for it, il in zip(items, item_locs):
                try:
                    it = self.evaluate(it, scope, il)
                    out.append(None if it is None else self.resolve(it, scope, il))
                except Poisoned:
                    failed = True
            if failed:
                raise Poisoned
            return out
        if kind == "op" and target in OPS and not OPS[target].inputs:
            return []
        prev = scope.last if scope.last is not None else scope.first_input
        if prev is None:
            self.c.error("this first layer has no input to take", locs.node,
                         "declare `inputs:` or give the layer an explicit `in`", use_sites=scope.use_sites)
            raise Poisoned
        if prev.poisoned:
            raise Poisoned
        return [prev]

    def check_expressions(self, fields: dict, locs: Locs, scope: Scope) -> None:
        """Evaluate attribute expressions of a node that cannot be built, so their own errors show."""
        env = dict(scope.env, index=0) if "repeat" in fields else scope.env
        for k, v in fields.items():
            if k not in ("op", "use", "call", "in"):
                try:
                    self.evaluate(v, scope, locs.at(k), env)
                except Poisoned:
                    pass
