"""The bad-spec corpus (tests/specs/bad/*.yaml): `specc check` must report each problem where it is.

Each file states what the compiler must print, in header comments:

    # expect: LINE:COL SUBSTRING        an error at LINE:COL of this file whose text (message, hint,
                                        notes) contains SUBSTRING; `# expect: other.yaml:LINE:COL ...`
                                        names a position in another file (relative to this one)
    # hint: SUBSTRING                   the previous expected error's text also contains SUBSTRING
    # note: LINE:COL SUBSTRING          the previous expected error has a note at LINE:COL (a block's use site)
    # known-bug: WHAT                   the compiler does not do this right yet: the test is an expected
                                        failure until it does (then it fails, asking to drop this line)

Every run must exit 1 without a traceback, print exactly as many errors as there are `# expect:` lines,
and never offer the same name twice in one "did you mean" hint.
"""
from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli.main import main

BAD = Path(__file__).resolve().parent / "specs" / "bad"
FILES = sorted(BAD.glob("*.yaml"))
HEADER = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<kind>error|note): (?P<text>.*)$")
DIRECTIVE = re.compile(r"^#\s*(expect|hint|note|known-bug):\s*(.*)$")
EXCERPT = re.compile(r"^ +\d* \| ")
POSITION = re.compile(r"^(?:(?P<path>\S+\.ya?ml):)?(?P<line>\d+):(?P<col>\d+)\s+(?P<text>.+)$")


@dataclass
class Expected:
    path: Path
    line: int
    col: int
    text: str
    hints: list[str] = field(default_factory=list)
    notes: list[tuple[int, int, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}:{self.col} {self.text!r}"


@dataclass
class Diagnostic:
    path: Path
    line: int
    col: int
    lines: list[str]

    @property
    def text(self) -> str:
        """Message, notes and hint: the quoted source lines (` 14 | ...` and the caret) left out."""
        return "\n".join(ln for ln in self.lines if not EXCERPT.match(ln))

    def notes(self) -> list[tuple[int, int, str]]:
        out = []
        for ln in self.lines[1:]:
            m = HEADER.match(ln)
            if m and m["kind"] == "note":
                out.append((int(m["line"]), int(m["col"]), m["text"]))
        return out


def parse_header(path: Path) -> tuple[list[Expected], str | None]:
    expected: list[Expected] = []
    bug = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        m = DIRECTIVE.match(raw.strip())
        if not m:
            continue
        kind, rest = m.groups()
        if kind == "known-bug":
            bug = rest
            continue
        if kind == "hint":
            assert expected, f"{path.name}: '# hint:' before any '# expect:'"
            expected[-1].hints.append(rest)
            continue
        p = POSITION.match(rest)
        assert p, f"{path.name}: cannot parse '# {kind}: {rest}' (want LINE:COL TEXT)"
        if kind == "note":
            assert expected, f"{path.name}: '# note:' before any '# expect:'"
            expected[-1].notes.append((int(p["line"]), int(p["col"]), p["text"]))
        else:
            target = (path.parent / p["path"]).resolve() if p["path"] else path.resolve()
            expected.append(Expected(target, int(p["line"]), int(p["col"]), p["text"]))
    return expected, bug


def parse_output(text: str) -> tuple[list[Diagnostic], int | None]:
    diags: list[Diagnostic] = []
    total = None
    for ln in text.splitlines():
        m = HEADER.match(ln)
        if m and m["kind"] == "error":
            diags.append(Diagnostic(Path(m["path"]).resolve(), int(m["line"]), int(m["col"]), [ln]))
            continue
        if ln.startswith("error: "):                     # an error without a position
            diags.append(Diagnostic(Path(), 0, 0, [ln]))
            continue
        s = re.match(r"^(?P<path>.+): (?P<n>\d+) errors?$", ln)
        if s and not ln.startswith((" ", "hint:")):
            total = int(s["n"])
            continue
        if diags:
            diags[-1].lines.append(ln)
    return diags, total


def check(path: Path) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(["check", str(path)])
        except SystemExit as e:                             # argparse
            code = e.code
    return code, err.getvalue() + out.getvalue()


def problems(path: Path, expected: list[Expected]) -> tuple[list[str], str]:
    code, output = check(path)
    found: list[str] = []
    if "Traceback" in output:
        found.append("a Python traceback was printed")
    if code != 1:
        found.append(f"exit code {code}, expected 1")
    diags, total = parse_output(output)
    for e in expected:
        at = [d for d in diags if (d.path, d.line, d.col) == (e.path, e.line, e.col)]
        if not at:
            where = ", ".join(f"{d.path.name}:{d.line}:{d.col}" for d in diags) or "none"
            found.append(f"no error at {e.path.name}:{e.line}:{e.col} (errors at: {where})")
            continue
        for text in [e.text] + e.hints:
            if not any(text in d.text for d in at):
                found.append(f"the error at {e.line}:{e.col} does not say {text!r}")
        for line, col, text in e.notes:
            if not any((line, col) == (nl, nc) and text in nt for d in at for nl, nc, nt in d.notes()):
                found.append(f"the error at {e.line}:{e.col} has no note at {line}:{col} saying {text!r}")
    if len(diags) != len(expected):
        found.append(f"{len(diags)} errors printed, {len(expected)} expected")
    if total is not None and total != len(diags):
        found.append(f"the summary says {total} errors but {len(diags)} were printed")
    for m in re.finditer(r"did you mean (.*)\?", output):
        names = re.findall(r"'([^']*)'", m.group(1))
        if len(names) != len(set(names)):
            found.append(f"a suggestion repeats a name: {m.group(0)!r}")
    if "''s " in output:
        found.append("a message splices a quoted node name into a possessive (\"'name''s\")")
    return found, output


def test_corpus_is_large_and_every_file_states_its_errors():
    assert len(FILES) >= 40
    for path in FILES:
        expected, _ = parse_header(path)
        assert expected, f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_spec(path: Path):
    expected, bug = parse_header(path)
    found, output = problems(path, expected)
    if bug is not None:
        if found:
            pytest.xfail(f"known compiler bug: {bug}")
        pytest.fail(f"{path.name} now passes: the known bug is fixed, remove its '# known-bug:' line")
    assert not found, "\n".join(found) + "\n--- specc check printed:\n" + output


def test_errors_render_the_source_line_and_a_caret():
    _, output = check(BAD / "channel_mismatch.yaml")
    lines = output.splitlines()
    i = next(i for i, ln in enumerate(lines) if ": error: conv2d 'conv2'" in ln)
    assert "in_channels: 16" in lines[i + 1] and lines[i + 2].rstrip().endswith("^")
    assert lines[i + 1].index("16") == lines[i + 2].index("^")     # the caret sits under the value
