"""The compilation's diagnostics: errors are collected (not thrown) and pydantic's errors become spec messages."""
from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from .. import limits
from ..errors import Diagnostic, Loc, SpecError, did_you_mean
from ..expr import Budget
from ..load import SMap, locate


class Compiler:
    """What one compilation shares: the diagnostics so far, the source texts, the expression budget."""

    def __init__(self, sources: dict[str, str] | None = None):
        self.diags: list[Diagnostic] = []
        self.sources: dict[str, str] = sources if sources is not None else {}
        self.budget = Budget()                 # work left for the spec's expressions
        self.dropped = 0                       # errors past limits.ERRORS, counted but not kept

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

    def validate_model(self, model: type, tree: Any, path: str, prefix: tuple = ()) -> Any:
        """`model` validated from `tree`, or None after reporting each problem at its line."""
        try:
            return model.model_validate(tree)
        except ValidationError as e:
            errors = dedupe(e.errors())
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
            msg = err["msg"].removeprefix("Value error, ")           # our own validators' messages
            self.error(f"{where}: {msg} (found {err.get('input')!r})", loc)


def _clip(text: str) -> str:
    """A message cut in the middle past limits.MESSAGE_CHARS (a huge value's repr, say)."""
    n = limits.MESSAGE_CHARS
    if len(text) <= n:
        return text
    return f"{text[:n // 2]} ... ({len(text) - n:,} characters cut) ... {text[-n // 2:]}"


def dedupe(errors: list[dict]) -> list[dict]:
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
