"""Safe YAML loading into plain containers that remember where each value came from.

`SMap` (a dict) and `SList` (a list) carry the location of every child value (`locs`) and, for
maps, of every key (`key_locs`), so any value can be traced back to file:line:col through its
parent. Only YAML's safe types are built; size, alias expansion and depth are limited.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from . import limits
from .errors import Loc, SpecError

MAX_BYTES = limits.SPEC_BYTES          # a spec is text written by hand
MAX_ALIASED = limits.ALIASED           # values copied by alias expansion: stops "billion laughs"
MAX_DEPTH = limits.YAML_DEPTH          # nesting of maps and lists
_KINDS = {"int": "integer", "float": "number", "bool": "boolean", "timestamp": "date", "null": "null",
          "binary": "binary", "str": "string"}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")   # 1e-3: a float in YAML 1.2, a str in 1.1
_constructor = yaml.SafeLoader("")
_STR = "tag:yaml.org,2002:str"
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


class SMap(dict):
    __slots__ = ("loc", "locs", "key_locs")

    def __init__(self, loc: Loc):
        super().__init__()
        self.loc, self.locs, self.key_locs = loc, {}, {}

    def loc_of(self, key: Any) -> Loc:
        return self.locs.get(key, self.loc)


class SList(list):
    __slots__ = ("loc", "locs")

    def __init__(self, loc: Loc):
        super().__init__()
        self.loc, self.locs = loc, []

    def loc_of(self, i: int) -> Loc:
        return self.locs[i] if 0 <= i < len(self.locs) else self.loc


def load_file(path: str | Path) -> tuple[Any, str]:
    """Load a spec file; returns (tree, text)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except (OSError, ValueError) as e:          # ValueError: a NUL character in the path
        raise SpecError(f"cannot read '{path}': {e.strerror or e}") from None
    if size > MAX_BYTES:
        raise SpecError(f"'{path}' is {size:,} bytes; a spec may be at most {MAX_BYTES:,} bytes")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read '{path}': {e}") from None
    return load_text(text, str(path)), text


def load_text(text: str, filename: str = "<string>") -> Any:
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise SpecError(f"{filename}: a spec may be at most {MAX_BYTES:,} bytes")
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, text, filename) from None
    except yaml.YAMLError as e:
        raise SpecError(f"{filename}: invalid YAML: {e}") from None
    except RecursionError:
        raise SpecError(f"{filename}: the YAML is nested too deeply (limit {MAX_DEPTH})") from None
    if root is None:
        raise SpecError("the spec is empty", Loc(filename, 1, 1))
    return _Builder(filename).build(root, 0)


def _syntax_error(e: yaml.MarkedYAMLError, text: str, filename: str) -> SpecError:
    """PyYAML's error, said for a person: a tab in the indentation is pointed at, an unclosed bracket is
    reported at its opening '[' or '{' (where the fix goes), not where the parser gave up."""
    mark, problem = e.problem_mark or e.context_mark, e.problem or ""
    def at(m: Any) -> Loc:
        return Loc(filename, m.line + 1, m.column + 1)
    if mark is not None and ("tab character" in problem or _char_at(text, mark) == "\t"):
        return SpecError("invalid YAML: a tab character in the indentation; YAML indents with spaces only",
                         at(mark), "replace the tab with spaces (specs usually indent by 2 per level)")
    opening = None
    if e.context in ("while parsing a flow sequence", "while parsing a flow mapping"):
        opening = e.context_mark                # PyYAML's context mark is the opening bracket
    elif e.context == "while parsing a flow node" and mark is not None:
        opening = _unclosed_bracket(text, mark)   # the end of the file inside a flow collection
    if opening is not None:
        bracket = _char_at(text, opening)
        if bracket in ("[", "{"):
            close = "]" if bracket == "[" else "}"
            found = _token_at(text, mark) if e.problem_mark is not None else ""
            where = ("the end of the file" if not found and _at_end(text, mark)
                     else f"'{_clip(found, 20)}' at line {mark.line + 1}, column {mark.column + 1}")
            return SpecError(f"invalid YAML: this '{bracket}' is not closed (expected ',' or '{close}', found "
                             f"{where})", at(opening),
                             f"close it with '{close}', or put the missing ',' between its items")
    if e.problem_mark is not None and _char_at(text, e.problem_mark) in ("]", "}") and \
            _unclosed_bracket(text, e.problem_mark) is None:      # `[{linear: 2}]]`: one bracket too many
        stray = _char_at(text, e.problem_mark)
        opener = "[" if stray == "]" else "{"
        return SpecError(f"invalid YAML: this '{stray}' closes nothing (no '{opener}' is open here)",
                         at(e.problem_mark), "remove it, or add the opening bracket it was meant to close")
    at_end = mark is not None and _at_end(text, mark)
    if e.context_mark is not None and (at_end or e.problem_mark is None):
        mark = e.context_mark                   # an error at the end of the file: point where it began
    what = f"{e.context}: {e.problem}" if e.context and e.problem else (e.problem or e.context)
    return SpecError(f"invalid YAML: {what}", at(mark) if mark else None)


def _char_at(text: str, mark: Any) -> str:
    rows = text.splitlines()
    if not 0 <= mark.line < len(rows) or not 0 <= mark.column < len(rows[mark.line]):
        return ""
    return rows[mark.line][mark.column]


def _token_at(text: str, mark: Any) -> str:
    """The text at `mark` up to a space or a flow indicator (at least its first character)."""
    rows = text.splitlines()
    row = rows[mark.line][mark.column:] if 0 <= mark.line < len(rows) else ""
    m = re.match(r"[^\s,\[\]{}:]+", row)
    return m.group(0) if m else row[:1]


def _at_end(text: str, mark: Any) -> bool:
    return not text[mark.index:].strip() if 0 <= mark.index <= len(text) else True


def _unclosed_bracket(text: str, mark: Any) -> Any:
    """The innermost '[' or '{' still open at `mark`, found by a small scan of the flow collections
    (quotes and comments skipped); None when the scan finds none."""
    stack: list[Any] = []
    line = col = 0
    quote, comment, prev = "", False, "\n"
    for i, ch in enumerate(text[:mark.index]):
        if ch == "\n":
            line, col, comment, prev = line + 1, 0, False, ch
            continue
        if comment:
            pass
        elif quote:
            quote = "" if ch == quote else quote
        elif ch == "#" and prev in " \t\n":
            comment = True
        elif ch in "'\"" and (stack or prev in " \t\n:-[{,"):
            quote = ch
        elif ch in "[{" and (stack or prev in " \t\n:-"):
            stack.append(yaml.Mark("", i, line, col, None, None))
        elif ch in "]}" and stack:
            stack.pop()
        prev, col = ch, col + 1
    return stack[-1] if stack else None


def load_value(text: str, what: str = "<value>") -> Any:
    """A small YAML value (a `--set` value) with the spec's limits on nesting, aliases and numbers.
    Text that is not valid YAML is kept as a string; a refused value raises SpecError."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    except RecursionError:
        raise SpecError(f"{what}: the value is nested too deeply (limit {MAX_DEPTH})") from None
    return None if root is None else _Builder(what).build(root, 0)


class _Builder:
    def __init__(self, filename: str):
        self.filename = filename
        self.sizes: dict[int, int] = {}      # id(yaml node) -> values in its subtree, once built
        self.aliased = 0

    def loc(self, node: yaml.Node) -> Loc:
        return Loc(self.filename, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, depth: int) -> Any:
        seen = self.sizes.get(id(node))
        if seen is not None:                 # an alias: its subtree is copied again
            self.aliased += seen
            if self.aliased > MAX_ALIASED:
                raise SpecError(f"aliases expand the document by more than {MAX_ALIASED:,} values "
                                "(a 'billion laughs' document?)", self.loc(node))
        before = self.aliased
        value = self._build(node, depth)
        if seen is None:
            self.sizes[id(node)] = 1 + _size(value)
        self.aliased = max(self.aliased, before)
        return value

    def _build(self, node: yaml.Node, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise SpecError(f"the YAML is nested more than {MAX_DEPTH} levels deep", self.loc(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in (_MAP, _SEQ):
            raise SpecError(f"unsupported YAML tag '{node.tag}'", self.loc(node),
                            "specs hold plain maps, lists and scalars only")
        if isinstance(node, yaml.MappingNode):
            out = SMap(self.loc(node))
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    raise SpecError("YAML merge keys ('<<') are not supported in specs", self.loc(knode))
                key = self.build(knode, depth + 1)
                if isinstance(key, (list, dict)):
                    raise SpecError("a mapping key must be a plain value", self.loc(knode))
                if key in out:
                    raise SpecError(f"duplicate key '{key}'", self.loc(knode),
                                    hint=f"'{key}' is first given at line {out.key_locs[key].line}")
                out[key] = self.build(vnode, depth + 1)
                out.locs[key] = self.loc(vnode)
                out.key_locs[key] = self.loc(knode)
            return out
        if isinstance(node, yaml.SequenceNode):
            out = SList(self.loc(node))
            for item in node.value:
                out.append(self.build(item, depth + 1))
                out.locs.append(self.loc(item))
            return out
        value = self.scalar(node)
        if isinstance(value, str) and not node.style and node.tag == _STR and _FLOAT.match(value):
            value = float(value)
        if not isinstance(value, (str, int, float, bool, type(None))):
            value = str(value) if not isinstance(value, bytes) else value.decode("utf-8", "replace")
        return value


    def scalar(self, node: yaml.Node) -> Any:
        """A scalar through PyYAML's safe constructors; what they reject is a SpecError at its position."""
        text = node.value if isinstance(node.value, str) else ""
        kind = _KINDS.get(str(node.tag).rsplit(":", 1)[-1], "")
        if kind == "integer" and len(text.replace("_", "").lstrip("+-0")) > 19:
            raise SpecError(f"integer {_clip(text)} is larger than the limit: integers lie between -2**63 and "
                            "2**63", self.loc(node))
        try:
            value = _constructor.construct_object(node, deep=False)
        except yaml.constructor.ConstructorError as e:
            raise SpecError(f"unsupported YAML value: {e.problem}", self.loc(node)) from None
        except (ValueError, KeyError, TypeError, OverflowError, ArithmeticError, AttributeError, IndexError) as e:
            # AttributeError: PyYAML's timestamp constructor on an explicit !!timestamp that is not a date;
            # IndexError: its float constructor on an empty explicit `!!float` (tools/fuzz.py)
            reason = {"integer": "not an integer", "boolean": "not true or false",
                      "number": "not a number", "date": "not a date (YYYY-MM-DD)"}.get(kind, str(e))
            if kind == "date" and isinstance(e, ValueError):   # a date out of range: datetime says which part
                reason = str(e)
            raise SpecError(f"invalid YAML {kind or 'value'} '{_clip(text)}': {reason}", self.loc(node),
                            "quote it to make it a string" if kind in ("date", "boolean") else None) from None
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > limits.INT_BITS:
            raise SpecError(f"integer {_clip(text)} is larger than the limit: integers lie between -2**63 and "
                            "2**63", self.loc(node))
        return value


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else f"{text[:n - 3]}... ({len(text):,} characters)"


def _size(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 + _size(v) for v in value.values())
    if isinstance(value, list):
        return sum(1 + _size(v) for v in value)
    return 0


def locate(tree: Any, path: tuple | list) -> Loc | None:
    """The location of the value at `path` (keys and indices) in a loaded tree, or the deepest parent's."""
    loc = getattr(tree, "loc", None)
    node = tree
    for part in path:
        if isinstance(node, SMap) and part in node:
            loc, node = node.locs.get(part, loc), node[part]
        elif isinstance(node, SList) and isinstance(part, int) and 0 <= part < len(node):
            loc, node = node.locs[part], node[part]
        else:
            break
    return loc
