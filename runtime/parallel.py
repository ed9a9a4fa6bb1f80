"""Elementwise NumPy work split over a few threads (SPECC_NUM_THREADS, or where a kernel asks for it).

NumPy's ufuncs and copies release the GIL on large arrays, so the kernels that are not a GEMM (im2col
copies, padding, col2im, batch norm, ReLU, pooling) can run parts of a batch on several cores at once:

    def part(lo, hi):
        np.maximum(x[lo:hi], 0, out=y[lo:hi])
    parallel.run(part, len(x), x.nbytes)

`run` cuts range(n) into pieces of `step` items, and the calling thread and the pool's workers take
pieces until none is left (dynamic scheduling: a worker that wakes late or shares its core simply takes
fewer). Work under MIN_BYTES, a single thread, or a call from inside a worker runs the pieces on the
calling thread. Pieces only decide *which thread* computes an item, never *how*: a kernel that writes
each item from that item's inputs alone gives the same bits at any thread count (reductions across
items must be split along another axis, or stay outside the parallel part). The kernels also use the
pieces on one thread, for cache blocking.

Threads: SPECC_NUM_THREADS=N uses N (at most 4 per allowed CPU); SPECC_NUM_THREADS=auto uses OMP_NUM_THREADS / OPENBLAS_NUM_THREADS
if set (the cap given to BLAS), else the CPUs this process may run on (os.sched_getaffinity); unset, 1.
One thread is the default for most work because splitting it was slower on the machine the benchmarks
run on (2 vCPUs, docs/benchmarks.md): there one core already draws most of the memory bandwidth (a
64 MB float32 multiply: 42 GB/s on one core, 48 GB/s on two), and waking a worker costs more than a
pass over a few MiB saves (the small VGG's step: 7 % slower with its pooling and ReLU split). Kernels
pass `threads=` where splitting pays by measurement: pooling, ReLU and batch norm over SPLIT_ALWAYS
bytes or more (`threads_for`: ResNet-18's step −3 %), and a small weight gradient's im2col blocks
(kernels/convolution.py _wgrad_mlas, whose pieces are one-thread onnxruntime GEMMs). Elsewhere the
kernels call `run` between onnxruntime or BLAS calls, never during one.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
from typing import Callable

from . import threads

MIN_BYTES = 256 << 10       # below this, waking another thread costs more than it saves
MAX_PER_CPU = 4             # SPECC_NUM_THREADS is capped at this many threads per allowed CPU
SPLIT_ALWAYS = 16 << 20     # work of this many bytes splits over threads_for's cap even when THREADS is 1
PIECE_BYTES = 1 << 20       # default piece size: a few passes over it stay in the 1-2 MiB L2 cache


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _env_int(env, name: str) -> int | None:
    v = env.get(name, "").strip().split(",")[0]        # OMP_NUM_THREADS may be a list per nesting level
    try:
        n = int(v)
    except ValueError:
        return None
    return n if n >= 1 else None


def threads_from_env(env=None) -> int:
    """The number of threads the runtime's elementwise work may use (see the module docstring)."""
    env = os.environ if env is None else env
    cpus = len(_cpus())
    if env.get("SPECC_NUM_THREADS", "").strip().lower() != "auto":
        # at most MAX_PER_CPU per CPU: more never helps, and SPECC_NUM_THREADS=100000 failed to start its
        # threads ("can't start new thread", an internal error in the first kernel that split its work)
        return min(_env_int(env, "SPECC_NUM_THREADS") or 1, MAX_PER_CPU * cpus)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        n = _env_int(env, name)
        if n is not None:
            return min(n, cpus)
    return cpus


THREADS = threads_from_env()

_local = threading.local()


class _Job:
    __slots__ = ("fn", "n", "step", "next", "done", "error")

    def __init__(self, fn: Callable[[int, int], None], n: int, step: int):
        self.fn, self.n, self.step = fn, n, step
        self.next = itertools.count()               # next() is atomic under the GIL
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None

    def drain(self) -> None:
        """Take pieces until none is left (or a piece failed)."""
        while self.error is None:
            lo = next(self.next) * self.step
            if lo >= self.n:
                return
            try:
                self.fn(lo, min(self.n, lo + self.step))
            except BaseException as e:              # noqa: BLE001 - handed to the caller of run()
                if self.error is None:
                    self.error = e
                return


class _Pool:
    """Worker threads, started as needed and kept (blocked on their queue while idle)."""

    def __init__(self):
        self.queues: list[queue.SimpleQueue] = []

    def grow(self, workers: int) -> None:
        while len(self.queues) < workers:
            q: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=self._loop, args=(q,), name=f"specc-parallel-{len(self.queues)}",
                             daemon=True).start()
            self.queues.append(q)

    @staticmethod
    def _loop(q: queue.SimpleQueue) -> None:
        _local.worker = True
        while True:
            job = q.get()
            job.drain()
            job.done.put(None)
            job = None                  # let go of the finished job's closure (and the arrays it holds)


_lock = threading.Lock()
_pools: dict[int, _Pool] = {}       # per process: a forked child starts its own workers


def _workers(n: int) -> list[queue.SimpleQueue]:
    """The queues of n workers of this process's pool."""
    with _lock:
        pool = _pools.setdefault(os.getpid(), _Pool())
        pool.grow(n)
        return pool.queues[:n]


def threads_for(nbytes: int, cap: int | None = None) -> int:
    """Threads for a kernel's elementwise work of nbytes: THREADS, or from SPLIT_ALWAYS bytes on at least
    `cap` (default: the threads BLAS and onnxruntime may use, runtime.threads.cap())."""
    if nbytes < SPLIT_ALWAYS:
        return THREADS
    if cap is None:
        cap = threads.cap()
    return max(THREADS, cap)


def stay_on_this_thread() -> None:
    """From now on every run() called on this thread runs its pieces here (runtime.overlap's worker)."""
    _local.worker = True


def splits(nbytes: int, threads: int | None = None) -> bool:
    """Would `run` hand work of this size to other threads (from this thread)?"""
    t = THREADS if threads is None else threads
    return t > 1 and nbytes >= MIN_BYTES and not getattr(_local, "worker", False)


def run(fn: Callable[[int, int], None], n: int, nbytes: int, step: int | None = None,
        threads: int | None = None) -> None:
    """Call fn(lo, hi) for contiguous slices that cover range(n) exactly once, on up to `threads` threads
    (the calling thread and threads − 1 of the pool's; default THREADS).

    nbytes: the memory the whole job touches (decides whether splitting pays, and the default piece
    size); step: items per piece (None: one call when not split, else pieces of about PIECE_BYTES).
    fn must write only what belongs to its items, and compute each item the same way whatever the
    slice it comes in. Returns when every piece is done; an exception raised by a piece is re-raised.
    A run inside fn (on any of the threads) stays on that thread.
    """
    if n <= 0:
        return
    t = THREADS if threads is None else max(1, min(int(threads), MAX_PER_CPU * len(_cpus())))
    if not splits(nbytes, t):
        step = n if step is None else max(1, int(step))
        for lo in range(0, n, step):
            fn(lo, min(n, lo + step))
        return
    if step is None:
        step = -(-n // max(t, nbytes // PIECE_BYTES))
    job = _Job(fn, n, max(1, int(step)))
    workers = min(t - 1, -(-n // job.step) - 1)
    _local.worker = True                        # a run inside fn stays on this thread too
    try:
        if workers >= 1:
            for q in _workers(workers):
                q.put(job)
        try:
            job.drain()
        finally:
            for _ in range(max(workers, 0)):
                job.done.get()
    finally:
        _local.worker = False
        job.fn = None                   # a worker may still hold the job: not what fn refers to
    if job.error is not None:
        raise job.error
