import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# --- op-test coverage bookkeeping, for tests/test_registry.py::test_every_op_is_gradchecked_and_onnx_checked ---
OP_TESTS = sorted(p.name for p in Path(__file__).parent.glob("test_ops_*.py"))
COVERAGE_TEST = "test_every_op_is_gradchecked_and_onnx_checked"
_outcomes: dict[str, str] = {}          # op-test node id -> its outcome in this process
_deselected: list[str] = []             # op-test node ids left out by -k, -m, --deselect, --lf, ...


def _is_op_test(nodeid: str) -> bool:
    return Path(nodeid.split("::", 1)[0]).name in OP_TESTS


def pytest_deselected(items):
    _deselected.extend(i.nodeid for i in items if _is_op_test(i.nodeid))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The coverage test runs after every other test, whatever order the files were given in."""
    last = [i for i in items if i.name == COVERAGE_TEST]
    items[:] = [i for i in items if i.name != COVERAGE_TEST] + last


def pytest_runtest_logreport(report):
    if not _is_op_test(report.nodeid):
        return
    if report.when == "call" or report.outcome != "passed":        # a setup/teardown failure or skip counts
        if _outcomes.get(report.nodeid, "passed") == "passed":
            _outcomes[report.nodeid] = report.outcome


@pytest.fixture
def op_test_run(request):
    """Why this session's op tests cannot show the catalogue's check coverage, or None when they can:
    every tests/test_ops_*.py collected in full (no -k/-m/--deselect/node-id selection), and every one
    of its tests run in this process and passed."""
    session = request.session
    items = [i for i in session.items if _is_op_test(i.nodeid)]
    files = {Path(i.nodeid.split("::", 1)[0]).name for i in items}
    if set(OP_TESTS) - files:
        return f"op test files not collected: {', '.join(sorted(set(OP_TESTS) - files))}"
    narrowed = [a for a in request.config.args if "::" in a and _is_op_test(a)]
    if narrowed or _deselected:
        return f"only part of the op tests selected ({(narrowed or _deselected)[0]}, ...)"
    not_passed = [i.nodeid for i in items if _outcomes.get(i.nodeid) != "passed"]
    if not_passed:
        return (f"{len(not_passed)} op tests did not run and pass in this process "
                f"(e.g. {not_passed[0]}: {_outcomes.get(not_passed[0], 'not run')})")
    return None


# --- an internal error of `specc` fails the test -------------------------------------------------------
# cli.main.main turns an unexpected exception into "specc: internal error: ..." and exit 3. Every test
# that runs a command in-process (any `from cli.main import main`, imported after this file) gets this
# wrapper, which fails the test on exit 3; SPECC_DEBUG=1 puts the traceback in the captured stderr, and
# makes a `specc` subprocess print it too (tests of subprocesses assert there is no traceback).
import os  # noqa: E402

import cli.main as _cli  # noqa: E402

os.environ["SPECC_DEBUG"] = "1"
_unguarded_main = _cli.main


def _guarded_main(argv=None):
    code = _unguarded_main(argv)
    if code == 3:
        pytest.fail(f"specc {' '.join(map(str, argv or []))[:200]}: internal error (exit 3); its traceback is in "
                    "the captured stderr", pytrace=False)
    return code


_guarded_main.__wrapped__ = _unguarded_main
_cli.main = _guarded_main
