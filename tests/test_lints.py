"""The lint corpus (tests/specs/lint/*.yaml): `specc check` warns where each file says, exits 0, and with
`--werror` reports the same problems as errors (exit 1). `clean.yaml` holds every lint's near misses and
must not warn; neither may any spec in specs/.

Header comments, as in the bad-spec corpus (tests/test_bad_specs.py):

    # warn: LINE:COL SUBSTRING     a warning at LINE:COL whose text (message, notes, hint) contains SUBSTRING
    # hint: SUBSTRING              the previous warning's text also contains SUBSTRING
    # note: LINE:COL SUBSTRING     the previous warning has a note at LINE:COL containing SUBSTRING
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from compiler import compile_file
from cli.main import main
from compiler.overrides import load_graph
from compiler.lints import lint
from test_bad_specs import EXCERPT, POSITION

ROOT = Path(__file__).resolve().parent.parent
LINT = ROOT / "tests" / "specs" / "lint"
FILES = sorted(p for p in LINT.glob("*.yaml") if p.name != "clean.yaml")
DIRECTIVE = re.compile(r"^#\s*(warn|hint|note):\s*(.*)$")
HEAD = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<kind>warning|error|note): (?P<text>.*)$")


def expected(path: Path) -> list[dict]:
    out: list[dict] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        m = DIRECTIVE.match(raw)
        if not m:
            continue
        kind, rest = m.groups()
        if kind == "hint":
            out[-1]["texts"].append(rest)
            continue
        p = POSITION.match(rest)
        assert p, f"{path.name}: cannot parse '# {kind}: {rest}'"
        where = (int(p["line"]), int(p["col"]))
        if kind == "note":
            out[-1]["notes"].append((*where, p["text"]))
        else:
            out.append({"at": where, "texts": [p["text"]], "notes": []})
    return out


def run(*argv: str) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, err.getvalue()


def diagnostics(text: str, kind: str) -> list[dict]:
    """Each `kind` (warning/error) with its position, its text (source excerpts left out) and its notes."""
    found: list[dict] = []
    for ln in text.splitlines():
        m = HEAD.match(ln)
        if m and m["kind"] == kind:
            found.append({"at": (int(m["line"]), int(m["col"])), "text": ln, "notes": []})
        elif found and not EXCERPT.match(ln):
            if m and m["kind"] == "note":
                found[-1]["notes"].append((int(m["line"]), int(m["col"]), m["text"]))
            found[-1]["text"] += "\n" + ln
    return found


def test_corpus_has_a_file_per_lint():
    assert len(FILES) >= 4 and all(expected(p) for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_lint_warns_at_the_node(path: Path):
    want = expected(path)
    code, text = run("check", str(path))
    assert code == 0 and "Traceback" not in text, text
    got = diagnostics(text, "warning")
    assert len(got) == len(want), text
    for w, g in zip(want, got):
        assert g["at"] == w["at"], text
        for t in w["texts"]:
            assert t in g["text"], f"{t!r} not in:\n{g['text']}"
        for line, col, t in w["notes"]:
            assert any((line, col) == n[:2] and t in n[2] for n in g["notes"]), text
    code, text = run("check", "--werror", str(path))
    assert code == 1 and "warning:" not in text
    assert [e["at"] for e in diagnostics(text, "error")] == [w["at"] for w in want], text
    assert f"{len(want)} error" in text


def test_clean_spec_does_not_warn():
    code, text = run("check", "--werror", str(LINT / "clean.yaml"))
    assert code == 0 and "warning" not in text and "error" not in text, text


@pytest.mark.parametrize("path", sorted((ROOT / "specs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_specs_do_not_warn(path: Path):
    assert [d.message for d in lint(compile_file(path))] == []


def test_other_commands_warn_once_and_go_on(capsys, monkeypatch):
    """train/compile/run compile through load_graph: the warning is printed, not fatal, and only once per
    process (a sweep compiles its spec once per run)."""
    monkeypatch.setattr("compiler.lints._shown", set())
    path = str(LINT / "unused_head.yaml")
    for _ in range(3):
        g = load_graph(path)
        assert g.has_node("aux")
    assert capsys.readouterr().err.count("warning: linear 'aux'") == 1


def test_lints_do_not_fire_on_shared_weights():
    """A `call` reuses another node's parameters: those parameters are used when the original is."""
    from compiler import compile_text
    g = compile_text("""
specc: 1
name: shared
inputs: {a: [N, 4], b: [N, 4]}
layers:
  - {op: linear, name: enc, out_features: 3, in: a}
  - {call: enc, name: enc_b, in: b}
outputs: [enc]
""")
    assert lint(g) == []


def test_check_json_lists_the_warnings():
    import json
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        assert main(["check", "--json", str(LINT / "unused_head.yaml")]) == 0
    report = json.loads(out.getvalue())
    assert report["status"] == "ok" and report["errors"] == []
    [w] = report["warnings"]
    assert (w["line"], w["col"]) == (9, 5) and "linear 'aux' has 27 parameters" in w["message"] and w["hint"]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out := io.StringIO()):
        main(["check", "--json", str(LINT / "clean.yaml")])
    assert json.loads(out.getvalue())["warnings"] == []
