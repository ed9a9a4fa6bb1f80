"""Python source building blocks for the generated PyTorch file: constructor calls and literals.

Nothing here imports torch: `specc export-torch` writes a file without needing it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keyword


NO_DEFAULT = object()


@dataclass(frozen=True)
class Call:
    """A constructor call such as nn.Conv2d(3, 64, 7, stride=2). `args` are (name, value, positional,
    default); the names are the callee's parameter names, used to name a value that varies between block
    uses; an argument equal to its default is not written."""

    fn: str
    args: tuple[tuple[str, Any, bool, Any], ...] = ()

    def skeleton(self) -> tuple:
        return (self.fn, tuple((n, v.skeleton() if isinstance(v, Call) else "*", p) for n, v, p, _ in self.args))


class D:
    """A keyword argument with its default: D(stride, 1)."""

    def __init__(self, value: Any, default: Any):
        self.value, self.default = value, default


def call(fn: str, *pos: tuple[str, Any], **kw: Any) -> Call:
    """call("nn.Linear", ("in_features", 3), ("out_features", 4), bias=D(False, True))"""
    args = [(n, v, True, NO_DEFAULT) for n, v in pos]
    for n, v in kw.items():
        args.append((n, v.value, False, v.default) if isinstance(v, D) else (n, v, False, NO_DEFAULT))
    return Call(fn, tuple(args))


def _shown(v: Any, d: Any) -> bool:
    return d is NO_DEFAULT or isinstance(v, (Param, Call)) or type(v) is not type(d) or v != d


@dataclass(frozen=True)
class Param:
    """A value taken from the class's constructor parameter `name` (a hoisted, per-use value)."""

    name: str


def lit(v: Any) -> str:
    """Python source of a literal (tuples stay tuples, floats round-trip exactly)."""
    if isinstance(v, Param):
        return v.name
    if isinstance(v, Call):
        return render_call(v)
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        inner = ", ".join(lit(x) for x in v)
        if isinstance(v, tuple):
            return f"({inner},)" if len(v) == 1 else f"({inner})"
        return f"[{inner}]"
    return repr(v)


def render_call(c: Call, indent: str = "") -> str:
    shown = [a for a in c.args if _shown(a[1], a[3])]
    parts = [lit(v) if pos else f"{n}={lit(v)}" for n, v, pos, _ in shown]
    opener, closer = "(", ")"
    if c.fn in ("[]", "{}"):                  # a list or dict of modules (nn.ModuleList / nn.ModuleDict)
        opener, closer = c.fn
        if c.fn == "{}":
            parts = [f"{n!r}: {lit(v)}" for n, v, _, _ in shown]
    fn = "" if c.fn in ("[]", "{}") else c.fn
    one = f"{fn}{opener}{', '.join(parts)}{closer}"
    if len(one) + len(indent) <= 100:
        return one
    if not any(isinstance(v, Call) for _, v, _, _ in shown):
        return f"{fn}{opener}{wrap(parts, indent + '    ')}\n{indent}{closer}"
    inner = indent + "    "
    body = "".join(f"\n{inner}{p if not isinstance(v, Call) else (p[:-len(lit(v))] + render_call(v, inner))},"
                   for (_, v, _, _), p in zip(shown, parts))
    return f"{fn}{opener}{body}\n{indent}{closer}"


# names the generated code itself uses (plus the helpers', added by codegen): never a variable or class
def wrap(parts: list[str], indent: str, width: int = 100) -> str:
    """Comma-separated parts on continuation lines of at most `width` characters (each line starts with
    a newline and `indent`)."""
    lines: list[str] = []
    for p in parts:
        if lines and len(lines[-1]) + len(p) + 2 <= width:
            lines[-1] += f" {p},"
        else:
            lines.append(f"{indent}{p},")
    return "".join("\n" + ln for ln in lines)


RESERVED = {"self", "torch", "nn", "F", "math", "layer", "OrderedDict", "getattr", "super", "None", "True", "False"}


def ident(name: str, taken: set[str] | None = None) -> str:
    """A Python identifier for a node or input name (dots become underscores; digits get a prefix)."""
    s = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    if not s or s[0].isdigit():
        s = "x" + s
    if keyword.iskeyword(s) or s in RESERVED:
        s += "_"
    if taken is not None:
        base, k = s, 2
        while s in taken:
            s = f"{base}_{k}"
            k += 1
        taken.add(s)
    return s


def camel(name: str) -> str:
    parts = [p for p in "".join(ch if ch.isalnum() else "_" for ch in name).split("_") if p]
    s = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    return s if not s[0].isdigit() else "M" + s
