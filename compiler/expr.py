"""The safe expression evaluator for "${...}" strings.

Expressions are parsed with `ast` and walked by a whitelist: literals, names in scope, arithmetic,
comparisons, boolean logic, conditional expressions, indexing/slicing, list literals, list comprehensions
(`[f(i) for i in range(n) if c]`: index tables such as Swin's relative positions), and the functions
min max abs round int float len log log2 ceil floor range shape. Nothing is ever passed to Python's eval.

Every value an expression produces is checked against compiler/limits.py (integer size, string
length, list items, formatting width) before the next step uses it, and the walk counts its work
(nodes visited plus items produced) against a budget per expression and one per compilation, so no
expression can hang the compiler or fill its memory.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any, Callable, Mapping

from . import limits

MAX_EXPONENT = limits.EXPONENT
MAX_LIST = limits.LIST_ITEMS
MAX_STR = limits.STR_CHARS
MAX_DEPTH = limits.EXPR_DEPTH
MAX_INT_BITS = limits.INT_BITS
MAX_TEXT = limits.EXPR_CHARS
_FORMAT = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\d+|\*)?(?:\.(\d+|\*)?)?[hlL]?[a-zA-Z%]")


class ExprError(Exception):
    """An expression that cannot be evaluated; the caller adds the location.

    `quiet`: it reads a name whose own expression already failed (and was reported): say nothing more."""

    def __init__(self, message: str, hint: str | None = None, quiet: bool = False):
        super().__init__(message)
        self.message, self.hint, self.quiet = message, hint, quiet


class _Failed:
    """The value of a param whose expression failed: reading it fails quietly (no cascade of errors)."""

    def __repr__(self) -> str:
        return "<failed>"


FAILED = _Failed()


class Budget:
    """The work left for every expression of one compilation (steps: nodes visited + items produced)."""

    def __init__(self, steps: int | None = None):
        self.total = self.left = limits.TOTAL_STEPS if steps is None else steps


_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
        ast.NotIn: lambda a, b: a not in b}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


def _log(x: Any, base: Any = None) -> float:
    """log(x) (natural) or log(x, base): a clear message for 0, a negative number or a bad base."""
    _positive("log", x)
    if base is None:
        return math.log(x)
    _positive("log", base, "its base")
    if base == 1:
        raise ExprError("log: the base cannot be 1")
    return math.log(x, base)


def _log2(x: Any) -> float:
    _positive("log2", x)
    return math.log2(x)


def _positive(fname: str, x: Any, what: str = "its argument") -> None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ExprError(f"{fname}: {what} must be a number, got {_clip(repr(x))}")
    if not x > 0:                             # 0, a negative number, nan
        raise ExprError(f"{fname}: {what} must be positive, got {_num_text(x)}",
                        hint="the logarithm is only defined for numbers above 0")


def _rounding(fn: Callable[[float], int]) -> Callable[[Any], int]:
    def run(x: Any) -> int:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ExprError(f"{fn.__name__}: its argument must be a number, got {_clip(repr(x))}")
        if isinstance(x, float) and not math.isfinite(x):
            raise ExprError(f"{fn.__name__}: cannot round {x!r} to an integer")
        return fn(x)
    return run


def _range(*args: Any) -> list[int]:
    """range(stop), range(start, stop[, step]) as a list, refused before it is built when longer than the
    list limit."""
    if not 1 <= len(args) <= 3 or any(isinstance(a, bool) or not isinstance(a, int) for a in args):
        raise ExprError("range takes 1 to 3 integers: range(stop), range(start, stop) or range(start, stop, step)")
    if len(args) == 3 and args[2] == 0:
        raise ExprError("range: the step cannot be 0")
    r = range(*args)
    try:
        n = len(r)
    except OverflowError:                     # more items than a C size: far beyond the limit anyway
        n = MAX_LIST + 1
    if n > MAX_LIST:
        raise ExprError(f"{_clip('range(' + ', '.join(map(str, args)) + ')')} would have more than {MAX_LIST:,} items, the list limit",
                        hint="a range is a list: it must fit the list limit")
    return list(r)


_FUNCS: dict[str, Callable] = {"min": min, "max": max, "abs": abs, "round": round, "int": int,
                               "float": float, "len": len, "log": _log, "log2": _log2,
                               "ceil": _rounding(math.ceil), "floor": _rounding(math.floor), "range": _range}
_ALLOWED = ", ".join(sorted(_FUNCS) + ["shape"])
# how the functions defined here are called, for a clear message when the number of arguments is wrong
# (Python's own would name the helper: "_rounding.<locals>.run() takes 1 positional argument")
_USAGE = {"log": (1, 2, "log(x) or log(x, base)"), "log2": (1, 1, "log2(x)"),
          "ceil": (1, 1, "ceil(x)"), "floor": (1, 1, "floor(x)")}


def evaluate(text: str, names: Mapping[str, Any], shape_of: Callable[[str], list] | None = None,
             budget: Budget | None = None) -> Any:
    """Evaluate one expression (the text inside ${...})."""
    if len(text) > MAX_TEXT:
        raise ExprError(f"expression longer than {MAX_TEXT} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"invalid expression '{text}': {e.msg}") from None
    except (ValueError, RecursionError, MemoryError):          # a NUL character; a parser stack overflow
        raise ExprError(f"invalid expression '{text[:80]}'") from None
    ev = _Eval(names, shape_of, budget)
    try:
        value = ev.visit(tree.body, 0)
        ev.measure(value)
    finally:
        if budget is not None:
            budget.left -= ev.steps
    return value


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def render(value: str, names: Mapping[str, Any], shape_of: Callable[[str], list] | None = None,
           budget: Budget | None = None) -> Any:
    """A "${...}" string: one whole expression keeps its type; otherwise pieces are interpolated."""
    parts = _split(value)
    if len(parts) == 1 and parts[0][0]:
        return evaluate(parts[0][1], names, shape_of, budget)
    out, size = [], 0
    for is_expr, t in parts:
        piece = _text(evaluate(t, names, shape_of, budget)) if is_expr else t
        size += len(piece)
        if size > MAX_STR:
            raise ExprError(f"the text built from '{_clip(value)}' is longer than the limit of {MAX_STR:,} characters")
        out.append(piece)
    return "".join(out)


def reads_name(value: Any, name: str) -> bool:
    """Whether a "${...}" string reads the name `name` (False for plain values and unparsable text)."""
    if not is_template(value) or len(value) > MAX_TEXT:
        return False
    try:
        parts = _split(value)
        trees = [ast.parse(t.strip(), mode="eval") for is_expr, t in parts if is_expr]
    except (ExprError, SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(n, ast.Name) and n.id == name for tree in trees for n in ast.walk(tree))


def _dashed_name(node: ast.AST) -> bool:
    """`block1-0` parsed as a subtraction of names and integers (a node name with '-', unquoted)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
        return _dashed_name(node.left) and _dashed_name(node.right)
    return isinstance(node, ast.Name) or isinstance(node, ast.Constant) and type(node.value) is int


def _text(value: Any) -> str:
    if isinstance(value, list) and _size(value, MAX_STR) > MAX_STR // 2:
        raise ExprError(f"a list of more than {MAX_STR // 2:,} items cannot be written into a string")
    return str(value)


def check_value(value: Any, what: str = "value") -> None:
    """Refuse a value beyond the limits (an int of more than 63 bits, a string of more than 10,000
    characters, a list of more than 10,000 items in all, a type that is not a spec value)."""
    _Eval({}, None, None).measure(value, what)


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def _size(value: Any, limit: int) -> int:
    """Characters in a string; items in a (nested) list or map, a string item counting its characters.
    Stops counting past `limit`, so a shared-reference structure is never walked in full."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, (list, dict)):
        return 1
    total, stack = 0, [value]
    while stack and total <= limit:
        v = stack.pop()
        for x in (v.values() if isinstance(v, dict) else v):
            total += max(len(x), 1) if isinstance(x, str) else 1
            if isinstance(x, (list, dict)):
                stack.append(x)
            if total > limit:
                break
    return total


def _split(value: str) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    i = 0
    while i < len(value):
        j = value.find("${", i)
        if j < 0:
            out.append((False, value[i:]))
            break
        if j > i:
            out.append((False, value[i:j]))
        depth, k = 1, j + 2
        while k < len(value) and depth:
            depth += {"{": 1, "}": -1}.get(value[k], 0)
            k += 1
        if depth:
            raise ExprError(f"unclosed '${{' in '{_clip(value)}'", hint="close the expression with '}'")
        out.append((True, value[j + 2:k - 1]))
        i = k
    return out


class _Eval:
    def __init__(self, names: Mapping[str, Any], shape_of: Callable[[str], list] | None, budget: Budget | None):
        self.names, self.shape_of, self.budget = names, shape_of, budget
        self.steps = 0
        self.allowed = limits.EXPR_STEPS if budget is None else min(limits.EXPR_STEPS, max(budget.left, 0))

    # -- limits -------------------------------------------------------------------------------
    def charge(self, n: int) -> None:
        self.steps += n
        if self.steps > self.allowed:
            if self.budget is not None and self.allowed < limits.EXPR_STEPS:
                raise ExprError(f"the spec's expressions need more than {self.budget.total:,} steps of work in all",
                                hint="an expression is evaluated once per use: fewer repeats or simpler "
                                "expressions")
            raise ExprError(f"the expression needs more than {limits.EXPR_STEPS:,} steps of work")

    def measure(self, value: Any, what: str = "result") -> Any:
        """Check a produced value against the limits; its size counts as work."""
        if isinstance(value, bool) or value is None or isinstance(value, float):
            self.charge(1)
        elif isinstance(value, int):
            self.charge(1)
            if value.bit_length() > MAX_INT_BITS:
                raise ExprError(f"integer {what} {_int_text(value)} is larger than the limit: integers lie between "
                                "-2**63 and 2**63")
        elif isinstance(value, str):
            self.charge(1 + len(value) // 64)
            if len(value) > MAX_STR:
                raise ExprError(f"string {what} of {len(value):,} characters is longer than the limit of "
                                f"{MAX_STR:,}")
        elif isinstance(value, (list, dict)):
            n = _size(value, MAX_LIST)
            self.charge(1 + min(n, MAX_LIST))
            if n > MAX_LIST:
                raise ExprError(f"list {what} has more than {MAX_LIST:,} items (nested lists counted), the limit")
        else:
            raise ExprError(f"{what} of type {type(value).__name__} is not allowed (numbers, strings, booleans, "
                            "null and lists only)")
        return value

    # -- the walk -----------------------------------------------------------------------------
    def visit(self, node: ast.AST, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ExprError(f"expression nested more than {MAX_DEPTH} levels deep")
        self.charge(1)
        method = getattr(self, "v_" + type(node).__name__, None)
        if method is None:
            raise ExprError(f"'{_clip(ast.unparse(node))}' is not allowed in an expression "
                            "(only literals, params, arithmetic, comparisons, and/or/not, if-else, indexing, "
                            f"lists, list comprehensions and the functions {_ALLOWED})")
        return method(node, depth + 1)

    def v_Constant(self, node: ast.Constant, d: int) -> Any:
        if isinstance(node.value, (int, float, str, bool)) or node.value is None:
            return self.measure(node.value, "constant")
        raise ExprError(f"constant {_clip(repr(node.value))} is not allowed")

    def v_Name(self, node: ast.Name, d: int) -> Any:
        if node.id in self.names:
            value = self.names[node.id]
            if value is FAILED:
                raise ExprError(f"'{node.id}' has an error", quiet=True)
            return value
        if node.id in ("true", "false", "True", "False"):
            return node.id.lower() == "true"
        from .errors import did_you_mean
        if node.id == "index":                # a repeated block's copy number does not reach its layers
            raise ExprError("unknown name 'index' in expression: index is the copy number of a layer with repeat, "
                            "in that layer's own expressions", hint="inside a block, pass it as a param: "
                            "{use: BLOCK, repeat: K, i: \"${index}\"} and read i")
        raise ExprError(f"unknown name '{node.id}' in expression",
                        hint=did_you_mean(node.id, list(self.names)) or
                        f"names in scope: {', '.join(sorted(self.names)) or 'none'}")

    def v_BinOp(self, node: ast.BinOp, d: int) -> Any:
        if type(node.op) not in _BIN:
            return self.visit_unknown(node)
        a, b = self.visit(node.left, d), self.visit(node.right, d)
        self.precheck(node.op, a, b)
        try:
            out = _BIN[type(node.op)](a, b)
        except ZeroDivisionError:
            raise ExprError("division by zero") from None
        except (TypeError, OverflowError, ValueError, MemoryError) as e:
            raise ExprError(f"cannot compute {_clip(ast.unparse(node))}: {e}") from None
        return self.measure(out)

    def precheck(self, op: ast.operator, a: Any, b: Any) -> None:
        """Refuse what would take too long or too much memory before Python computes it."""
        if isinstance(op, ast.Pow) and isinstance(b, (int, float)) and abs(b) > MAX_EXPONENT:
            raise ExprError(f"exponent {_num_text(b)} is larger than the limit {MAX_EXPONENT}")
        if isinstance(op, ast.Mult):
            seq, n = (a, b) if isinstance(a, (list, str)) else (b, a)
            if isinstance(seq, (list, str)) and isinstance(n, int) and n > 1:
                limit = MAX_STR if isinstance(seq, str) else MAX_LIST
                if n > limit or _size(seq, limit) * n > limit:
                    kind = "string" if isinstance(seq, str) else "list (nested lists counted)"
                    raise ExprError(f"the {kind} would be longer than the limit of {limit:,}")
        if isinstance(op, ast.Mod) and isinstance(a, str):
            for m in _FORMAT.finditer(a):
                for num in m.groups():
                    if num and num.isdigit() and (len(num) > 6 or int(num) > limits.FORMAT_WIDTH):
                        raise ExprError(f"formatting width {_clip(num, 12)} in '{_clip(a)}' is larger than the "
                                        f"limit {limits.FORMAT_WIDTH:,}")

    def v_UnaryOp(self, node: ast.UnaryOp, d: int) -> Any:
        if type(node.op) not in _UNARY:
            return self.visit_unknown(node)
        v = self.visit(node.operand, d)
        try:
            return self.measure(_UNARY[type(node.op)](v))
        except TypeError as e:
            raise ExprError(f"cannot compute {_clip(ast.unparse(node))}: {e}") from None

    def v_BoolOp(self, node: ast.BoolOp, d: int) -> Any:
        stop = (lambda v: not v) if isinstance(node.op, ast.And) else bool
        v = None
        for x in node.values:
            v = self.visit(x, d)
            if stop(v):
                return v
        return v

    def v_Compare(self, node: ast.Compare, d: int) -> Any:
        left = self.visit(node.left, d)
        for op_, right_node in zip(node.ops, node.comparators):
            right = self.visit(right_node, d)
            if type(op_) not in _CMP:
                raise ExprError(f"operator '{type(op_).__name__}' is not allowed")
            self.charge(_size(left, MAX_LIST) + _size(right, MAX_LIST))
            try:
                if not _CMP[type(op_)](left, right):
                    return False
            except (TypeError, RecursionError) as e:
                raise ExprError(f"cannot compare in {_clip(ast.unparse(node))}: {e}") from None
            left = right
        return True

    def v_IfExp(self, node: ast.IfExp, d: int) -> Any:
        return self.visit(node.body, d) if self.visit(node.test, d) else self.visit(node.orelse, d)

    def v_List(self, node: ast.List | ast.Tuple, d: int) -> Any:
        if len(node.elts) > MAX_LIST:
            raise ExprError(f"list longer than the limit {MAX_LIST}")
        return self.measure([self.visit(e, d) for e in node.elts])

    v_Tuple = v_List

    def v_ListComp(self, node: ast.ListComp, d: int) -> Any:
        """[elt for name in list if cond ...]: each `for` binds one name over a list; the names it binds
        shadow params inside the comprehension only. Every item is work, and the result a list within limits."""
        out: list = []
        scope = self.names
        try:
            self._comprehend(node, 0, d, out)
        finally:
            self.names = scope
        return self.measure(out)

    def _comprehend(self, node: ast.ListComp, k: int, d: int, out: list) -> None:
        if k == len(node.generators):
            out.append(self.visit(node.elt, d))
            if len(out) > MAX_LIST:
                raise ExprError(f"the list comprehension would have more than {MAX_LIST:,} items, the list limit")
            return
        g = node.generators[k]
        if not isinstance(g.target, ast.Name) or g.is_async:
            raise ExprError(f"'for {_clip(ast.unparse(g.target))} in ...' is not allowed: a comprehension's "
                            "`for` binds one name", hint="write [f(i) for i in range(n)]")
        items = self.visit(g.iter, d)
        if not isinstance(items, list):
            raise ExprError(f"a comprehension goes over a list (such as range(n)), not over "
                            f"{_clip(repr(items))}")
        scope = self.names
        local = dict(scope)                     # one copy per loop, its name rebound per item (ChainMap is slower)
        self.names = local
        for item in items:
            local[g.target.id] = item
            if all(self.visit(c, d) for c in g.ifs):
                self._comprehend(node, k + 1, d, out)      # an inner loop leaves self.names as `local`
        self.names = scope

    def v_Subscript(self, node: ast.Subscript, d: int) -> Any:
        base = self.visit(node.value, d)
        try:
            if isinstance(node.slice, ast.Slice):
                s = node.slice
                parts = [None if p is None else self.visit(p, d) for p in (s.lower, s.upper, s.step)]
                return self.measure(base[slice(*parts)])
            idx = self.visit(node.slice, d)
            return base[idx]
        except (IndexError, KeyError, TypeError, ValueError, OverflowError) as e:
            what = "slice" if isinstance(node.slice, ast.Slice) else "index"
            raise ExprError(f"cannot {what} in {_clip(ast.unparse(node))}: {e}") from None

    def v_Call(self, node: ast.Call, d: int) -> Any:
        if not isinstance(node.func, ast.Name) or node.keywords:
            if isinstance(node.func, ast.Attribute):
                raise ExprError(f"'{_clip(ast.unparse(node.func))}' is not allowed: no attribute access or method "
                                "calls in expressions")
            raise ExprError(f"only calls of {_ALLOWED} are allowed, with positional arguments")
        fname = node.func.id
        if fname == "shape":
            if self.shape_of is None or len(node.args) != 1:
                raise ExprError("shape(ref) takes one reference (a node or input name)")
            arg = node.args[0]
            if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Sub) and _dashed_name(arg):
                text = ast.unparse(arg).replace(" ", "")
                raise ExprError(f"shape({ast.unparse(arg)}) subtracts; a node name with '-' is quoted in an "
                                f"expression", hint=f"write shape('{text}')")
            ref = arg.id if isinstance(arg, ast.Name) else self.visit(arg, d)
            if not isinstance(ref, str):
                raise ExprError("shape(ref) takes a node or input name")
            return self.shape_of(ref)
        if fname not in _FUNCS:
            from .errors import did_you_mean
            raise ExprError(f"function '{fname}' is not allowed",
                            hint=did_you_mean(fname, list(_FUNCS) + ["shape"]) or f"allowed: {_ALLOWED}")
        args = [self.visit(a, d) for a in node.args]
        if fname == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > MAX_EXPONENT:
            raise ExprError(f"round: {_num_text(args[1])} digits is beyond the limit {MAX_EXPONENT}")
        usage = _USAGE.get(fname)
        if usage and not usage[0] <= len(args) <= usage[1]:
            raise ExprError(f"{fname} takes {'one argument' if usage[1] == 1 else '1 or 2 arguments'}, "
                            f"got {len(args)}: {_clip(ast.unparse(node))}", hint=f"write {usage[2]}")
        self.charge(sum(_size(a, MAX_LIST) for a in args))
        try:
            return self.measure(_FUNCS[fname](*args))
        except (TypeError, ValueError, OverflowError) as e:
            raise ExprError(f"cannot compute {_clip(ast.unparse(node))}: {e}") from None

    def v_Attribute(self, node: ast.Attribute, d: int) -> Any:
        raise ExprError(f"'{_clip(ast.unparse(node))}' is not allowed: no attribute access in expressions")

    def visit_unknown(self, node: ast.AST) -> Any:
        raise ExprError(f"'{_clip(ast.unparse(node))}' is not allowed in an expression "
                        "(only literals, params, arithmetic, comparisons, and/or/not, if-else, indexing, "
                        f"lists and the functions {_ALLOWED})")


def _int_text(value: int) -> str:
    """A huge int written briefly: its sign and number of digits, never all of them."""
    if value.bit_length() <= 200:
        return str(value)
    digits = int(value.bit_length() * 0.30103) + 1
    return f"{'-' if value < 0 else ''}(about {digits:,} digits)"


def _num_text(value: int | float) -> str:
    return _int_text(value) if isinstance(value, int) else repr(value)
