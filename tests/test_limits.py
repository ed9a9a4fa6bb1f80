"""Hard limits (compiler/limits.py) and the command line's last line of defence (cli.main.main).

Spec-shaped cases live in the bad-spec corpus (tests/specs/bad/); this file covers what a corpus file
cannot: `--set` values, the expression work budget, limits lowered to reach them cheaply, the one-line
internal error with exit 3 and --debug, a full stdout and Ctrl-C.
"""
from __future__ import annotations

import errno
import io
import subprocess
import sys
from pathlib import Path

import pytest

import cli.check as cli_check
import cli.main as cli
from compiler import compile_text, limits
from compiler.errors import SpecError
from compiler.expr import ExprError, check_value, evaluate
from compiler.summary import human

ROOT = Path(__file__).resolve().parent.parent
HEAD = "specc: 1\nname: t\ninputs: {x: [N, 4]}\n"
unguarded_main = getattr(cli.main, "__wrapped__", cli.main)      # conftest fails a test on exit 3


def check(tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = cli.main(["check", str(spec), *args])
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue() + err.getvalue()


# -- the two sloppy specs the pre-stop hook runs: a message, fast ----------------------------------
@pytest.mark.parametrize("layer, message", [
    ("{op: linear, out_features: 2001-13-45}", "invalid YAML date '2001-13-45'"),
    ("{op: linear, out_features: 4, repeat: 100000000}", "repeat 100,000,000 is larger than the limit"),
])
def test_sloppy_specs_end_in_a_message(tmp_path, layer, message):
    code, out = check(tmp_path, HEAD + f"layers: [{layer}]\noutputs: [linear_1]\n")
    assert code == 1 and message in out and "Traceback" not in out


# -- --set values get the spec's limits ---------------------------------------------------------------
BOMB = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"b{i}: &b{i} [{', '.join(['*a' if i == 1 else f'*b{i - 1}'] * 10)}]\n" for i in range(1, 9))


@pytest.mark.parametrize("value, message", [
    ("2001-13-45", "invalid YAML date '2001-13-45': month must be in 1..12"),
    ("!!int abc", "invalid YAML integer 'abc'"),
    ("!!bool maybe", "invalid YAML boolean 'maybe'"),
    ("9" * 5000, "larger than the limit"),
    ("&a [1, *a]", "nested more than 100 levels"),
    (BOMB, "billion laughs"),
    ("'" + "x" * 20_000 + "'", "longer than the limit of 10,000"),
    ("[" * 5000 + "]" * 5000, None),           # libyaml refuses the depth: kept as text (the param is unused)
])
def test_set_values_are_limited(tmp_path, value, message):
    code, out = check(tmp_path, HEAD + "params: {p: 1}\nlayers: [relu]\n", "--set", f"p={value}")
    assert "Traceback" not in out
    if message is None:
        assert code in (0, 2)
    else:
        assert code == 2 and "--set p: " in out and message in out


def test_set_value_within_limits_is_used(tmp_path):
    code, out = check(tmp_path, HEAD + "params: {w: 1}\nlayers: [{op: linear, out_features: '${w}'}]\n",
                      "--set", "w=7")
    assert code == 0 and "N×7" in out


# -- the expression evaluator: values and work --------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("2 ** 63", "larger than the limit"),
    ("-(2 ** 63) - 1", "larger than the limit"),
    ("'%.5000f' % 1.0", "formatting width 5000"),
    ("'%(a)0999999999d' % 1", "formatting width"),
    ("'ab' * 6000", "string would be longer"),
    ("[[0] * 100] * 101", "list (nested lists counted) would be longer"),
    ("[['abcdefghij'] * 600] * 2", "would be longer"),
    ("(-8) ** 0.5", "of type complex is not allowed"),
    ("round(5, -10 ** 18)", "digits is beyond the limit"),
    ("float(2 ** 62) ** 64", "cannot compute"),
])
def test_expression_values_are_limited(text, message):
    with pytest.raises(ExprError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        evaluate(text, {})


def test_expression_work_is_counted():
    big = list(range(9_000))
    assert evaluate("b == b", {"b": big}) is True
    with pytest.raises(ExprError, match="steps of work"):
        evaluate(" and ".join(["b==b"] * 100), {"b": big})      # 100 comparisons of 9,000 items


def test_a_compilation_has_one_work_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "TOTAL_STEPS", 200_000)
    text = HEAD + ("params: {big: '${[0] * 9000}'}\n"
                   "layers: [{op: relu, repeat: 100, when: '${len(big) > index}'}]\n")
    code, out = check(tmp_path, text)
    assert code == 1 and "need more than 200,000 steps of work in all" in out


def test_check_value_refuses_what_no_expression_may_produce():
    check_value([1, [2, "abc"], {"k": 2 ** 62}])
    for bad in (2 ** 63, "x" * 10_001, [[0] * 5_000] * 3, object()):
        with pytest.raises(ExprError):
            check_value(bad)


# -- expansion limits, lowered so a test reaches them cheaply -----------------------------------------
def test_node_limit(monkeypatch):
    monkeypatch.setattr(limits, "NODES", 5)
    with pytest.raises(SpecError, match="more than 5 nodes") as e:
        compile_text(HEAD + "layers: [relu, relu, relu, relu, relu, relu, relu, relu]\n")
    assert len(e.value.diagnostics) == 1 and e.value.diagnostics[0].loc.line == 4


def test_layer_names_are_limited(tmp_path):
    """A 200,000-character name made `specc check` print over a million characters (tools/fuzz.py)."""
    ok = "a" * limits.NAME_CHARS
    compile_text(HEAD + f"layers: [{{op: relu, name: {ok}}}]\n")
    with pytest.raises(SpecError, match=f"has 200,000 characters, more than the limit of {limits.NAME_CHARS}") as e:
        compile_text(HEAD + f"layers: [{{op: relu, name: {'a' * 200_000}}}]\n")
    assert e.value.diagnostics[0].loc.line == 4
    code, out = check(tmp_path, HEAD + f"layers:\n  - {{op: relu, name: {'b' * 5000}}}\n")
    assert code == 1 and len(out) < 2_000


def test_symbols_and_input_names_are_limited():
    """A 200,000-character symbol in an input's shape was printed in every shape of the summary."""
    with pytest.raises(SpecError, match="the symbol 'aaaa.*' has 200,000 characters, more than the limit of 200"):
        compile_text("specc: 1\nname: t\ninputs: {x: [" + "a" * 200_000 + ", 4]}\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="invalid input name") as e:
        compile_text("specc: 1\nname: t\ninputs: {" + "x" * 1_000 + ": [N, 4]}\nlayers: [relu]\n")
    assert all(len(d.message) <= limits.MESSAGE_CHARS + 60 for d in e.value.diagnostics)
    compile_text("specc: 1\nname: t\ninputs: {" + "x" * limits.NAME_CHARS + ": [" + "N" * limits.NAME_CHARS
                 + ", 4]}\nlayers: [relu]\n")


def test_onnx_import_keeps_names_short():
    from compiler.onnx_import.writer import sanitise
    assert len(sanitise("/encoder/" + "layer" * 100 + "/MatMul")) <= 64


def test_error_count_and_message_length_are_limited(monkeypatch):
    monkeypatch.setattr(limits, "ERRORS", 3)
    layers = ", ".join(f"{{op: linear, in: x, out_features: '${{[{i}] * 9000}}'}}" for i in range(5))
    with pytest.raises(SpecError) as e:
        compile_text(HEAD + f"layers: [{layers}]\n")
    msgs = [d.message for d in e.value.diagnostics]
    assert len(msgs) == 4 and msgs[-1].startswith("2 more errors not shown")
    assert all(len(m) <= limits.MESSAGE_CHARS + 60 for m in msgs) and "characters cut" in msgs[0]


def test_huge_sizes_in_the_summary():
    assert human(10 ** 400, "B") == "1.00e400B" and human(123_456_789_012_345_678) == "1.23e17"
    assert human(2.5e20) == "2.50e+20" and human(1234) == "1.23k"
    with pytest.raises(SystemExit) as e:                          # argparse: a usage error
        cli.main(["check", str(ROOT / "specs" / "mlp.yaml"), "--batch", "9" * 400])
    assert e.value.code == 2


# -- the top level: internal errors, --debug, stdout, Ctrl-C ------------------------------------------
def test_an_internal_error_is_one_line_and_exit_3(monkeypatch, capsys):
    monkeypatch.delenv("SPECC_DEBUG", raising=False)

    def broken(args):
        raise RuntimeError("a bug\nover two lines")
    monkeypatch.setattr(cli_check, "cmd_check", broken)
    assert unguarded_main(["check", "x.yaml"]) == 3
    err = capsys.readouterr().err
    assert err == ("specc: internal error: RuntimeError: a bug over two lines — please report this "
                   "(run again with --debug for the traceback)\n")
    for argv in (["--debug", "check", "x.yaml"], ["check", "x.yaml", "--debug"]):
        assert unguarded_main(argv) == 3
        err = capsys.readouterr().err
        assert "Traceback" in err and "in broken" in err and err.rstrip().endswith("please report this")


def test_the_test_suite_fails_on_an_internal_error(monkeypatch):
    monkeypatch.setattr(cli_check, "cmd_check", lambda args: 1 / 0)
    with pytest.raises(pytest.fail.Exception, match="internal error"):
        cli.main(["check", "x.yaml"])


def test_interrupt_in_a_command(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_check, "cmd_check", interrupted)
    assert cli.main(["check", "x.yaml"]) == 130 and capsys.readouterr().err == "interrupted\n"


class FullFile(io.StringIO):
    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_stdout_is_a_clean_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", FullFile())
    assert cli.main(["check", str(ROOT / "specs" / "mlp.yaml")]) == 1
    assert capsys.readouterr().err == "error: cannot write the output: No space left on device\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_check_to_dev_full_and_ctrl_c_at_start_up():
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "cli", "check", "specs/mlp.yaml"], cwd=ROOT,
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr == "error: cannot write the output: No space left on device\n"
    # Ctrl-C while `python -m cli` is still importing (sys.argv[0] is "-m" then)
    code = "import sys; sys.argv[0] = '-m'; import compiler; raise KeyboardInterrupt"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and r.stderr == "interrupted\n"


@pytest.mark.parametrize("argv", [
    ["check", "a\0b.yaml"], ["check", "a" * 5000 + ".yaml"], ["graph", "specs/mlp.yaml", "-o", "x\0.dot"],
    ["compile", "specs/mlp.yaml", "-o", "x" * 300 + ".onnx"], ["schema", "-o", "x\0.json"],
])
def test_unusable_paths_on_the_command_line(argv, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_adaptive_pooling_to_a_huge_size_does_not_loop():
    g = compile_text("specc: 1\nname: t\ninputs: {x: [N, 3, 8, 8]}\n"
                     "layers: [{op: adaptive_avg_pool2d, output_size: 4611686018427387904}]\n")
    assert g.nodes[0].outputs["out"].shape[2:] == (2 ** 62, 2 ** 62)
