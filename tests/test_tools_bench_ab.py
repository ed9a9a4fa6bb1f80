"""tools/bench_ab.py: an A/B of one runtime switch on whole training steps (run as a user runs it)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "bench_ab.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["mlp", "SPECC_ORT_OPS"], "the switch is VAR=a,b"),
    (["mlp", "SPECC_ORT_OPS=1,0,2"], "the switch is VAR=a,b"),
    (["nosuch", "SPECC_ORT_OPS=1,0"], "no model 'nosuch'"),
    (["mlp", "runtime.parallel.NO_SUCH=1,2"], "has no attribute 'NO_SUCH'"),
    (["mlp", "runtime.no_such_module.X=1,2"], "No module named"),
    (["mlp", "runtime.parallel.SPLIT_ALWAYS=1<<20,2"], "is not a Python literal"),
])
def test_bad_arguments_exit_2_with_a_message(args, message):
    r = _run(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_a_short_run_prints_both_medians_and_their_ratio():
    pytest.importorskip("torch")
    r = _run("mlp", "SPECC_ORT_OPS=1,0", "--pairs", "2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "SPECC_ORT_OPS=1" in r.stdout and "SPECC_ORT_OPS=0" in r.stdout and "ratio" in r.stdout


def test_a_module_attribute_as_the_switch():
    pytest.importorskip("torch")
    r = _run("mlp", "runtime.parallel.SPLIT_ALWAYS=1048576,4611686018427387904", "--pairs", "2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "SPLIT_ALWAYS=1048576" in r.stdout and "ratio" in r.stdout
