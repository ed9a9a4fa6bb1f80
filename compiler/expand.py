"""Expansion: from a loaded, validated spec to typed IR nodes.

One pass over the layers, in order. Each node is normalised (shorthands), its expressions are
evaluated, blocks are instantiated, `repeat` and `when` applied, and its shape rule run at once,
so later expressions can read `shape(ref)` of anything built before. Errors are collected; a node
that depends on a failed one is skipped quietly instead of reporting the same problem again.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from . import limits
from . import ops as ops_pkg
from .errors import Diagnostic, Loc, ShapeError, SpecError, did_you_mean
from .expr import FAILED, Budget, ExprError, is_template, render
from .ir import BlockUse, Graph, Init, Node, Ref, TensorType
from .load import SList, SMap, load_file, locate
from .spec import RESERVED, BlockSpec, Library, Spec
from .train_section import build_train, is_train_key
from .values import POISON, Abort, Poisoned, Value, public_aliases

OPS = ops_pkg.OPS
STD_LIB = Path(__file__).resolve().parent.parent / "specs" / "lib"
NAME_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|[0-9]+)$")
SYMBOL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
USER_INITS = ("kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "normal", "zeros", "ones",
              "uniform", "constant")
# the arguments each `init:` takes (runtime.init's meaning): "number", "non-negative" or "nonlinearity"
INIT_ARGS: dict[str, dict[str, str]] = {
    "kaiming_uniform": {"a": "non-negative", "nonlinearity": "nonlinearity"},
    "kaiming_normal": {"a": "non-negative", "nonlinearity": "nonlinearity"},
    "xavier_uniform": {"gain": "non-negative"}, "xavier_normal": {"gain": "non-negative"},
    "normal": {"mean": "number", "std": "non-negative"},
    "uniform": {"bound": "non-negative", "low": "number", "high": "number"},
    "constant": {"value": "number"}, "zeros": {}, "ones": {},
}
NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv_transpose2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")
TYPE_NAMES = {"int": int, "float": (int, float), "bool": bool, "str": str, "list": list}


def init_args_problem(kind: str, args: dict) -> tuple[str, str | None] | None:
    """(message, hint) when a node's `init: {kind: args}` cannot be drawn as written, else None."""
    allowed = INIT_ARGS[kind]
    for key, value in args.items():
        if key not in allowed:
            return (f"unknown argument '{key}'", did_you_mean(str(key), allowed) or
                    (f"its arguments are: {', '.join(allowed)}" if allowed else f"{kind} takes no arguments"))
        want = allowed[key]
        if want == "nonlinearity":
            if value not in NONLINEARITIES:
                return (f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, found {value!r}",
                        did_you_mean(str(value), NONLINEARITIES))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"'{key}' must be a finite number, found {value!r}", None
        elif want == "non-negative" and value < 0:
            return f"'{key}' must not be negative, found {value!r}", None
    if kind == "constant" and "value" not in args:
        return "needs a value", "write constant: {value: 0.1}"
    if kind == "uniform":
        if "bound" in args and ("low" in args or "high" in args):
            return "give either bound or low and high, not both", None
        if args.get("low", 0.0) > args.get("high", 1.0):
            return f"low ({args.get('low', 0.0)}) is above high ({args.get('high', 1.0)})", None
    return None


# --------------------------------------------------------------------------------------------
# modules (files) and imports
# --------------------------------------------------------------------------------------------
@dataclass
class Module:
    path: str
    tree: SMap
    spec: Spec | Library
    root: Path
    imports: dict[str, "Module"] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)      # imports that failed (already reported)

    def block(self, name: str) -> tuple[BlockSpec, "Module", SMap] | None:
        if "." in name:
            alias, rest = name.split(".", 1)
            mod = self.imports.get(alias)
            return mod.block(rest) if mod else None
        if name in self.spec.blocks:
            return self.spec.blocks[name], self, self.tree["blocks"][name]
        return None

    def block_names(self) -> list[str]:
        names = list(self.spec.blocks)
        for alias, mod in self.imports.items():
            names += [f"{alias}.{b}" for b in mod.block_names()]
        return names


class Compiler:
    def __init__(self, sources: dict[str, str] | None = None):
        self.diags: list[Diagnostic] = []
        self.sources: dict[str, str] = sources if sources is not None else {}
        self.budget = Budget()                 # work left for the spec's expressions
        self.dropped = 0                       # errors past limits.ERRORS, counted but not kept

    # -- errors -------------------------------------------------------------------------------
    def error(self, message: str, loc: Loc | None, hint: str | None = None,
              use_sites: list[Loc] | None = None) -> None:
        if len(self.diags) >= limits.ERRORS:
            self.dropped += 1
            return
        notes = [(u, "in the block used here") for u in reversed(use_sites or [])]
        self.diags.append(Diagnostic(_clip(message), loc, _clip(hint) if hint else hint, notes))

    def fail(self) -> SpecError:
        if self.dropped:
            self.diags.append(Diagnostic(f"{self.dropped:,} more errors not shown (at most {limits.ERRORS} "
                                         "are reported)"))
            self.dropped = 0
        err = SpecError(diagnostics=self.diags)
        err.sources = self.sources
        return err

    # -- loading ------------------------------------------------------------------------------
    def load_module(self, tree: Any, path: str, root: Path, model: type, stack: tuple[str, ...]) -> Module | None:
        if not isinstance(tree, SMap):
            self.error("a spec must be a mapping of top-level keys (name, inputs, layers, ...)",
                       getattr(tree, "loc", Loc(path, 1, 1)))
            return None
        spec = self.validate_model(model, tree, path)
        if spec is None:
            return None
        mod = Module(path, tree, spec, root)
        for alias, target in spec.imports.items():
            loc = tree["imports"].loc_of(alias)
            sub = self.import_file(alias, target, mod, loc, stack)
            if sub is not None:
                mod.imports[alias] = sub
            else:
                mod.failed.add(alias)
        return mod

    def import_file(self, alias: str, target: str, mod: Module, loc: Loc, stack: tuple[str, ...]) -> Module | None:
        shown = target.replace("\0", "\\0")
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        if "\0" in target or len(target) > 1024:
            self.error(f"import '{alias}': '{shown}' is not a usable path", loc,
                       "a path has no NUL character and at most 1024 characters")
            return None
        if target.startswith("std:"):
            if not SYMBOL_RE.match(target[4:]):
                self.error(f"import '{alias}': '{target}' is not a standard library name", loc,
                           "std: takes a plain library name, e.g. std:resnet")
                return None
            file = (STD_LIB / f"{target[4:]}.yaml").resolve()
            root = STD_LIB.resolve()
            if not file.is_file():
                avail = sorted(p.stem for p in STD_LIB.glob("*.yaml"))
                self.error(f"no standard library file '{target[4:]}'", loc,
                           did_you_mean(target[4:], avail) or f"available: {', '.join(avail)}")
                return None
        else:
            if Path(target).is_absolute() or target.startswith("~"):
                self.error(f"import '{alias}': absolute paths are not allowed ('{target}')", loc,
                           "give a path relative to the importing file, or std:NAME")
                return None
            try:
                file = (Path(mod.path).resolve().parent / target).resolve()
                root = mod.root
                if not file.is_relative_to(root):
                    self.error(f"import '{alias}': '{target}' is outside the spec's folder ({root})", loc,
                               "imports may not escape the folder of the top-level spec")
                    return None
                if not file.is_file():
                    self.error(f"import '{alias}': file '{target}' not found", loc)
                    return None
            except (OSError, ValueError) as e:
                self.error(f"import '{alias}': cannot use '{shown}': {getattr(e, 'strerror', None) or e}", loc)
                return None
        if str(file) in stack:
            chain = " -> ".join(Path(s).name for s in stack + (str(file),))
            self.error(f"import cycle: {chain}", loc)
            return None
        try:
            tree, text = load_file(file)
        except SpecError as e:
            self.diags += e.diagnostics
            return None
        self.sources[str(file)] = text
        return self.load_module(tree, str(file), root, Library, stack + (str(file),))

    def validate_model(self, model: type, tree: Any, path: str, prefix: tuple = ()) -> Any:
        try:
            return model.model_validate(tree)
        except ValidationError as e:
            errors = _dedupe(e.errors())
            extra = {(tuple(er["loc"][:-1]), str(er["loc"][-1])) for er in errors
                     if er["type"] == "extra_forbidden" and er["loc"]}
            for err in errors:
                if err["type"] == "missing" and any(
                        parent == tuple(err["loc"][:-1]) and did_you_mean(key, [str(err["loc"][-1])])
                        for parent, key in extra):
                    continue                # `layer:` misspelt: the "unknown key" error says it all
                self.pydantic_error(err, tree, prefix, model)
            return None

    def pydantic_error(self, err: dict, tree: Any, prefix: tuple, model: type, what: str = "") -> None:
        path = tuple(p for p in err["loc"])
        loc = locate(tree, path)
        where = ".".join(str(p) for p in prefix + path) or "spec"
        if err["type"] == "extra_forbidden" and path:
            key = path[-1]
            parent = tree
            for p in path[:-1]:
                parent = parent[p] if isinstance(parent, (dict, list)) and _has(parent, p) else parent
            if isinstance(parent, SMap):
                loc = parent.key_locs.get(key, loc)
            allowed = _fields_at(model, path[:-1])
            self.error(f"unknown key '{key}'" + (f" in {'.'.join(str(p) for p in prefix + path[:-1])}"
                                                  if prefix + path[:-1] else ""), loc,
                       did_you_mean(str(key), allowed) or (f"allowed keys: {', '.join(allowed)}" if allowed else None))
        elif err["type"] == "missing" and path:
            self.error(f"missing required key '{path[-1]}'" + (f" in {'.'.join(str(p) for p in prefix + path[:-1])}"
                                                                if prefix + path[:-1] else ""), loc)
        else:
            self.error(f"{where}: {err['msg']} (found {err.get('input')!r})", loc)


def _clip(text: str) -> str:
    """A message cut in the middle past limits.MESSAGE_CHARS (a huge value's repr, say)."""
    n = limits.MESSAGE_CHARS
    if len(text) <= n:
        return text
    return f"{text[:n // 2]} ... ({len(text) - n:,} characters cut) ... {text[-n // 2:]}"


def _dedupe(errors: list[dict]) -> list[dict]:
    """One error per location: a value failing every branch of a union is one mistake."""
    seen: dict[tuple, dict] = {}
    for err in errors:
        parts = tuple(err["loc"])
        named = err["type"] in ("extra_forbidden", "missing") and parts    # ends with a key, even 'int' or 'a[b'
        loc = tuple(p for p in (parts[:-1] if named else parts) if isinstance(p, (int, str)) and not _is_branch(p))
        loc += parts[-1:] if named else ()
        if loc not in seen:
            seen[loc] = dict(err, loc=loc)
        elif err["type"] != seen[loc]["type"]:
            seen[loc]["union"] = True
    return list(seen.values())


def _is_branch(part: Any) -> bool:
    """pydantic names union branches in error locations ('int', 'tuple[int, int]', 'function-after[...]')."""
    return isinstance(part, str) and (part in ("int", "float", "str", "bool", "list", "dict", "none")
                                      or _GENERIC.fullmatch(part) is not None
                                      or part.startswith(("function-", "lax-", "is-instance")))


_GENERIC = re.compile(r"[a-z_]+\[.*\]")         # 'tuple[int, int]': a branch; a user's key 'dat[a' is not


def type_text(annotation: Any) -> str:
    """A readable form of an attribute's type for error messages: int | [int, int]."""
    import types
    import typing
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(type_text(a) for a in args) + "]"
        return f"a list of {type_text(args[0])}" if args else "a list"
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _has(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(key, int) and 0 <= key < len(container)


def _fields_at(model: type, path: tuple) -> list[str]:
    """Field names of the pydantic model found at `path` under `model` (best effort)."""
    import typing
    cls: Any = model
    for part in path:
        if isinstance(part, int) or not hasattr(cls, "model_fields"):
            if isinstance(part, int):
                continue
            return []
        f = cls.model_fields.get(part)
        if f is None:
            return []
        cls = f.annotation
        for _ in range(3):
            args = [a for a in typing.get_args(cls) if hasattr(a, "model_fields")]
            if hasattr(cls, "model_fields"):
                break
            if not args:
                inner = typing.get_args(cls)
                cls = inner[-1] if inner else cls
                continue
            cls = args[0]
    return list(getattr(cls, "model_fields", {}))


# --------------------------------------------------------------------------------------------
# expansion
# --------------------------------------------------------------------------------------------
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


class Expander:
    def __init__(self, c: Compiler):
        self.c = c
        self.nodes: list[Node] = []
        self.all: dict[str, Value] = {}              # every full name -> value (hierarchical lookups)
        self.node_by_name: dict[str, Node] = {}
        self.param_shapes: dict[str, tuple] = {}     # full param name -> shape
        self.instances: dict[str, tuple] = {}        # full instance name -> (block, module, tree, params)
        self.uses: dict[str, BlockUse] = {}          # full instance name -> what Graph.instances reports

    # -- references ---------------------------------------------------------------------------
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
    def expand_layers(self, layers: SList, scope: Scope) -> None:
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

    def normalise(self, raw: Any, loc: Loc, scope: Scope) -> tuple[dict, dict[str, Loc]]:
        """Shorthands to the canonical mapping; returns (fields, location of each field)."""
        if isinstance(raw, str):
            return {"op": raw}, {"op": loc}
        if not isinstance(raw, SMap):
            self.c.error(f"a layer must be an op name or a mapping, found {raw!r}", loc, use_sites=scope.use_sites)
            raise Poisoned
        if len(raw) == 0:
            self.c.error("empty layer", loc, use_sites=scope.use_sites)
            raise Poisoned
        plain = [k for k in raw if k not in RESERVED]
        op_keys = [k for k in plain if k in OPS]
        if len(plain) > 1 and len(op_keys) == 1 and not any(k in raw for k in ("op", "use", "call")):
            plain = op_keys                   # {conv2d: 16, kernel_size: 3}: the op key, plus attributes
        if len(plain) == 1 and not any(k in raw for k in ("op", "use", "call")):
            key = plain[0]
            if any(k in raw for k in RESERVED) and key not in OPS and key not in scope.module.block_names():
                self.c.error("a layer needs one of op, use or call", loc,
                             f"write {{op: <operator>, ...}}; '{key}' looks like an attribute",
                             use_sites=scope.use_sites)
                raise Poisoned
            if key not in OPS:
                blocks = scope.module.block_names()
                hint = (f"'{key}' is a block: write {{use: {key}, ...}}" if key in blocks else
                        did_you_mean(key, list(OPS)) or "see `specc schema` or docs/ops.md for the catalogue")
                self.c.error(f"unknown op '{key}'", raw.key_locs[key], hint, use_sites=scope.use_sites)
                raise Poisoned
            inner = raw[key]
            fields, locs = {"op": key}, {"op": raw.key_locs[key]}
            if isinstance(inner, SMap):
                fields.update(inner)
                locs.update({k: inner.loc_of(k) for k in inner})
                locs.update({f"key:{k}": inner.key_locs[k] for k in inner})
            elif inner is not None:
                primary = OPS[key].primary
                if primary is None:
                    self.c.error(f"op '{key}' has no primary attribute, so '{{{key}: {inner}}}' is ambiguous",
                                 raw.loc_of(key), f"write {{op: {key}, <attribute>: {inner}}}",
                                 use_sites=scope.use_sites)
                    raise Poisoned
                fields[primary] = inner
                locs[primary] = raw.loc_of(key)
            for k in raw:
                if k != key:
                    fields[k], locs[k], locs[f"key:{k}"] = raw[k], raw.loc_of(k), raw.key_locs[k]
            locs["__node__"] = loc
            return fields, locs
        fields = dict(raw)
        locs = {k: raw.loc_of(k) for k in raw}
        locs["__node__"] = loc
        for k in raw:
            locs[f"key:{k}"] = raw.key_locs[k]
        return fields, locs

    def expand_item(self, raw: Any, loc: Loc, scope: Scope) -> None:
        fields, locs = self.normalise(raw, loc, scope)
        kinds = [k for k in ("op", "use", "call") if k in fields]
        if len(kinds) != 1:
            msg = ("a layer needs one of op, use or call" if not kinds else
                   f"a layer takes only one of op, use or call (found {', '.join(kinds)})")
            self.c.error(msg, loc, use_sites=scope.use_sites)
            scope.last = POISON
            raise Poisoned
        kind = kinds[0]
        target = self.evaluate(fields[kind], scope, locs.get(kind, loc))
        if not isinstance(target, str):
            self.c.error(f"{kind} must be a name, found {target!r}", locs.get(kind, loc), use_sites=scope.use_sites)
            raise Poisoned
        key = target.rsplit(".", 1)[-1] if kind != "call" else f"{target}_call"
        scope.counts[key] += 1
        default_name = f"{key}_{scope.counts[key]}"
        name = default_name
        if "name" in fields:
            name = self.evaluate(fields["name"], scope, locs["name"])
            if isinstance(name, int) and not isinstance(name, bool) and name >= 0:
                name = str(name)
            if not isinstance(name, str) or not NAME_RE.match(name):
                self.c.error(f"invalid node name {name!r}", locs["name"],
                             "a name is an identifier (letters, digits, _) or a non-negative integer",
                             use_sites=scope.use_sites)
                scope.last = POISON
                raise Poisoned
        if name in scope.names:
            self.c.error(f"duplicate name '{name}' in this scope", locs.get("name", loc),
                         "names must be unique within a scope; rename one of them", use_sites=scope.use_sites)
            raise Poisoned
        scope.names[name] = POISON          # until built; keeps later errors quiet
        repeat = 1
        if "repeat" in fields:
            repeat = self.evaluate(fields["repeat"], scope, locs["repeat"])
            if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
                self.c.error(f"repeat must be a positive integer, found {repeat!r}", locs["repeat"],
                             use_sites=scope.use_sites)
                scope.last = POISON
                raise Poisoned
            if repeat > limits.REPEAT:
                self.c.error(f"repeat {repeat:,} is larger than the limit of {limits.REPEAT:,}", locs["repeat"],
                             "a network of that many layers cannot be built or trained", use_sites=scope.use_sites)
                scope.last = POISON
                raise Poisoned
        n_errors = len(self.c.diags)
        if kind == "op":
            self.precheck_op(target, fields, locs, loc, scope)
        try:
            inputs = self.node_inputs(fields, locs, loc, scope, kind, target)
        except Poisoned:
            scope.last = POISON
            self.check_expressions(fields, locs, loc, scope)
            raise
        if len(self.c.diags) > n_errors:
            raise Poisoned
        value: Value | None = None
        n_nodes = len(self.nodes)
        for i in range(repeat):
            if i == 1:
                self.check_node_count(repeat, len(self.nodes) - n_nodes, locs["repeat"], scope)
            env = dict(scope.env, index=i) if "repeat" in fields else scope.env
            full = name if repeat == 1 else f"{name}.{i}"
            if value is not None:
                inputs = [value] + inputs[1:]
            try:
                enabled = True
                if "when" in fields:
                    enabled = self.evaluate(fields["when"], scope, locs["when"], env)
                    if not isinstance(enabled, bool):
                        self.c.error(f"when must be true or false, found {enabled!r}", locs["when"],
                                     use_sites=scope.use_sites)
                        raise Poisoned
                if not enabled:
                    if not inputs:
                        self.c.error(f"'{full}' is disabled by `when` but has no input to pass through",
                                     locs["when"], use_sites=scope.use_sites)
                        raise Poisoned
                    value = Value({k: v for k, v in inputs[0].ports.items()}, kind="alias")
                elif kind == "op":
                    value = self.build_op(target, fields, locs, loc, scope, full, inputs, env)
                elif kind == "use":
                    value = self.build_use(target, fields, locs, loc, scope, full, inputs, env)
                else:
                    value = self.build_call(target, fields, locs, loc, scope, full, inputs)
            except Poisoned:
                value = POISON
            if repeat > 1:
                self.all[scope.prefix + full] = value
            if value.poisoned:
                break
        scope.names[name] = value
        self.all[scope.prefix + name] = value
        scope.last = value
        if value.poisoned:
            raise Poisoned
        scope.built.append((name, value, kind == "op" and OPS[target].loss))

    def check_node_count(self, repeat: int, per_copy: int, loc: Loc, scope: Scope) -> None:
        """After a repeated layer's first copy: refuse at once a repeat that would pass limits.NODES."""
        total = len(self.nodes) + per_copy * (repeat - 1)
        if total > limits.NODES:
            self.c.error(f"repeat {repeat:,} would expand the spec to about {total:,} nodes ({per_copy:,} per copy), "
                         f"more than the limit of {limits.NODES:,}", loc, use_sites=scope.use_sites)
            raise Abort

    def node_inputs(self, fields: dict, locs: dict, loc: Loc, scope: Scope, kind: str, target: str) -> list[Value]:
        if "in" in fields:
            raw = fields["in"]
            items = raw if isinstance(raw, list) else [raw]
            item_locs = (raw.locs if isinstance(raw, SList) else [locs["in"]] * len(items))
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
            self.c.error("this first layer has no input to take", loc,
                         "declare `inputs:` or give the layer an explicit `in`", use_sites=scope.use_sites)
            raise Poisoned
        if prev.poisoned:
            raise Poisoned
        return [prev]

    def check_expressions(self, fields: dict, locs: dict, loc: Loc, scope: Scope) -> None:
        """Evaluate attribute expressions of a node that cannot be built, so their own errors show."""
        env = dict(scope.env, index=0) if "repeat" in fields else scope.env
        for k, v in fields.items():
            if k not in ("op", "use", "call", "in"):
                try:
                    self.evaluate(v, scope, locs.get(k, loc), env)
                except Poisoned:
                    pass

    # -- ops ----------------------------------------------------------------------------------
    def precheck_op(self, op: str, fields: dict, locs: dict, loc: Loc, scope: Scope) -> None:
        """Report an unknown op or a misspelt attribute even when the node's input failed earlier."""
        opdef = OPS.get(op)
        if opdef is None:
            blocks = scope.module.block_names()
            hint = (f"'{op}' is a block: write use: {op}" if op in blocks else
                    did_you_mean(op, list(OPS)) or "see docs/ops.md for the catalogue")
            self.c.error(f"unknown op '{op}'", locs.get("op", loc), hint, use_sites=scope.use_sites)
            raise Poisoned
        allowed = set(opdef.attrs.model_fields)
        bad = [k for k in fields if k not in RESERVED and k not in allowed]
        if bad:
            try:
                self.validate_attrs(opdef, {k: None for k in bad}, locs, loc, scope, only_extra=True)
            except Poisoned:
                pass

    def build_op(self, op: str, fields: dict, locs: dict, loc: Loc, scope: Scope, name: str,
                 inputs: list[Value | None], env: dict) -> Value:
        opdef = OPS.get(op)
        if opdef is None:
            blocks = scope.module.block_names()
            hint = (f"'{op}' is a block: write use: {op}" if op in blocks else
                    did_you_mean(op, list(OPS)) or "see docs/ops.md for the catalogue")
            self.c.error(f"unknown op '{op}'", locs.get("op", loc), hint, use_sites=scope.use_sites)
            raise Poisoned
        raw_attrs = {k: v for k, v in fields.items() if k not in RESERVED}
        attrs_in = {k: self.evaluate(v, scope, locs.get(k, loc), env) for k, v in raw_attrs.items()}
        attrs = self.validate_attrs(opdef, attrs_in, locs, loc, scope)
        init = self.node_init(fields, locs, scope, env)
        return self.infer_node(opdef, attrs, name, scope, inputs, locs, loc, init=init)

    def validate_attrs(self, opdef, attrs_in: dict, locs: dict, loc: Loc, scope: Scope, only_extra: bool = False):
        try:
            return opdef.attrs.model_validate(attrs_in)
        except ValidationError as e:
            allowed = list(opdef.attrs.model_fields)
            for err in _dedupe(e.errors()):
                if only_extra and err["type"] != "extra_forbidden":
                    continue
                key = err["loc"][0] if err["loc"] else None
                where = locs.get(f"key:{key}", locs.get(key, loc))
                if err["type"] == "extra_forbidden":
                    self.c.error(f"{opdef.name} has no attribute '{key}'", where,
                                 did_you_mean(str(key), allowed + ["name", "in", "repeat", "when", "init"]) or
                                 (f"its attributes are: {', '.join(allowed)}" if allowed else
                                  f"{opdef.name} takes no attributes"), use_sites=scope.use_sites)
                elif err["type"] == "missing":
                    self.c.error(f"{opdef.name} needs attribute '{key}'", locs.get("__node__", loc),
                                 f"add {key}: <value>" + (f" (its primary attribute: {{{opdef.name}: <{key}>}})"
                                                          if opdef.primary == key else ""),
                                 use_sites=scope.use_sites)
                elif err.get("union") and key in opdef.attrs.model_fields:
                    want = type_text(opdef.attrs.model_fields[key].annotation)
                    self.c.error(f"{opdef.name} attribute '{key}' must be {want}, found {err.get('input')!r}",
                                 locs.get(key, loc), use_sites=scope.use_sites)
                else:
                    self.c.error(f"{opdef.name} attribute '{key}': {err['msg'].lower()} "
                                 f"(found {err.get('input')!r})", locs.get(key, loc), use_sites=scope.use_sites)
            raise Poisoned from None

    def node_init(self, fields: dict, locs: dict, scope: Scope, env: dict) -> Init | None:
        if "init" not in fields:
            return None
        raw = self.evaluate(fields["init"], scope, locs["init"], env)
        kind, args = (raw, {}) if isinstance(raw, str) else (next(iter(raw)), next(iter(raw.values())) or {}) \
            if isinstance(raw, dict) and len(raw) == 1 else (None, None)
        if kind not in USER_INITS or not isinstance(args, dict):
            self.c.error(f"unknown initialiser {raw!r}", locs["init"],
                         did_you_mean(str(kind), USER_INITS) or f"choose one of: {', '.join(USER_INITS)}",
                         use_sites=scope.use_sites)
            raise Poisoned
        problem = init_args_problem(kind, args)
        if problem:
            self.c.error(f"initialiser {kind}: {problem[0]}", locs["init"], problem[1], use_sites=scope.use_sites)
            raise Poisoned
        return Init.of(kind, **args)

    def infer_node(self, opdef, attrs, name: str, scope: Scope, inputs: list[Value | None], locs: dict, loc: Loc,
                   init: Init | None = None, param_prefix: str | None = None) -> Value:
        n_req = len(opdef.inputs) - len(opdef.optional)
        if opdef.variadic:
            ok = len(inputs) >= max(n_req, 1)
        else:
            ok = n_req <= len(inputs) <= len(opdef.inputs)
        if not ok:
            want = (f"at least {max(n_req, 1)}" if opdef.variadic else
                    f"{n_req}" if n_req == len(opdef.inputs) else f"{n_req} to {len(opdef.inputs)}")
            names = ", ".join(f"[{i}]" if i in opdef.optional else i for i in opdef.inputs)
            self.c.error(f"{opdef.name} takes {want} input(s) ({names}), got {len(inputs)}",
                         locs.get("in", locs.get("__node__", loc)),
                         "list them in order with in: [...]" if opdef.inputs else f"{opdef.name} takes no inputs",
                         use_sites=scope.use_sites)
            raise Poisoned
        for i, v in enumerate(inputs):
            if v is None and (opdef.variadic or opdef.inputs[i] not in opdef.optional):
                what = f"input {i + 1}" if opdef.variadic else f"input '{opdef.inputs[i]}'"
                self.c.error(f"{opdef.name} {what} cannot be null", locs.get("in", loc),
                             use_sites=scope.use_sites)
                raise Poisoned
        if len(self.nodes) >= limits.NODES:
            self.c.error(f"the spec expands to more than {limits.NODES:,} nodes, the limit",
                         locs.get("__node__", loc), "check the repeat counts of this layer and the blocks around it",
                         use_sites=scope.use_sites)
            raise Abort
        refs = [None if v is None else v.default[0] for v in inputs]
        types = [None if v is None else v.default[1] for v in inputs]
        if not opdef.variadic:          # omitted trailing optional inputs are None, for kernels and lowerings
            refs += [None] * (len(opdef.inputs) - len(refs))
            types += [None] * (len(opdef.inputs) - len(types))
        try:
            inferred = opdef.infer(attrs, types)
        except ShapeError as e:
            where = locs.get(e.attr, None) if e.attr else None
            msg = _name_inputs(e.message, opdef, inputs)
            if msg.startswith(opdef.name + "'s "):
                msg = f"{opdef.name} '{name}': its {msg[len(opdef.name) + 3:]}"
            elif not msg.startswith(opdef.name):
                msg = f"{opdef.name} '{name}': {msg}"
            elif f"'{name}'" not in msg:
                msg = msg.replace(opdef.name, f"{opdef.name} '{name}'", 1)
            self.c.error(msg, where or locs.get("__node__", loc), self.producer_hint(e, attrs, inputs),
                         use_sites=scope.use_sites)
            raise Poisoned from None
        ports = inferred.ports or list(opdef.ports)
        if len(inferred.outputs) > limits.OUTPUTS:
            self.c.error(f"{opdef.name} '{name}' would have {len(inferred.outputs):,} outputs, more than the limit of "
                         f"{limits.OUTPUTS:,}", locs.get("__node__", loc), use_sites=scope.use_sites)
            raise Poisoned
        full = scope.prefix + name
        node = Node(name=full, op=opdef.name, attrs=attrs, inputs=refs,
                    outputs=dict(zip(ports, inferred.outputs)), params=list(inferred.params),
                    param_prefix=param_prefix if param_prefix is not None else scope.param_prefix + name,
                    init=init, macs=int(inferred.macs), loc=locs.get("__node__", loc),
                    use_sites=list(scope.use_sites), block=scope.prefix[:-1] or None)
        self.check_shared_params(node, loc, scope)
        self.nodes.append(node)
        self.node_by_name[full] = node
        return Value({p: (Ref(full, None if i == 0 else p), t) for i, (p, t) in enumerate(node.outputs.items())},
                     kind="node", owner=full)

    def producer_hint(self, e: ShapeError, attrs: Any, inputs: list[Value | None]) -> str | None:
        """For a declared in_channels/in_features that disagrees, also name the layer that sets the size."""
        want = {"in_channels": "out_channels", "in_features": "out_features"}.get(e.attr or "")
        if want is None or not inputs or inputs[0] is None:
            return e.hint
        node = self.node_by_name.get(inputs[0].default[0].node)
        for _ in range(50):
            if node is None:
                return e.hint
            if hasattr(node.attrs, want):
                short = node.name[len(node.block) + 1:] if node.block else node.name
                return f"{e.hint or ''}{', or ' if e.hint else ''}change {short}'s {want} to {getattr(attrs, e.attr)}"
            if not node.inputs or node.inputs[0] is None or node.params:
                return e.hint
            node = self.node_by_name.get(node.inputs[0].node)
        return e.hint

    def check_shared_params(self, node: Node, loc: Loc, scope: Scope) -> None:
        shared = node.param_prefix != node.name
        for p in node.params:
            full = node.param_name(p)
            have = self.param_shapes.get(full)
            if have is None:
                if shared:
                    self.c.error(f"'{node.name}' would need parameter '{full}', which the called instance does not "
                                 "have", loc, "a call must build the same layers as the original", scope.use_sites)
                    raise Poisoned
                self.param_shapes[full] = p.shape
            elif have != p.shape:
                self.c.error(f"shared parameter '{full}' has shape {list(have)} but this call needs {list(p.shape)}",
                             loc, "call an instance on inputs of the shape it was built for", scope.use_sites)
                raise Poisoned
            elif not shared:
                self.c.error(f"parameter name '{full}' is used twice", loc, "rename one of the nodes",
                             scope.use_sites)
                raise Poisoned

    # -- blocks -------------------------------------------------------------------------------
    def build_use(self, block_name: str, fields: dict, locs: dict, loc: Loc, scope: Scope, name: str,
                  inputs: list[Value | None], env: dict, param_prefix: str | None = None,
                  given: dict | None = None) -> Value:
        found = scope.module.block(block_name)
        if found is None and block_name.split(".", 1)[0] in scope.module.failed:
            raise Poisoned
        if found is None:
            cands = scope.module.block_names()
            hint = (f"'{block_name}' is an op: write op: {block_name}" if block_name in OPS else
                    did_you_mean(block_name, cands) or (f"blocks available: {', '.join(cands)}" if cands else
                                                        "this file defines no blocks"))
            self.c.error(f"unknown block '{block_name}'", locs.get("use", loc), hint, use_sites=scope.use_sites)
            raise Poisoned
        block, module, btree = found
        key = f"{module.path}:{block_name.rsplit('.', 1)[-1]}"
        if key in scope.block_stack:
            self.c.error(f"block '{block_name}' uses itself (recursion)", locs.get("use", loc),
                         use_sites=scope.use_sites)
            raise Poisoned
        if given is None:
            given = self.block_params(block, block_name, fields, locs, loc, scope, env)
        if any(v is None for v in inputs) or len(inputs) != len(block.inputs):
            self.c.error(f"block '{block_name}' takes {len(block.inputs)} input(s) ({', '.join(block.inputs)}), "
                         f"got {len(inputs)}", locs.get("in", loc), use_sites=scope.use_sites)
            raise Poisoned
        full = scope.prefix + name
        inner = Scope(prefix=full + ".", param_prefix=(param_prefix if param_prefix is not None
                                                       else scope.param_prefix + name) + ".",
                      env={**module.spec.params, **given}, module=module,
                      names={n: v for n, v in zip(block.inputs, inputs)},
                      first_input=inputs[0] if inputs else None,
                      use_sites=scope.use_sites + [locs.get("__node__", loc)],
                      block_stack=scope.block_stack + (key,))
        n_before = len(self.c.diags)
        self.expand_layers(btree["layers"], inner)
        if len(self.c.diags) > n_before:
            raise Poisoned
        self.instances[full] = (block_name, given, scope.module)
        out = self.block_outputs(block, btree, inner, full)
        self.uses[full] = BlockUse(key, block_name.rsplit(".", 1)[-1], dict(given), [v.default[0] for v in inputs],
                                   list(block.inputs), {p: r for p, (r, _t) in out.ports.items()}, inner.param_prefix[:-1])
        return out

    def block_params(self, block: BlockSpec, block_name: str, fields: dict, locs: dict, loc: Loc,
                     scope: Scope, env: dict) -> dict:
        given_raw = {k: v for k, v in fields.items() if k not in RESERVED}
        out: dict[str, Any] = {}
        bad = False
        for k, v in given_raw.items():
            if k not in block.params:
                self.c.error(f"block '{block_name}' has no param '{k}'", locs.get(f"key:{k}", locs.get(k, loc)),
                             did_you_mean(k, list(block.params)) or
                             (f"its params are: {', '.join(block.params)}" if block.params else "it takes no params"),
                             use_sites=scope.use_sites)
                bad = True
                continue
            out[k] = self.evaluate(v, scope, locs.get(k, loc), env)
        for k, decl in block.params.items():
            if isinstance(decl, str) and decl in TYPE_NAMES:
                if k not in out:
                    self.c.error(f"block '{block_name}' needs param '{k}' ({decl})", locs.get("__node__", loc),
                                 f"add {k}: <{decl}> to the use", use_sites=scope.use_sites)
                    bad = True
                elif not isinstance(out[k], TYPE_NAMES[decl]) or (decl != "bool" and isinstance(out[k], bool)):
                    self.c.error(f"block '{block_name}' param '{k}' must be {decl}, found {out[k]!r}",
                                 locs.get(k, loc), use_sites=scope.use_sites)
                    bad = True
            elif k not in out:
                out[k] = decl
        if bad:
            raise Poisoned
        return out

    def block_outputs(self, block: BlockSpec, btree: SMap, inner: Scope, full: str) -> Value:
        outs = block.outputs
        if outs is None:
            if inner.last is None:
                self.c.error("block has no layers", btree.loc, use_sites=inner.use_sites)
                raise Poisoned
            if inner.last.poisoned:               # its last layer failed (reported, or quiet after a failed import)
                raise Poisoned
            return Value(dict(inner.last.ports), kind="instance", owner=full)
        olocs = btree["outputs"]
        if not outs:
            self.c.error("a block needs at least one output", getattr(olocs, "loc", btree.loc),
                         "list its outputs, or leave `outputs` out to use the last layer",
                         use_sites=inner.use_sites)
            raise Poisoned
        items = list(outs.items()) if isinstance(outs, dict) else [(r, r) for r in outs]
        ports: dict[str, tuple[Ref, TensorType]] = {}
        for i, (port, ref) in enumerate(items):
            rloc = olocs.loc_of(port) if isinstance(olocs, SMap) else olocs.loc_of(i)
            v = self.resolve(ref, inner, rloc)
            ports[str(port)] = v.default
        return Value(ports, kind="instance", owner=full)

    def build_call(self, target: str, fields: dict, locs: dict, loc: Loc, scope: Scope, name: str,
                   inputs: list[Value | None]) -> Value:
        extra = [k for k in fields if k not in RESERVED]
        if extra:
            self.c.error(f"a call takes no attributes (found {', '.join(extra)}): it reuses '{target}' as built",
                         locs.get(f"key:{extra[0]}", loc), use_sites=scope.use_sites)
            raise Poisoned
        full_target = scope.prefix + target if scope.prefix + target in self.node_by_name or \
            scope.prefix + target in self.instances else target
        if full_target in self.instances:
            block_name, given, module = self.instances[full_target]
            caller = Scope(prefix=scope.prefix, param_prefix=scope.param_prefix, env=scope.env, module=module,
                           use_sites=scope.use_sites, block_stack=scope.block_stack)
            orig_prefix = self.node_param_prefix_of_instance(full_target)
            return self.build_use(block_name, {}, locs, loc, caller, name, inputs, {}, param_prefix=orig_prefix,
                                  given=given)
        node = self.node_by_name.get(full_target)
        if node is None:
            cands = [k[len(scope.prefix):] for k in list(self.instances) + list(self.node_by_name)
                     if k.startswith(scope.prefix)]
            self.c.error(f"call: '{target}' is not a block instance or layer built earlier", locs.get("call", loc),
                         did_you_mean(target, cands), use_sites=scope.use_sites)
            raise Poisoned
        return self.infer_node(OPS[node.op], node.attrs, name, scope, inputs, locs, loc, init=node.init,
                               param_prefix=node.param_prefix)

    def node_param_prefix_of_instance(self, full: str) -> str:
        for n in self.nodes:
            if n.name.startswith(full + "."):
                suffix = n.name[len(full):]
                if n.param_prefix.endswith(suffix):
                    return n.param_prefix[: len(n.param_prefix) - len(suffix)]
        return full


def _name_inputs(message: str, opdef: Any, inputs: list[Value | None]) -> str:
    """Shape rules say "its input" / "its target"; name the node that feeds it instead."""
    def ref_text(v: Value) -> str:
        ref = v.default[0]
        return f"'{ref.node}'" if ref.port is None else f"'{ref.node}:{ref.port}'"
    names = list(opdef.inputs)
    for i, v in enumerate(inputs):
        if v is None:
            continue
        if i < len(names):
            message = re.sub(rf"\bits {re.escape(names[i])}\b", ref_text(v), message)
    if inputs and inputs[0] is not None and sum(v is not None for v in inputs) == 1:
        message = re.sub(r"\bits input\b", ref_text(inputs[0]), message)
    return message


# --------------------------------------------------------------------------------------------
# the whole spec
# --------------------------------------------------------------------------------------------
def compile_tree(tree: Any, path: str, params: dict[str, Any] | None, text: str, base_dir: Path,
                 sources: dict[str, str] | None = None) -> Graph:
    c = Compiler(sources if sources is not None else {path: text})
    c.sources.setdefault(path, text)
    if isinstance(tree, SMap) and "blocks" in tree and "inputs" not in tree and "layers" not in tree:
        stem = Path(path).stem
        std = Path(path).resolve().parent == STD_LIB.resolve()
        c.error(f"'{path}' is a block library (blocks, but no inputs or layers): it is imported, not compiled",
                tree.key_locs.get("blocks", tree.loc),
                f"import it from a spec: imports: {{{stem}: \"{'std:' + stem if std else Path(path).name}\"}}, "
                f"then use: {stem}.<block>")
        raise c.fail()
    mod = c.load_module(tree, path, base_dir.resolve(), Spec, (str(Path(path).resolve()),))
    if mod is None:
        raise c.fail()
    spec: Spec = mod.spec
    env = apply_overrides(c, spec, tree, params or {})
    ex = Expander(c)
    top = Scope(prefix="", param_prefix="", env=env, module=mod)
    graph_inputs = build_inputs(c, ex, tree, spec, top)
    try:
        if tree.get("layers") is not None:
            ex.expand_layers(tree["layers"], top)
    except Abort:                             # a limit on the whole expansion: nothing more is checked
        raise c.fail() from None
    outputs = build_outputs(c, ex, tree, spec, top)
    train = build_train(c, tree, env, params or {}, path)
    if train is not None and not c.diags:
        check_train(c, ex, tree, train, top, graph_inputs)
    generate = None
    if spec.generate is not None:
        from .generate_check import check_generate
        from .spec import Generate
        generate = c.validate_model(Generate, tree["generate"], path, prefix=("generate",))
        if generate is not None and not c.diags:
            generate = check_generate(c, ex, tree, generate, top, graph_inputs, outputs)
    if c.diags:
        raise c.fail()
    g = Graph(name=spec.name, inputs=graph_inputs, output_refs=outputs, nodes=ex.nodes, train=train,
              source=path, instances=ex.uses)
    g.spec_hash = spec_hash(g)
    g.generate = generate
    g.aliases = public_aliases(ex.all, {n.name for n in ex.nodes}, graph_inputs)
    return g


def apply_overrides(c: Compiler, spec: Spec, tree: SMap, params: dict[str, Any]) -> dict[str, Any]:
    env = dict(spec.params)
    for k, v in params.items():
        if is_train_key(k):                  # --set train.KEY: applied to the train section (train_section.py)
            continue
        if k not in env:
            c.error(f"--set/params: the spec has no param '{k}'", tree.loc_of("params") if "params" in tree else None,
                    did_you_mean(k, list(env)) or (f"its params are: {', '.join(env)}" if env else
                                                   "this spec declares no params"))
            continue
        env[k] = v
    # params may refer to earlier params
    for k, v in list(env.items()):
        if is_template(v):
            try:
                env[k] = render(v, env, budget=c.budget)
            except ExprError as e:
                env[k] = FAILED                  # reading it later fails quietly: one error, not a cascade
                if not e.quiet:
                    c.error(e.message, locate(tree, ("params", k)), e.hint)
    return env


def build_inputs(c: Compiler, ex: Expander, tree: SMap, spec: Spec, top: Scope) -> dict[str, TensorType]:
    out: dict[str, TensorType] = {}
    itree = tree["inputs"]
    for name, decl in spec.inputs.items():
        t = _input_type(c, ex, itree, name, decl, top)
        if t is None:
            top.names[str(name)] = POISON
            top.first_input = top.first_input or POISON
            continue
        out[name] = t
        v = Value({"out": (Ref(name), t)}, kind="input", owner=name)
        top.names[name] = v
        ex.all[name] = v
        if top.first_input is None:
            top.first_input = v
    return out


def _input_type(c: Compiler, ex: Expander, itree: SMap, name: str, decl: Any, top: Scope) -> TensorType | None:
    loc = itree.loc_of(name)
    if not NAME_RE.match(str(name)):
        c.error(f"invalid input name '{name}'", itree.key_locs.get(name, loc))
        return None
    shape, dtype = decl, "float32"
    if isinstance(decl, dict):
        extra = [k for k in decl if k not in ("shape", "dtype")]
        if extra or "shape" not in decl:
            c.error(f"input '{name}' must be a shape list or {{shape, dtype}}" +
                    (f"; unknown key '{extra[0]}'" if extra else ""), loc,
                    did_you_mean(extra[0], ["shape", "dtype"]) if extra else None)
            return None
        shape, dtype = decl["shape"], decl.get("dtype", "float32")
        if dtype not in ("float32", "int64", "bool"):
            c.error(f"input '{name}': dtype must be float32, int64 or bool, found {dtype!r}", decl.loc_of("dtype"),
                    did_you_mean(str(dtype), ["float32", "int64", "bool"]))
            return None
    try:
        shape = ex.evaluate(shape, top, loc)
    except Poisoned:
        return None
    if not isinstance(shape, list):
        c.error(f"input '{name}': a shape is a list of sizes and symbols, found {shape!r}", loc)
        return None
    dims, ok = [], True
    for d in shape:
        if isinstance(d, bool) or not (isinstance(d, int) and d > 0 or isinstance(d, str) and SYMBOL_RE.match(d)):
            c.error(f"input '{name}': dimension {d!r} must be a positive integer or a symbol such as N", loc)
            ok = False
        dims.append(d)
    if not ok:
        return None
    return TensorType(tuple(dims), dtype)


def build_outputs(c: Compiler, ex: Expander, tree: SMap, spec: Spec, top: Scope) -> dict[str, Ref]:
    outs: dict[str, Ref] = {}
    if spec.outputs is None:                 # default: the last top-level layer that is not a loss
        for name, value, is_loss in reversed(top.built):
            if not is_loss and value.kind != "alias":
                return {name: value.default[0]}
        return outs
    otree = tree["outputs"]
    if not spec.outputs:
        c.error("the spec's outputs are empty", getattr(otree, "loc", tree.loc_of("outputs")),
                "list the nodes the model returns, or leave `outputs` out to return the last layer")
        return outs
    items = list(spec.outputs.items()) if isinstance(spec.outputs, dict) else [(r, r) for r in spec.outputs]
    for i, (public, ref) in enumerate(items):
        loc = otree.loc_of(public) if isinstance(otree, SMap) else otree.loc_of(i)
        if isinstance(spec.outputs, dict) and not str(public).strip():     # ONNX needs a name for every output
            c.error("an output name must not be empty", otree.key_locs.get(public, loc),
                    f"name it, e.g. outputs: {{out: {ref}}}")
            continue
        try:
            v = ex.resolve(ref, top, loc)
        except Poisoned:
            continue
        outs[str(public)] = v.default[0]
    return outs


def check_train(c: Compiler, ex: Expander, tree: SMap, train: Any, top: Scope,
                inputs: dict[str, TensorType]) -> None:
    ttree = tree["train"]

    def scalar_ref(ref: str, path: tuple) -> None:
        loc = locate(ttree, path)
        try:
            v = ex.resolve(ref, top, loc)
        except Poisoned:
            return
        t = v.default[1]
        if t.rank != 0:
            c.error(f"the objective '{ref}' must be a scalar, but it has shape {t}", loc,
                    "use a loss with reduction mean or sum, or a sum/mean node")

    def objectives(obj: Any, path: tuple) -> None:
        if isinstance(obj, str):
            scalar_ref(obj, path)
        elif isinstance(obj, dict):
            for k in obj:
                scalar_ref(k, path + (k,))

    if train.phases:
        for i, ph in enumerate(train.phases):
            objectives(ph.objective, ("phases", i, "objective"))
    elif train.objective is not None:
        objectives(train.objective, ("objective",))
    for key in ("predict", "target"):
        ref = getattr(train, key)
        if ref is not None:
            try:
                ex.resolve(ref, top, locate(ttree, (key,)))
            except Poisoned:
                pass
    names = list(dict.fromkeys(n.param_name(p) for n in ex.nodes for p in n.params if not p.buffer))

    def globs(patterns: list[str], path: tuple) -> None:
        for i, pat in enumerate(patterns):
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                c.error(f"the glob '{pat}' matches no parameter", locate(ttree, path + (i,)),
                        did_you_mean(pat, names) or f"parameters look like: {', '.join(names[:4])}")

    globs(train.freeze, ("freeze",))
    globs(list(train.lr_scale), ("lr_scale",))
    if train.phases:
        for i, ph in enumerate(train.phases):
            globs(ph.update, ("phases", i, "update"))
    if train.augment is not None and train.augment.input not in top.names:
        c.error(f"augment: unknown input '{train.augment.input}'", locate(ttree, ("augment", "input")),
                did_you_mean(train.augment.input, list(top.names)))
    for split_, name in train.mask.items():
        if name not in inputs:
            c.error(f"mask: '{name}' (the {split_} mask) is not an input of the spec",
                    locate(ttree, ("mask", split_)),
                    did_you_mean(name, list(inputs)) or f"its inputs are: {', '.join(inputs)}")
    ntree = ttree.get("noise")
    for name in train.noise:
        loc = ntree.key_locs.get(name, ntree.loc) if isinstance(ntree, SMap) else locate(ttree, ("noise",))
        t = inputs.get(name)
        if t is None:
            c.error(f"noise: '{name}' is not an input of the spec", loc,
                    did_you_mean(name, list(inputs)) or f"its inputs are: {', '.join(inputs)}")
        elif not t.dtype.startswith("float"):
            c.error(f"noise: input '{name}' is {t.dtype}; noise is drawn for float inputs only", loc)
        elif not (t.rank and isinstance(t.shape[0], str) and all(isinstance(d, int) for d in t.shape[1:])):
            c.error(f"noise: input '{name}' has shape {t}; a noise input needs a symbolic batch size first "
                    "and fixed sizes after it", loc, f"declare it as [N, ...], e.g. {name}: [N, 100]")


def spec_hash(g: Graph) -> str:
    payload = {
        "name": g.name,
        "inputs": {k: [list(map(str, t.shape)), t.dtype] for k, t in g.inputs.items()},
        "outputs": {k: str(r) for k, r in g.output_refs.items()},
        "nodes": [[n.name, n.op, n.attrs.model_dump(mode="json"), [str(r) for r in n.inputs], n.param_prefix]
                  for n in g.nodes],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
