"""BLAS threads chosen per GEMM size: small GEMMs run on one thread.

OpenBLAS splits a GEMM over its threads from m·k·n ≈ 2.6e5 on, and the threads meet at a barrier after
every call. On an idle machine that costs microseconds; on a loaded one a thread that has lost its core
makes every other one wait for a scheduler slice, and a loop of small GEMMs collapses: an RNN's time loop
(one [N, H] × [H, gates·H] GEMM per step) took 52-177 ms per GRU step at T ≥ 20 with two BLAS threads
and 4-6 ms with one (docs/benchmarks.md, "Convolution and BLAS threads"). Big GEMMs keep every thread.

    with threads.gemm(m, k, n):          # one thread if m·k·n < SMALL_GEMM, else unchanged
        for t in range(T):
            np.matmul(h, w, out=z)

Regions nest: inside a one-thread region everything stays on one thread; a kernel limits its whole
body by its largest GEMM and, when that one is big, its loops of small GEMMs on their own.

The limit goes through threadpoolctl (an optional dependency, `pip install specc[threads]`); without
it, or with SPECC_BLAS_POLICY=off, `gemm` changes nothing. Setting the thread count is one ctypes call
(~2 µs), so the policy is applied around loops and per convolution, not per element.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

SMALL_GEMM = 1 << 24        # m·k·n under which one thread is used (~34 MFLOP: about 0.3 ms on one core)

_controllers: list | None = None
_single = False             # inside a single-thread region (nested regions do nothing)
_outer: list[int] = []      # the BLAS thread count outside the current single-thread region


def enabled() -> bool:
    """Whether the per-size policy is on: SPECC_BLAS_POLICY unset or "size"; "off" leaves BLAS alone."""
    return os.environ.get("SPECC_BLAS_POLICY", "size").strip().lower() != "off"


def _blas() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded now ([] without threadpoolctl)."""
    global _controllers
    if _controllers is None:
        try:
            from threadpoolctl import ThreadpoolController
            _controllers = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:                               # noqa: BLE001 - optional: fall back silently
            _controllers = []
    return _controllers


@contextmanager
def single() -> Iterator[None]:
    """Run the block with one BLAS thread, then restore the previous counts."""
    global _single
    if _single or not enabled():
        yield
        return
    saved = [(c, c.num_threads) for c in _blas()]
    changed = [(c, n) for c, n in saved if n != 1]
    _outer[:] = [max(1, min(n for _, n in saved))] if saved else []
    for c, _ in changed:
        c.set_num_threads(1)
    _single = True
    try:
        yield
    finally:
        _single = False
        _outer.clear()
        for c, n in changed:
            c.set_num_threads(n)


_NOTHING = contextmanager(lambda: (yield))


def gemm(m: int, k: int, n: int):
    """A context for GEMMs of [m, k] × [k, n] (or smaller): one BLAS thread when they are small, or while
    onnxruntime's threads are at work (other_pool_used)."""
    if m * k * n < SMALL_GEMM or time.monotonic() < _other_pool_until:
        return single()
    return _NOTHING()


OTHER_POOL_HOLD = 1.0       # seconds after onnxruntime's threads last ran during which BLAS keeps one thread
_other_pool_until = 0.0


def other_pool_used() -> None:
    """Called by the kernels that run on onnxruntime's thread pool (runtime/mlas_conv.py, onnx_steps.py):
    for OTHER_POOL_HOLD seconds every GEMM region runs on one BLAS thread. OpenBLAS's threads, once woken,
    spin on the cores for a while after each GEMM, and onnxruntime's threads then wait for a core: a
    small VGG's training step took 120 ms with both pools at two threads and 94 ms with OpenBLAS on one
    (docs/benchmarks.md, "Convolution on MLAS")."""
    global _other_pool_until
    _other_pool_until = time.monotonic() + OTHER_POOL_HOLD
    ort_ran()


_ort_until = 0.0


def ort_ran() -> None:
    """Called by every onnxruntime kernel (other_pool_used, and runtime/ort_ops.py's, which do not hold
    OpenBLAS): see ort_recent."""
    global _ort_until
    _ort_until = time.monotonic() + OTHER_POOL_HOLD


def ort_recent() -> bool:
    """Whether onnxruntime's threads ran in the last OTHER_POOL_HOLD seconds: a big GEMM then runs on
    MLAS's GEMM too (runtime/kernels/dense.py), so that OpenBLAS's spinning threads and onnxruntime's do
    not take turns on the cores."""
    return time.monotonic() < _ort_until


def current() -> int:
    """The BLAS thread count in effect here: 1 inside a one-thread region, else cap()."""
    if _single and enabled():
        return 1
    return cap()


_local = threading.local()
_lent = 0                   # threads runtime.overlap's worker uses now: the other threads' cap is that much lower


def own_cap(n: int) -> None:
    """This thread's cap() from now on (runtime.overlap's worker, per job)."""
    _local.cap = n


def lent() -> int:
    """The threads lent now (lend)."""
    return _lent


def lend(k: int) -> None:
    """k more (or −k fewer) threads busy beside the others (runtime.overlap's worker, around a job)."""
    global _lent
    _lent += k


def cap() -> int:
    """The threads this thread's kernels may use: blas_cap(), less those runtime.overlap's worker is
    using now (the worker's own: half of blas_cap())."""
    own = getattr(_local, "cap", None)
    if own is not None:
        return own
    return max(1, blas_cap() - _lent)


def blas_cap() -> int:
    """The BLAS library's own thread count, outside any one-thread region (OPENBLAS_NUM_THREADS /
    OMP_NUM_THREADS, or the CPUs this process may use, without threadpoolctl). onnxruntime's sessions
    (runtime/mlas_conv.py, runtime/onnx_steps.py) use it: their thread pool hands out work in small
    pieces to whichever thread is free, so a thread that lost its core does not stall the others as
    OpenBLAS's fixed split does, and small work needs no one-thread region there."""
    if _single and _outer:
        return _outer[0]
    counts = [c.num_threads for c in _blas()]
    if counts:
        return max(1, min(counts))
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(name, "").split(",")[0].strip()
        if v.isdigit() and int(v) >= 1:
            return int(v)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
