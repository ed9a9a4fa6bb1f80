"""A spec file compiled with `--set key=value` overrides: what every command (and the Python API's
runtime.run, sweep, ...) calls to read the spec it is given."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from .errors import SpecError, UserError


FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs; each value is YAML read with the spec's limits (text that is not YAML
    stays a string). A malformed or oversized value is a usage error (exit 2)."""
    from .expr import ExprError, check_value
    from .load import load_value
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got '{clip(item)}'", code=2)
        key = key.strip()
        try:
            out[key] = load_value(value, f"--set {key}") if value.strip() else ""
            if isinstance(out[key], str) and FLOAT_RE.match(out[key]):
                out[key] = float(out[key])          # 3e-4 is a number, as in a spec (YAML 1.2)
            check_value(out[key])
        except SpecError as e:
            d = e.diagnostics[0]
            raise UserError(f"--set {clip(key)}: {d.message.removeprefix(f'--set {key}: ')}", d.hint,
                            code=2) from None
        except ExprError as e:
            raise UserError(f"--set {clip(key)}: {e.message}", e.hint, code=2) from None
    return out


def clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def load_graph(path: str, sets: Sequence[str] | None = None, werror: bool | None = None):
    from . import compile_file
    from .lints import report
    params = parse_set(sets)                # a malformed --set is a usage error (2), whatever the file
    try:
        exists, is_dir = Path(path).exists(), Path(path).is_dir()
    except (OSError, ValueError) as e:      # a NUL character, a name too long for the file system
        raise UserError(f"cannot read '{clip(path)}': {getattr(e, 'strerror', None) or e}") from None
    if not exists:
        raise UserError(f"no such spec file: '{path}'")
    if is_dir:
        raise UserError(f"'{path}' is a folder, not a spec file",
                        hint=f"check every spec in it with: python tools/shape_check.py {path}")
    g = compile_file(path, params=params)
    report(g, werror)                       # warnings (compiler/lints.py): printed once, or errors with --werror
    return g
