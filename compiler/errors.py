"""Errors that point at a place in a spec file, printed the way a compiler prints them."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True)
class Loc:
    """A position in a YAML file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass
class Diagnostic:
    message: str
    loc: Loc | None = None
    hint: str | None = None
    notes: list[tuple[Loc, str]] = field(default_factory=list)   # e.g. the block's use site

    def render(self, sources: dict[str, str] | None = None) -> str:
        head = f"{self.loc}: error: {self.message}" if self.loc else f"error: {self.message}"
        lines = [head]
        if self.loc:
            lines += _excerpt(self.loc, sources)
        for loc, text in self.notes:
            lines.append(f"{loc}: note: {text}")
            lines += _excerpt(loc, sources)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


def _excerpt(loc: Loc, sources: dict[str, str] | None) -> list[str]:
    text = (sources or {}).get(loc.file)
    if text is None:
        try:
            text = Path(loc.file).read_text(encoding="utf-8")
        except OSError:
            return []
    rows = text.splitlines()
    if not 1 <= loc.line <= len(rows):
        return []
    gutter = " " * len(str(loc.line))
    row, col = rows[loc.line - 1], loc.col
    if len(row) > EXCERPT_CHARS:               # a very long line: a window around the column
        start = max(0, min(col - 1 - EXCERPT_CHARS // 2, len(row) - EXCERPT_CHARS))
        row = ("..." if start else "") + row[start:start + EXCERPT_CHARS] + \
            ("..." if start + EXCERPT_CHARS < len(row) else "")
        col = col - start + (3 if start else 0)
    return [f" {loc.line} | {row}", f" {gutter} | {' ' * (col - 1)}^"]


EXCERPT_CHARS = 160


class SpecError(Exception):
    """One or more problems with a spec. Carries every diagnostic found so far."""

    def __init__(self, message: str | None = None, loc: Loc | None = None, hint: str | None = None,
                 *, diagnostics: Iterable[Diagnostic] | None = None):
        self.diagnostics: list[Diagnostic] = list(diagnostics or [])
        if message is not None:
            self.diagnostics.insert(0, Diagnostic(message, loc, hint))
        self.sources: dict[str, str] = {}
        super().__init__(self.diagnostics[0].message if self.diagnostics else "spec error")

    def render(self) -> str:
        return "\n".join(d.render(self.sources) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


class ShapeError(Exception):
    """Raised by an op's shape rule; the compiler adds the node's location.

    `attr` names the attribute at fault so the error can point at its YAML value.
    """

    def __init__(self, message: str, hint: str | None = None, attr: str | None = None):
        super().__init__(message)
        self.message, self.hint, self.attr = message, hint, attr


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str | None:
    """A 'did you mean' suffix for a misspelt name, or None when nothing is close (n: at most n names)."""
    unique = list(dict.fromkeys(str(c) for c in candidates if str(c) != str(word)))
    close = difflib.get_close_matches(str(word), unique, n=n, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


class UserError(Exception):
    """A problem with a file or flag the user gave (not a spec): printed as one message, exit `code`."""

    def __init__(self, message: str, hint: str | None = None, code: int = 1):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code

    def render(self) -> str:
        return f"error: {self.message}" + (f"\nhint: {self.hint}" if self.hint else "")
