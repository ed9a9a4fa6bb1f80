"""Running one fuzz case and judging it, shared by tests/test_fuzz.py and tools/fuzz.py.

`judge(case, folder)` writes the spec to `folder`, runs `specc check` on it in-process under a time
limit and, when a generated spec checks clean and is small, runs it in the NumPy runtime (forward and
backward, every value's shape and dtype against the inferred type) and exports it to ONNX (checker,
then onnxruntime against the runtime). It returns the `Finding`s, each with a de-duplication `site`:

- traceback: an exception escaped a command, or it exited with a code other than 0, 1, 2
  (3 is the top-level "internal error" handler: still a bug);
- hang: a step ran past its time limit (the site is where it was interrupted);
- mismatch: a clean spec did not run, ran with other shapes or dtypes than inferred, could not be
  exported, or onnxruntime disagreed with the runtime.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import signal
import threading
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fuzz_gen import Case

ROOT = Path(__file__).resolve().parent.parent
MAX_ELEMENTS = 100_000             # a clean spec is run only when every value has at most this many elements
# an absolute difference this small is float32 rounding amplified by an ill-conditioned chain (layer_norm of a
# cosine_similarity(x, x), which is 1 up to rounding), not a wrong lowering
NOISE = 1e-4
MAX_OUTPUT = 1_000_000             # characters a `specc check` may print before it counts as a blow-up
# a random input that a consumer cannot take (the check cannot know the values), or a refusal PyTorch makes at
# run time too (batch norm of one value per channel, in training only: a batch-1 spec is fine for inference)
DATA_ERRORS = ("out of range", "out of bounds", "out of data bounds", "expects inputs between",
               "expects targets between", "more than one value per channel in training")


class Hang(BaseException):
    """Raised by the time limit's alarm; a BaseException so that no `except Exception` swallows it."""


@dataclass
class Finding:
    kind: str                      # traceback | hang | mismatch
    site: str                      # what findings with one root cause share
    command: str
    detail: str


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise Hang in this (main) thread after `seconds`; a no-op where SIGALRM is unavailable."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise Hang(f"still running after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def exception_site(exc: BaseException) -> str:
    """'ExcType at compiler/x.py:12 in func' for the innermost frame of specc's own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}compiler{os.sep}" in f.filename or f"{os.sep}runtime{os.sep}" in f.filename]
    f = (ours or frames or [None])[-1]
    where = f" at {os.path.relpath(f.filename, ROOT)}:{f.lineno} in {f.name}" if f else ""
    return f"{type(exc).__name__}{where}"


def normalise(message: str) -> str:
    """A message with its numbers and quoted names blanked, for grouping findings by root cause."""
    first = (message.strip().splitlines() or [""])[0]
    first = re.sub(r"^\S+:\d+:\d+: ", "", first)
    first = re.sub(r"'[^']*'", "'…'", first)
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", first)[:160]


def write_case(case: Case, folder: Path) -> Path:
    path = folder / "spec.yaml"
    path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode("utf-8"))
    return path


def run_cli(argv: list[str], timeout: float) -> tuple[int | None, str, str, BaseException | None]:
    """cli.main.main(argv) in-process: (exit code, stdout, stderr, the exception that escaped)."""
    from cli.main import main
    main = getattr(main, "__wrapped__", main)  # the judge reports exit 3 itself (conftest's guard would fail)
    out, err = io.StringIO(), io.StringIO()
    code, exc = None, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with time_limit(timeout):
                code = main(argv)
        except SystemExit as e:                       # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 2
        except BaseException as e:                    # noqa: BLE001 - a traceback or a Hang is what we look for
            exc = e
    return code, out.getvalue(), err.getvalue(), exc


def judge_cli(argv: list[str], timeout: float) -> tuple[int | None, list[Finding]]:
    code, out, err, exc = run_cli(argv, timeout)
    command = "specc " + " ".join(argv)
    if isinstance(exc, Hang):
        return None, [Finding("hang", "hang: " + exception_site(exc), command, "".join(traceback.format_exception(exc)))]
    if exc is not None:
        return None, [Finding("traceback", exception_site(exc), command, "".join(traceback.format_exception(exc)))]
    if "Traceback (most recent call last)" in err or code not in (0, 1, 2):
        return code, [Finding("traceback", f"exit {code}: {normalise(err)}", command, err[-20_000:])]
    if len(out) + len(err) > MAX_OUTPUT:
        return code, [Finding("hang", f"printed over {MAX_OUTPUT:,} characters", command, err[:2000])]
    return code, []


# --------------------------------------------------------------------------------------------------------- run it
def concrete(shape: tuple, sizes: dict[str, int]) -> tuple | None:
    out = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in shape)
    return out if all(isinstance(d, int) for d in out) else None


def is_small(graph) -> bool:
    from runtime.verify import symbol_sizes
    sizes = symbol_sizes(graph)
    types = [t for n in graph.nodes for t in n.outputs.values()] + list(graph.inputs.values())
    types += [p for p, _ in graph.params().values()]
    shapes = [concrete(tuple(t.shape), sizes) for t in types]
    return all(s is not None and math.prod(s) <= MAX_ELEMENTS for s in shapes)


def value_names(graph) -> dict[str, object]:
    """{'node' or 'node:port': inferred TensorType} for every port of every node."""
    return {(n.name if i == 0 else f"{n.name}:{p}"): t for n in graph.nodes for i, (p, t) in enumerate(n.outputs.items())}


def check_runs(graph, seed: int = 0) -> str | None:
    """Forward every value and backward from every float one; the first disagreement with the inferred
    types, or None."""
    from runtime.verify import random_inputs, symbol_sizes
    from runtime.model import Model
    from runtime.tensor import Tensor
    sizes, feeds, types = symbol_sizes(graph), random_inputs(graph, seed), value_names(graph)
    model = Model(graph, seed=seed)
    given = {k: Tensor(v, requires_grad=True) if v.dtype.kind == "f" else v for k, v in feeds.items()}
    res = model.forward(outputs=list(types), **given)
    ops = {k: graph.node(k.split(":")[0]).op for k in types}
    for name, t in types.items():
        got, want = res[name].data, concrete(tuple(t.shape), sizes)
        if tuple(got.shape) != want or got.dtype != np.dtype(t.dtype):
            return f"{ops[name]} '{name}': runtime gives {got.dtype}{list(got.shape)}, check inferred {t.dtype}{list(want or t.shape)}"
    rng = np.random.default_rng(seed)
    for name in [k for k in types if res[k].tracked and res[k].data.dtype.kind == "f"]:
        model.zero_grad()
        given = {k: Tensor(v, requires_grad=True) if v.dtype.kind == "f" else v for k, v in feeds.items()}
        out = model.forward(outputs=[name], **given)[name]
        out.backward(rng.standard_normal(out.shape).astype(out.data.dtype))
        for pname, p in list(model.parameters().items()) + [(k, v) for k, v in given.items() if isinstance(v, Tensor)]:
            if p.grad is not None and (np.shape(p.grad) != p.shape or np.asarray(p.grad).dtype != p.data.dtype):
                return (f"backward from {ops[name]} '{name}': the gradient of {pname} is {np.asarray(p.grad).dtype}"
                        f"{list(np.shape(p.grad))}, the value {p.data.dtype}{list(p.shape)}")
    return None


def check_onnx(graph) -> str | None:
    """Export what can be exported (checker on), run onnxruntime and compare; the problem, or None."""
    from runtime.verify import verify
    from compiler.onnx.export import ExportError, fresh_weights, select_outputs
    try:
        chosen = select_outputs(graph, None)
    except ExportError:
        return None                                   # every output needs a loss: nothing to export
    result = verify(graph, fresh_weights(graph, seed=0), outputs=list(chosen))
    if result.ok or result.message.startswith("outputs contain NaN/inf"):
        return None
    if result.diffs and max(result.diffs.values()) <= NOISE:
        return None                                   # an ill-conditioned chain amplifying float32 rounding
    return result.message


def judge_runs(case: Case, path: Path, timeout: float) -> list[Finding]:
    """The runtime and ONNX checks of a generated spec that checked clean."""
    import compiler
    from compiler.errors import UserError
    import onnxruntime
    onnxruntime.set_default_logger_severity(4)          # its own log lines would repeat the finding
    findings = []
    graph = compiler.compile_file(path)
    if not is_small(graph):
        return []
    for stage, fn in (("runtime", check_runs), ("onnx", check_onnx)):
        command = f"{stage} check of {case.source}"
        try:
            with time_limit(timeout), warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                problem = fn(graph)
        except Hang as e:
            findings.append(Finding("hang", f"hang in {stage}: {exception_site(e)}", command, traceback.format_exc()))
            continue
        except UserError as e:
            if any(s in e.message for s in DATA_ERRORS):
                continue
            problem = f"{type(e).__name__}: {e.message}"
        except Exception as e:                        # noqa: BLE001 - any exception is a finding
            findings.append(Finding("traceback", f"{stage}: {exception_site(e)}", command, traceback.format_exc()))
            continue
        if problem:
            findings.append(Finding("mismatch", f"{stage}: {normalise(problem)}",
                                    command, problem))
    return findings


def judge(case: Case, folder: Path, timeout: float = 10.0) -> tuple[int | None, list[Finding]]:
    """Check the case's spec (and run it when it is a clean generated one): (exit code, findings)."""
    path = write_case(case, folder)
    argv = ["check", str(path)] + [f"--set={s}" for s in case.sets]
    code, findings = judge_cli(argv, timeout)
    if code == 0 and case.clean_expected and not findings:
        findings += judge_runs(case, path, timeout)
    return code, findings
