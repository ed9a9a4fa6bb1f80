"""Weight gradients computed beside the backward pass, on a second core.

A convolution's weight gradient is needed by nothing else in the backward pass, only by the optimiser
after it. Computed in line it keeps both cores busy only inside its GEMMs, and the NumPy work around it
(im2col copies, batch norm's and pooling's backward) runs on one core while the other waits. Here the
kernel hands the weight gradient to a worker thread instead (`later`) and the backward pass goes on with
the input gradient: while the worker runs a job it takes half the threads (on 2 cores: one) and
runtime.threads.cap() is as much lower for the others, so the pass's single-threaded stretches overlap
the worker's GEMMs. Tensor.backward() (runtime/tensor.py) collects the pending gradients and waits for
them before it returns, running itself any job the worker has not started; the parameters' .grad are
plain arrays as before.

A job computes the same bits whichever thread runs it (the weight-gradient kernels do not depend on the
thread count: runtime/kernels/convolution.py), and the gradients are accumulated in the order they
would have been. Jobs only read arrays that no later backward step writes (a layer's saved input and the
gradient of its output).

Only inside Tensor.backward() (`collecting`), with two or more threads allowed: a kernel's backward
called directly returns arrays. At most MAX_QUEUED jobs, holding at most MAX_QUEUED_BYTES of gradients
that only they keep alive, wait; past that the caller computes in line (on a machine where the worker's
half of the threads lags, memory stays bounded). A failed backward drops the jobs not yet begun; a
forked child starts its own worker. SPECC_OVERLAP=0 computes everything in line.
"""
from __future__ import annotations

import collections
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from . import parallel, threads


def enabled() -> bool:
    """SPECC_OVERLAP unset or "1": weight gradients beside the backward pass; "0": in line."""
    return os.environ.get("SPECC_OVERLAP", "1").strip().lower() not in ("0", "off", "false", "no")


_local = threading.local()


class Later:
    """A value a worker computes (or the thread that asks for it first, if the worker has not begun)."""

    __slots__ = ("fn", "value", "error", "done", "claimed", "queued", "nbytes")

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.value = self.error = None
        self.done = threading.Event()
        self.claimed = self.queued = False
        self.nbytes = 0

    def _claim(self) -> bool:
        with _lock:
            return _take(self)

    def _compute(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as e:                  # noqa: BLE001 - re-raised by get()
            self.error = e
        self.fn = None                              # let go of the arrays the job read

    def _run(self) -> None:
        self._compute()
        self.done.set()

    def get(self) -> Any:
        """The value (computed here if no thread has taken the job yet); the job's exception re-raised."""
        if self._claim():
            self._run()
        else:
            self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


def help_with(values: list) -> None:
    """Run here, newest first, the jobs among values that no thread has begun (the worker takes the
    oldest first): the caller is about to wait for all of them."""
    for v in reversed(values):
        if isinstance(v, Later) and v._claim():
            v._run()
            if v.error is not None and not isinstance(v.error, Exception):
                raise v.error                       # Ctrl-C while this thread ran it: now, not after the rest


def drop(values: list) -> None:
    """Keep the worker from starting the jobs among values (their caller failed and will not wait)."""
    for v in values:
        if isinstance(v, Later) and v._claim():
            v.fn = None
            v.done.set()


def value(v: Any) -> Any:
    """v itself, or a Later's value."""
    return v.get() if isinstance(v, Later) else v


MAX_QUEUED = 16             # jobs waiting for the worker at most (each holds a layer's input and output
MAX_QUEUED_BYTES = 256 << 20    # gradient), and bytes of arrays they alone hold: from there on the caller
                                # computes in line

_lock = threading.Lock()
_ready = threading.Condition(_lock)
_queue: collections.deque = collections.deque()
_waiting = 0                # jobs in _queue that no thread has claimed
_held = 0                   # bytes those jobs declared (later's nbytes)
_worker_pid: list[int] = []


def _loop() -> None:
    parallel.stay_on_this_thread()                  # the jobs' pieces run here
    while True:
        with _ready:
            while not _queue:
                _ready.wait()
            job = _queue.popleft()
            if not _take(job):
                continue
        n = max(1, threads.blas_cap() // 2)         # half the threads for the job (on 2 cores: one) ...
        threads.own_cap(n)
        threads.lend(n)                             # ... and as many fewer for the others meanwhile
        try:
            job._compute()
        finally:
            threads.lend(-n)                        # before get() returns: the caller's cap() is whole again
            job.done.set()
        job = None


def _take(job: Later) -> bool:
    """Claim job for the calling thread (under _lock): False if a thread already has."""
    global _waiting, _held
    if job.claimed:
        return False
    job.claimed = True
    if job.queued:
        _waiting -= 1
        _held -= job.nbytes
    return True


def _start() -> None:
    pid = os.getpid()
    if _worker_pid and _worker_pid[0] == pid:
        return
    _worker_pid[:] = [pid]
    threading.Thread(target=_loop, name="specc-overlap", daemon=True).start()


def _after_fork_in_child() -> None:
    """A forked child has no worker (threads do not survive fork): new lock, empty queue, nothing lent."""
    global _lock, _ready, _waiting, _held
    _lock = threading.Lock()
    _ready = threading.Condition(_lock)
    _queue.clear()
    _waiting = _held = 0
    _worker_pid.clear()
    threads.lend(-threads.lent())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def collecting() -> Iterator[None]:
    """Let `later` hand work to the worker for the duration (Tensor.backward)."""
    prev = getattr(_local, "on", False)
    _local.on = enabled() and threads.cap() > 1
    try:
        yield
    finally:
        _local.on = prev


def now(fn: Callable[[], Any]) -> Any:
    """fn() (the in-line twin of `later`, for a caller that decides by size)."""
    return fn()


def later(fn: Callable[[], Any], nbytes: int = 0) -> Any:
    """fn's value as a Later computed beside the caller's work, inside `collecting` and with two or more
    threads allowed; else fn() now. nbytes: what the job alone keeps alive until it runs (the gradient it
    reads), for the MAX_QUEUED_BYTES bound."""
    global _waiting, _held
    if (not getattr(_local, "on", False) or _waiting >= MAX_QUEUED
            or (_waiting and _held + nbytes > MAX_QUEUED_BYTES)):
        return fn()
    job = Later(fn)
    job.queued, job.nbytes = True, nbytes
    with _ready:
        _start()
        _queue.append(job)
        _waiting += 1
        _held += nbytes
        _ready.notify()
    return job
