"""GRU training steps under a background load: BLAS's default threads against runtime.threads' per-size policy.

    python tools/bench_threads.py                      # T = 20, 50; 1 busy background process; 2 BLAS threads
    python tools/bench_threads.py --busy 0 --repeats 15

A GRU's time loop does one small GEMM per step ([N, H] × [H, 3H]); with two BLAS threads on a machine
whose cores are busy, each of them waits at OpenBLAS's barrier for a thread that lost its core. This
script starts `--busy` processes that spin on a core, then times a training step (forward, backward, SGD)
of specs/gru_classifier.yaml (batch 64, hidden 128) with SPECC_BLAS_POLICY=off (BLAS's default threads
throughout), with the per-size policy (one thread for the time loop), and with one thread for the whole
step (for reference), alternating them in every repeat (the order flips each time), and prints the
medians as a Markdown table with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, THREADS  # noqa: E402  (sets the BLAS thread caps from --threads before NumPy loads)

import numpy as np  # noqa: E402

BUSY = "import time\nend = time.time() + {secs}\nwhile time.time() < end:\n    pass\n"


class GruStep:
    """A training step of specs/gru_classifier.yaml on tokens [batch, T]."""

    def __init__(self, T: int, batch: int = 64):
        import compiler
        import runtime
        from runtime.optim import SGD

        g = compiler.compile_file(ROOT / "specs" / "gru_classifier.yaml")
        self.model = runtime.Model(g, seed=0)
        rng = np.random.default_rng(0)
        self.x = {"tokens": rng.integers(1, 16, (batch, T)), "label": rng.integers(0, 2, batch)}
        self.opt = SGD(self.model.parameters(), lr=0.01, momentum=0.9)

    def __call__(self) -> None:
        out = self.model.forward(outputs=["loss"], **self.x)
        out["loss"].backward()
        self.opt.step()
        self.opt.zero_grad()


POLICIES = ("off", "size", "one")     # BLAS's default threads; the per-size policy; one thread for the whole step


def _timed(step: GruStep, policy: str) -> float:
    from runtime import threads
    os.environ["SPECC_BLAS_POLICY"] = "off" if policy == "off" else "size"
    t0 = time.perf_counter()
    if policy == "one":
        with threads.single():
            step()
    else:
        step()
    return time.perf_counter() - t0


def measure(T: int, repeats: int) -> dict[str, float]:
    """Median step time per policy, the policies alternating (order reversed every other repeat)."""
    step = GruStep(T)
    for policy in POLICIES:
        _timed(step, policy)
    times: dict[str, list[float]] = {p: [] for p in POLICIES}
    for i in range(repeats):
        for policy in (POLICIES if i % 2 == 0 else POLICIES[::-1]):
            times[policy].append(_timed(step, policy))
    os.environ.pop("SPECC_BLAS_POLICY", None)
    return {p: statistics.median(v) for p, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="20,50", help="sequence lengths T, comma-separated (default 20,50)")
    ap.add_argument("--busy", type=int, default=1, help="background processes spinning on a core (default 1)")
    ap.add_argument("--repeats", type=int, default=11, help="timed steps per policy and length (default 11)")
    ap.add_argument("--threads", type=int, default=THREADS, help="BLAS threads (default 2)")
    a = ap.parse_args(argv)
    from runtime import threads
    if not threads._blas():
        print("threadpoolctl is not installed (pip install specc[threads]): the policy cannot change anything")
        return 1
    busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(secs=600)]) for _ in range(a.busy)]
    try:
        time.sleep(0.5 if busy else 0)
        rows = []
        for T in (int(t) for t in a.lengths.split(",")):
            r = measure(T, a.repeats)
            rows.append((T, r["off"], r["size"], r["one"], os.getloadavg()[0]))
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(f"GRU training step (batch 64, hidden 128), {a.threads} BLAS threads, {a.busy} busy background "
          f"process(es), median of {a.repeats}\n")
    print("| T | default threads ms | per-size policy ms | speed-up | one thread throughout ms | load average (1 min) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for T, off, size, one, load in rows:
        print(f"| {T} | {off * 1e3:.1f} | {size * 1e3:.1f} | {off / size:.1f}× | {one * 1e3:.1f} | {load:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
