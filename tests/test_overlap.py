"""Weight gradients beside the backward pass (runtime/overlap.py): the same bits as in line, PyTorch's
values, errors and dropped jobs, and arrays from a kernel called outside Tensor.backward()."""
import threading
import time

import numpy as np
import pytest
import yaml

import compiler
from compiler import ops
from runtime import Model, mlas_conv, overlap, threads
from runtime.kernels import Ctx, KERNELS
from runtime.kernels import convolution as conv_kernels
from runtime.optim import SGD
from runtime.tensor import Entry, Tensor

pytestmark = pytest.mark.skipif(not mlas_conv.enabled() or mlas_conv.block_size() == 0,
                                reason="the MLAS convolution is not available here")


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads for the kernels whatever the machine (the overlap needs two)."""
    monkeypatch.setattr(threads, "blas_cap", lambda: 2)


@pytest.fixture
def jobs(monkeypatch):
    """The Later jobs made, in order."""
    made = []
    real = overlap.Later.__init__

    def init(self, fn):
        made.append(self)
        real(self, fn)

    monkeypatch.setattr(overlap.Later, "__init__", init)
    return made


SPEC = {"name": "net", "inputs": {"image": ["N", 16, 32, 32], "label": {"shape": ["N"], "dtype": "int64"}},
        "layers": [{"op": "conv2d", "name": "c1", "out_channels": 32, "kernel_size": 3, "padding": 1},
                   {"op": "batch_norm", "name": "bn"}, {"op": "relu"},
                   {"op": "conv2d", "name": "c2", "out_channels": 32, "kernel_size": 3, "padding": 1},
                   {"op": "relu"}, {"op": "max_pool2d", "kernel_size": 4}, "flatten",
                   {"op": "linear", "name": "fc", "out_features": 3},
                   {"op": "cross_entropy", "name": "loss", "in": ["fc", "label"]}],
        "outputs": ["fc"]}


def _data(n=8):
    rng = np.random.default_rng(0)
    return {"image": rng.standard_normal((n, 16, 32, 32)).astype(np.float32),
            "label": rng.integers(0, 3, n).astype(np.int64)}


def _train(monkeypatch, on: bool, steps: int = 3):
    monkeypatch.setenv("SPECC_OVERLAP", "1" if on else "0")
    m = Model(compiler.compile_text(yaml.safe_dump(SPEC, sort_keys=False)), seed=3)
    m.train()
    opt = SGD(m.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        out = m.forward(outputs=["loss"], **_data())
        out["loss"].backward()
        losses.append(float(out["loss"].data))
        for p in m.parameters().values():
            assert p.grad is None or isinstance(p.grad, np.ndarray)
        opt.step()
        opt.zero_grad()
    return losses, {k: np.array(v, copy=True) for k, v in m.state_dict().items()}


def test_training_has_the_same_bits_as_in_line(monkeypatch, two_threads, jobs):
    l0, s0 = _train(monkeypatch, False)
    assert not jobs
    l1, s1 = _train(monkeypatch, True)
    assert len(jobs) == 3 * 4                            # per step: two convolutions' weight and bias
    assert overlap.MAX_QUEUED >= 4
    assert all(j.done.is_set() and j.fn is None for j in jobs)
    assert l0 == l1
    for k in s0:
        assert np.array_equal(np.atleast_1d(s0[k]).view(np.uint8), np.atleast_1d(s1[k]).view(np.uint8)), k


def test_small_convolutions_stay_in_line(monkeypatch, two_threads, jobs):
    monkeypatch.setattr(conv_kernels, "_LATER_MACS", 1 << 40)
    _train(monkeypatch, True, steps=1)
    assert not jobs


def _conv_attrs(w_shape, padding: int, bias: bool = True):
    """conv2d's validated attributes for a weight of w_shape (stride 1, one group)."""
    return ops.OPS["conv2d"].attrs.model_validate({"out_channels": w_shape[0], "kernel_size": list(w_shape[2:]),
                                                   "padding": padding, "bias": bias})


def _conv_tape(x: Tensor, w: Tensor, b: Tensor, uses: int = 2):
    """sum over `uses` convolutions of x by the same w and b (a shared weight), recorded on the tape."""
    total = None
    for _ in range(uses):
        ctx = Ctx(_conv_attrs(w.shape, 1), True, needs=(True, True, True))
        y, back = KERNELS["conv2d"](ctx, x.data, w.data, b.data)
        t = Tensor(y)
        t._entry = Entry(back, [x, w, b], [t])
        total = t if total is None else _add(total, t)
    return total


def _add(a: Tensor, b: Tensor) -> Tensor:
    t = Tensor(a.data + b.data)
    t._entry = Entry(lambda g: (g, g), [a, b], [t])
    return t


def _shared_weight_grads(monkeypatch, on: bool):
    monkeypatch.setenv("SPECC_OVERLAP", "1" if on else "0")
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((8, 16, 32, 32)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((32, 16, 3, 3)).astype(np.float32) / 12, requires_grad=True)
    b = Tensor(rng.standard_normal(32).astype(np.float32), requires_grad=True)
    y = _conv_tape(x, w, b, uses=3)
    y.backward(np.random.default_rng(2).standard_normal(y.shape).astype(np.float32))
    return x.grad, w.grad, b.grad


def test_a_shared_weight_accumulates_in_the_same_order(monkeypatch, two_threads, jobs):
    ref = _shared_weight_grads(monkeypatch, False)
    got = _shared_weight_grads(monkeypatch, True)
    assert len(jobs) == 6
    for r, g in zip(ref, got):
        assert isinstance(g, np.ndarray) and np.array_equal(r.view(np.uint32), g.view(np.uint32))


def test_gradients_match_pytorch(monkeypatch, two_threads, jobs):
    torch = pytest.importorskip("torch")
    x, w, b = _shared_weight_grads(monkeypatch, True)
    assert jobs
    rng = np.random.default_rng(1)
    tx = torch.tensor(rng.standard_normal((8, 16, 32, 32)).astype(np.float32), requires_grad=True)
    tw = torch.tensor(rng.standard_normal((32, 16, 3, 3)).astype(np.float32) / 12, requires_grad=True)
    tb = torch.tensor(rng.standard_normal(32).astype(np.float32), requires_grad=True)
    y = sum(torch.nn.functional.conv2d(tx, tw, tb, padding=1) for _ in range(3))
    y.backward(torch.tensor(np.random.default_rng(2).standard_normal(tuple(y.shape)).astype(np.float32)))
    np.testing.assert_allclose(x, tx.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(w, tw.grad.numpy(), rtol=1e-4, atol=2e-2)
    np.testing.assert_allclose(b, tb.grad.numpy(), rtol=1e-4, atol=2e-2)


def test_a_failing_job_raises_in_backward_and_the_next_backward_works(monkeypatch, two_threads):
    def broken(*a):
        raise MemoryError("no room for the columns")

    monkeypatch.setattr(conv_kernels, "_mlas_wgrad", broken)
    with pytest.raises(MemoryError, match="no room"):
        _shared_weight_grads(monkeypatch, True)
    monkeypatch.undo()
    monkeypatch.setattr(threads, "blas_cap", lambda: 2)
    ref = _shared_weight_grads(monkeypatch, False)
    got = _shared_weight_grads(monkeypatch, True)
    assert all(np.array_equal(r, g) for r, g in zip(ref, got))


def test_dropped_jobs_are_not_run_and_get_runs_an_unclaimed_job_here():
    ran = []
    job = overlap.Later(lambda: ran.append(threading.current_thread().name) or 7)
    overlap.drop([job])
    assert job.done.is_set() and job.fn is None and not ran
    job = overlap.Later(lambda: ran.append(threading.current_thread().name) or 7)
    assert overlap.value(job) == 7 and ran == [threading.current_thread().name]
    assert overlap.value(5) == 5


def test_a_kernel_called_outside_backward_returns_arrays(two_threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    y, back = KERNELS["conv2d"](Ctx(_conv_attrs(w.shape, 1), True, needs=(True, True, True)), x, w,
                                np.zeros(32, np.float32))
    grads = back(np.ones_like(y))
    assert all(isinstance(g, np.ndarray) for g in grads)


def test_the_worker_caps_itself_at_one_thread_and_lends_it(two_threads):
    started, release, seen = threading.Event(), threading.Event(), {}

    def job():
        started.set()
        release.wait(5)
        seen["worker"] = threads.cap()
        return 1

    assert threads.cap() == 2
    with overlap.collecting():
        later = overlap.later(job)
        assert isinstance(later, overlap.Later)
        assert started.wait(5)
        seen["main while the worker runs"] = threads.cap()
        release.set()
        assert later.get() == 1
    assert seen == {"worker": 1, "main while the worker runs": 1}
    assert threads.cap() == 2


def test_a_full_queue_computes_in_line(monkeypatch, two_threads, jobs):
    monkeypatch.setattr(overlap, "MAX_QUEUED", 0)
    ref = _shared_weight_grads(monkeypatch, False)
    got = _shared_weight_grads(monkeypatch, True)
    assert not jobs
    assert all(np.array_equal(r, g) for r, g in zip(ref, got))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork here")
def test_a_forked_child_starts_its_own_worker(two_threads):
    import os
    started, release = threading.Event(), threading.Event()

    def busy():
        started.set()
        release.wait(5)
        return 0

    with overlap.collecting():
        job = overlap.later(busy)                       # the parent's worker is busy (a thread lent) ...
        assert started.wait(5) and threads.lent() == 1
        pid = os.fork()                                 # ... when the process forks
        if pid == 0:
            ok = False
            try:
                with overlap.collecting():
                    ok = threads.lent() == 0 and threads.cap() == 2
                    later = overlap.later(lambda: threading.current_thread().name)
                    ok = ok and isinstance(later, overlap.Later) and later.get() in ("specc-overlap",
                                                                                    "MainThread")
            finally:
                os._exit(0 if ok else 1)
        release.set()
        assert job.get() == 0
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.05)
    assert os.WEXITSTATUS(status) == 0


def test_an_error_later_in_the_pass_leaves_no_job_behind(monkeypatch, two_threads, jobs):
    rng = np.random.default_rng(4)
    x0 = Tensor(rng.standard_normal((8, 16, 32, 32)).astype(np.float32), requires_grad=True)

    def fails(g):
        raise FloatingPointError("a kernel's backward failed")

    x = Tensor(x0.data * 1)                            # made by an entry whose backward raises
    x._entry = Entry(fails, [x0], [x])
    w = Tensor(rng.standard_normal((32, 16, 3, 3)).astype(np.float32), requires_grad=True)
    b = Tensor(np.zeros(32, np.float32), requires_grad=True)
    y = _conv_tape(x, w, b, uses=3)
    with pytest.raises(FloatingPointError, match="failed"):
        y.backward(np.ones(y.shape, np.float32))
    assert jobs and all(j.done.wait(10) for j in jobs)  # run by the worker, or dropped unstarted
    assert not overlap._queue or all(j.claimed for j in overlap._queue)
    assert w.grad is None and b.grad is None


def test_a_shared_weight_with_in_line_and_later_gradients_keeps_the_order(monkeypatch, two_threads, jobs):
    """The same weight in a big convolution (its gradient a Later) and small ones (in line), in
    between: the gradient is summed in the order the tape met them, whatever thread computed what."""
    def grads(on):
        monkeypatch.setenv("SPECC_OVERLAP", "1" if on else "0")
        rng = np.random.default_rng(5)
        w = Tensor(rng.standard_normal((32, 16, 3, 3)).astype(np.float32) / 12, requires_grad=True)
        b = Tensor(rng.standard_normal(32).astype(np.float32), requires_grad=True)
        total = None
        for n in (1, 8, 1, 8, 1):                       # batch 1: below _LATER_MACS, in line
            x = Tensor(rng.standard_normal((n, 16, 32, 32)).astype(np.float32))
            y = _conv_tape(x, w, b, uses=1)
            s = _sum(y)
            total = s if total is None else _add(total, s)
        total.backward(np.ones(total.shape, np.float32))
        return w.grad, b.grad

    ref = grads(False)
    jobs.clear()
    got = grads(True)
    assert len(jobs) == 4
    for r, g in zip(ref, got):
        assert np.array_equal(r.view(np.uint32), g.view(np.uint32))


def _sum(y: Tensor) -> Tensor:
    t = Tensor(y.data.sum(axis=(0, 2, 3)))
    t._entry = Entry(lambda g: (np.broadcast_to(g[None, :, None, None], y.shape).astype(np.float32),), [y], [t])
    return t


def test_one_by_one_convolutions_stay_in_line(monkeypatch, two_threads, jobs):
    """A 1×1 stride-1 conv's weight gradient is a NumPy matmul on OpenBLAS, whose thread count is the
    process's: it is not handed to the worker."""
    monkeypatch.setenv("SPECC_OVERLAP", "1")
    rng = np.random.default_rng(6)
    x = Tensor(rng.standard_normal((16, 64, 32, 32)).astype(np.float32))
    w = Tensor(rng.standard_normal((64, 64, 1, 1)).astype(np.float32), requires_grad=True)
    y, back = KERNELS["conv2d"](Ctx(_conv_attrs(w.shape, 0, bias=False), True, needs=(False, True)), x.data, w.data)
    t = Tensor(y)
    t._entry = Entry(back, [x, w], [t])
    t.backward(np.ones_like(y))
    assert not jobs and w.grad is not None


def test_the_held_bytes_bound_computes_in_line(monkeypatch, two_threads, jobs):
    monkeypatch.setattr(overlap, "MAX_QUEUED_BYTES", 0)     # one job waits at a time, whatever its size
    ref = _shared_weight_grads(monkeypatch, False)
    got = _shared_weight_grads(monkeypatch, True)
    assert 1 <= len(jobs) < 6
    assert all(np.array_equal(r, g) for r, g in zip(ref, got))


def test_the_worker_takes_half_the_threads(monkeypatch):
    monkeypatch.setattr(threads, "blas_cap", lambda: 4)
    started, release, seen = threading.Event(), threading.Event(), {}

    def job():
        started.set()
        release.wait(5)
        seen["worker"] = threads.cap()

    with overlap.collecting():
        later = overlap.later(job)
        assert started.wait(5)
        seen["main"] = threads.cap()
        release.set()
        later.get()
    assert seen == {"worker": 2, "main": 2} and threads.cap() == 4
