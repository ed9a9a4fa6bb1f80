"""The safe expression evaluator for "${...}" strings.

Expressions are parsed with `ast` and walked by a whitelist: literals, names in scope, arithmetic,
comparisons, boolean logic, conditional expressions, indexing/slicing, list literals, and the
functions min max abs round int float len shape. Nothing is ever passed to Python's eval.
"""
from __future__ import annotations

import ast
import operator
from typing import Any, Callable, Mapping

MAX_EXPONENT = 64
MAX_LIST = 10_000
MAX_DEPTH = 32
MAX_INT_BITS = 256
MAX_TEXT = 1000


class ExprError(Exception):
    """An expression that cannot be evaluated; the caller adds the location."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
        ast.NotIn: lambda a, b: a not in b}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_FUNCS: dict[str, Callable] = {"min": min, "max": max, "abs": abs, "round": round, "int": int,
                               "float": float, "len": len}


def evaluate(text: str, names: Mapping[str, Any], shape_of: Callable[[str], list] | None = None) -> Any:
    """Evaluate one expression (the text inside ${...})."""
    if len(text) > MAX_TEXT:
        raise ExprError(f"expression longer than {MAX_TEXT} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"invalid expression '{text}': {e.msg}") from None
    return _Eval(names, shape_of).visit(tree.body, 0)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def render(value: str, names: Mapping[str, Any], shape_of: Callable[[str], list] | None = None) -> Any:
    """A "${...}" string: one whole expression keeps its type; otherwise pieces are interpolated."""
    parts = _split(value)
    if len(parts) == 1 and parts[0][0]:
        return evaluate(parts[0][1], names, shape_of)
    return "".join(str(evaluate(t, names, shape_of)) if is_expr else t for is_expr, t in parts)


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
            raise ExprError(f"unclosed '${{' in '{value}'", hint="close the expression with '}'")
        out.append((True, value[j + 2:k - 1]))
        i = k
    return out


class _Eval:
    def __init__(self, names: Mapping[str, Any], shape_of: Callable[[str], list] | None):
        self.names, self.shape_of = names, shape_of

    def visit(self, node: ast.AST, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ExprError(f"expression nested more than {MAX_DEPTH} levels deep")
        d = depth + 1
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float, str, bool)) or node.value is None:
                return node.value
            raise ExprError(f"constant {node.value!r} is not allowed")
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            if node.id in ("true", "false", "True", "False"):
                return node.id.lower() == "true"
            from .errors import did_you_mean
            raise ExprError(f"unknown name '{node.id}' in expression",
                            hint=did_you_mean(node.id, list(self.names)) or
                            f"names in scope: {', '.join(sorted(self.names)) or 'none'}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            a, b = self.visit(node.left, d), self.visit(node.right, d)
            if isinstance(node.op, ast.Pow) and isinstance(b, (int, float)) and abs(b) > MAX_EXPONENT:
                raise ExprError(f"exponent {b} is larger than the limit {MAX_EXPONENT}")
            if isinstance(node.op, ast.Mult) and (isinstance(a, (list, str)) or isinstance(b, (list, str))):
                n = b if isinstance(a, (list, str)) else a
                if isinstance(n, int) and n * len(a if isinstance(a, (list, str)) else b) > MAX_LIST:
                    raise ExprError(f"list or string longer than the limit {MAX_LIST}")
            try:
                out = _BIN[type(node.op)](a, b)
            except ZeroDivisionError:
                raise ExprError("division by zero") from None
            except (TypeError, OverflowError, ValueError) as e:
                raise ExprError(f"cannot compute {ast.unparse(node)}: {e}") from None
            if isinstance(out, int) and out.bit_length() > MAX_INT_BITS:
                raise ExprError(f"integer result larger than 2**{MAX_INT_BITS}")
            if isinstance(out, list) and len(out) > MAX_LIST:
                raise ExprError(f"list longer than the limit {MAX_LIST}")
            return out
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            v = self.visit(node.operand, d)
            try:
                return _UNARY[type(node.op)](v)
            except TypeError as e:
                raise ExprError(f"cannot compute {ast.unparse(node)}: {e}") from None
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                v = True
                for x in node.values:
                    v = self.visit(x, d)
                    if not v:
                        return v
                return v
            v = False
            for x in node.values:
                v = self.visit(x, d)
                if v:
                    return v
            return v
        if isinstance(node, ast.Compare):
            left = self.visit(node.left, d)
            for op_, right_node in zip(node.ops, node.comparators):
                right = self.visit(right_node, d)
                if type(op_) not in _CMP:
                    raise ExprError(f"operator '{type(op_).__name__}' is not allowed")
                try:
                    if not _CMP[type(op_)](left, right):
                        return False
                except TypeError as e:
                    raise ExprError(f"cannot compare in {ast.unparse(node)}: {e}") from None
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.visit(node.body, d) if self.visit(node.test, d) else self.visit(node.orelse, d)
        if isinstance(node, ast.List | ast.Tuple):
            if len(node.elts) > MAX_LIST:
                raise ExprError(f"list longer than the limit {MAX_LIST}")
            return [self.visit(e, d) for e in node.elts]
        if isinstance(node, ast.Subscript):
            base = self.visit(node.value, d)
            if isinstance(node.slice, ast.Slice):
                s = node.slice
                parts = [None if p is None else self.visit(p, d) for p in (s.lower, s.upper, s.step)]
                try:
                    return base[slice(*parts)]
                except (TypeError, ValueError) as e:
                    raise ExprError(f"cannot slice in {ast.unparse(node)}: {e}") from None
            idx = self.visit(node.slice, d)
            try:
                return base[idx]
            except (IndexError, KeyError, TypeError) as e:
                raise ExprError(f"cannot index in {ast.unparse(node)}: {e}") from None
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.keywords:
                if isinstance(node.func, ast.Attribute):
                    raise ExprError(f"'{ast.unparse(node.func)}' is not allowed: no attribute access or method "
                                    "calls in expressions")
                raise ExprError(f"only calls of {', '.join(sorted(_FUNCS) + ['shape'])} are allowed, "
                                f"with positional arguments")
            fname = node.func.id
            if fname == "shape":
                if self.shape_of is None or len(node.args) != 1:
                    raise ExprError("shape(ref) takes one reference (a node or input name)")
                arg = node.args[0]
                ref = arg.id if isinstance(arg, ast.Name) else self.visit(arg, d)
                if not isinstance(ref, str):
                    raise ExprError("shape(ref) takes a node or input name")
                return self.shape_of(ref)
            if fname not in _FUNCS:
                from .errors import did_you_mean
                raise ExprError(f"function '{fname}' is not allowed",
                                hint=did_you_mean(fname, list(_FUNCS) + ["shape"]) or
                                f"allowed: {', '.join(sorted(_FUNCS) + ['shape'])}")
            args = [self.visit(a, d) for a in node.args]
            try:
                return _FUNCS[fname](*args)
            except (TypeError, ValueError) as e:
                raise ExprError(f"cannot compute {ast.unparse(node)}: {e}") from None
        if isinstance(node, ast.Attribute):
            raise ExprError(f"'{ast.unparse(node)}' is not allowed: no attribute access in expressions")
        raise ExprError(f"'{ast.unparse(node)}' is not allowed in an expression "
                        "(only literals, params, arithmetic, comparisons, and/or/not, if-else, indexing, "
                        "lists and min max abs round int float len shape)")
