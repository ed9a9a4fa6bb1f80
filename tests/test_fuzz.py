"""Property-based robustness tests (issue 13): whatever the spec, `specc check` ends with exit 0, 1 or 2 and
no traceback within a time limit; a small generated spec that checks clean runs forward and backward in
the NumPy runtime with exactly the inferred shapes and dtypes, exports to ONNX that passes the checker,
and onnxruntime agrees with the runtime. Generators: tests/fuzz_gen.py; judging: tests/fuzz_oracle.py;
the long campaign: tools/fuzz.py; results: docs/robustness.md.

Profiles (env SPECC_FUZZ_PROFILE): `ci` (default) is derandomized with a fixed number of cases per test;
`long` draws fresh random cases, ten times as many (`SPECC_FUZZ_PROFILE=long pytest tests/test_fuzz.py`).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_gen
from fuzz_oracle import Hang, judge, judge_cli, time_limit

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20.0                      # seconds per step of a case (check, run, export) before it is a hang

# ci: no hypothesis deadline (a busy CI machine would make it flaky); the alarm in fuzz_oracle.time_limit
# (TIMEOUT per step) is the time limit, and a case past it is a "hang" finding
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=list(HealthCheck), print_blob=False)
settings.register_profile("long", derandomize=False, database=None, deadline=timedelta(seconds=60),
                          suppress_health_check=list(HealthCheck))
PROFILE = os.environ.get("SPECC_FUZZ_PROFILE", "ci")
SCALE = 10 if PROFILE == "long" else 1


def cases(n: int) -> settings:
    return settings(settings.get_profile(PROFILE), max_examples=n * SCALE)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def assert_robust(case: fuzz_gen.Case, folder: Path) -> None:
    code, findings = judge(case, folder, TIMEOUT)
    assert not findings, "\n\n".join(f"{f.kind}: {f.site}\n{f.command}\n{f.detail}" for f in findings) + \
        "\n\nthe case:\n" + case.describe()
    assert code in (0, 1, 2), case.describe()


# --------------------------------------------------------------------------------------------- properties
@cases(150)
@given(case=fuzz_gen.generated())
def test_generated_specs_check_then_run_and_export(case, folder):
    assert_robust(case, folder)


@cases(150)
@given(case=fuzz_gen.mutated())
def test_mutated_specs_give_a_message_not_a_traceback(case, folder):
    assert_robust(case, folder)


@cases(150)
@given(case=fuzz_gen.corrupted())
def test_corrupted_yaml_gives_a_message_not_a_traceback(case, folder):
    assert_robust(case, folder)


@cases(4)
@given(case=st.one_of(fuzz_gen.mutated(), fuzz_gen.corrupted()))
def test_the_command_line_in_a_subprocess(case, folder):
    """As a user runs it: a fresh interpreter, the real stdout/stderr, the exit status."""
    path = folder / "sub.yaml"
    path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
    p = subprocess.run([sys.executable, "-m", "cli", "check", str(path)] + [f"--set={s}" for s in case.sets],
                       cwd=ROOT, capture_output=True, timeout=60)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode in (0, 1, 2), err + case.describe()
    assert "Traceback" not in err, err + case.describe()
    assert p.returncode == 0 or err.strip(), "a failing check must say why"


# ----------------------------------------------------------------------------------------- the oracle
def test_the_time_limit_interrupts_a_busy_loop():
    t0 = time.monotonic()
    with pytest.raises(Hang):
        with time_limit(0.2):
            while True:
                pass
    assert time.monotonic() - t0 < 5


def test_an_escaping_exception_is_a_traceback_finding(monkeypatch, tmp_path):
    import cli.check as check

    def boom(args):
        raise ZeroDivisionError("inside a command")
    monkeypatch.setattr(check, "cmd_check", boom)
    path = tmp_path / "x.yaml"
    path.write_text("layers: [relu]\n")
    code, findings = judge_cli(["check", str(path)], 5)
    assert [f.kind for f in findings] == ["traceback"]
    text = findings[0].site + findings[0].detail        # the traceback, or the top level's "internal error" line
    assert "ZeroDivisionError" in text or "inside a command" in text


def test_a_runtime_disagreement_is_a_mismatch_finding(monkeypatch, folder):
    """The runtime check compares every value's shape with the inferred one: break a shape rule's answer."""
    import runtime.kernels as kernels
    relu = kernels.KERNELS["relu"]
    monkeypatch.setitem(kernels.KERNELS, "relu", lambda ctx, x: (lambda y, b: (y[..., :1], b))(*relu(ctx, x)))
    case = fuzz_gen.Case("generated", "inputs: {x: [N, 3]}\nlayers: [{op: relu, name: r}]\noutputs: [r]\n",
                         source="relu", clean_expected=True)
    code, findings = judge(case, folder, TIMEOUT)
    assert code == 0
    assert findings and findings[0].kind == "mismatch" and "relu 'r': runtime gives float32[2, 1]" in findings[0].detail


# ----------------------------------------------------------------------------------------- tools/fuzz.py
def test_the_campaign_tool_runs_cases_and_prints_the_table(tmp_path):
    out = tmp_path / "campaign"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz.py"), "--cases", "4", "--families",
                        "mutated,corrupted", "--seed", "5", "--out", str(out)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr
    assert "cases run   4" in p.stdout and "mutated 2, corrupted 2" in p.stdout, p.stdout
    assert "Traceback" not in p.stderr
    again = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz.py"), "--cases", "1", "--out", str(out)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "holds an earlier campaign" in again.stderr       # never mixes two runs


def test_the_campaign_report_keeps_examples_per_site(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("fuzz_tool", ROOT / "tools" / "fuzz.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    finding = {"kind": "traceback", "site": "KeyError at compiler/x.py:1 in f", "command": "specc check spec.yaml",
               "detail": "Traceback ..."}
    rows = [{"family": "mutated", "code": None, "seconds": 0.1, "case": f"[mutated lenet5.yaml]\nlayers: [{i}]\n",
             "findings": [finding]} for i in range(3)] + [{"family": "corrupted", "code": 1, "seconds": 0.1,
                                                             "case": None, "findings": []}]
    assert tool.report(rows, tmp_path, keep=2, elapsed=2.0) == 1
    table = capsys.readouterr().out
    assert "cases run   4" in table and "findings    traceback 3, hang 0, mismatch 0" in table
    assert "     3  traceback  KeyError at compiler/x.py:1 in f" in table
    (site,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert sorted(d.name for d in site.iterdir()) == ["1", "2"]                    # --keep 2
    assert (site / "1" / "spec.yaml").read_text() == "layers: [0]\n"
    assert "specc check spec.yaml" in (site / "1" / "command.txt").read_text()


# ------------------------------------------------------------------------------------- found by fuzzing
@pytest.mark.parametrize("spec,sets", [
    ("lstm_classifier.yaml", ["classes=&a [*a]"]),         # a list that contains itself, through an alias
    ("lenet5.yaml", ["classes=18446744073709551616"]),     # an attribute integer beyond int64
])
def test_found_by_fuzzing(spec, sets, capsys):
    """Cases tools/fuzz.py found, each once a traceback: now one message and exit 1 or 2."""
    from cli.main import main
    code = main(["check", str(ROOT / "specs" / spec)] + [f"--set={s}" for s in sets])
    err = capsys.readouterr().err
    assert code in (1, 2) and "error" in err and "Traceback" not in err
