"""runtime.parallel, and the kernels that use it: the same bits at one thread and at two."""
import threading

import numpy as np
import pytest

from opcheck import make_params, run
from runtime import parallel


def test_threads_from_env():
    f = parallel.threads_from_env
    cpus = len(parallel._cpus())
    assert f({}) == 1 and f({"OMP_NUM_THREADS": "2"}) == 1            # off unless asked for
    assert f({"SPECC_NUM_THREADS": "3", "OMP_NUM_THREADS": "1"}) == 3
    assert f({"SPECC_NUM_THREADS": "x"}) == 1 and f({"SPECC_NUM_THREADS": "0"}) == 1
    assert f({"SPECC_NUM_THREADS": "100000"}) == 4 * cpus          # could not start its threads: exit 3
    assert f({"SPECC_NUM_THREADS": "auto"}) == cpus
    assert f({"SPECC_NUM_THREADS": "auto", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "2"}) == 1
    assert f({"SPECC_NUM_THREADS": " Auto ", "OPENBLAS_NUM_THREADS": "1"}) == 1
    assert f({"SPECC_NUM_THREADS": "auto", "OMP_NUM_THREADS": "1,2"}) == 1
    assert f({"SPECC_NUM_THREADS": "auto", "OMP_NUM_THREADS": str(cpus + 5)}) == cpus   # BLAS caps ≤ CPUs
    assert f({"SPECC_NUM_THREADS": "auto", "OMP_NUM_THREADS": "0"}) == cpus


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads, no size threshold: every parallel.run call splits."""
    monkeypatch.setattr(parallel, "THREADS", 2)
    monkeypatch.setattr(parallel, "MIN_BYTES", 0)


@pytest.mark.parametrize("n,step", [(1, None), (2, None), (7, None), (7, 1), (7, 3), (100, 8), (5, 100)])
def test_run_covers_range_once(two_threads, n, step):
    seen = np.zeros(n, int)
    names = set()

    def fn(lo, hi):
        assert 0 <= lo < hi <= n and (step is None or hi - lo <= step)
        seen[lo:hi] += 1
        names.add(threading.current_thread().name)

    parallel.run(fn, n, 1 << 30, step=step)
    assert seen.tolist() == [1] * n
    assert names <= {threading.current_thread().name} | {f"specc-parallel-{i}" for i in range(2)}


def test_run_small_or_single_thread_stays_on_caller(monkeypatch):
    names = []
    monkeypatch.setattr(parallel, "THREADS", 2)
    parallel.run(lambda lo, hi: names.append(threading.current_thread().name), 10, 10)    # under MIN_BYTES
    monkeypatch.setattr(parallel, "THREADS", 1)
    parallel.run(lambda lo, hi: names.append(threading.current_thread().name), 10, 1 << 30, step=2)
    assert set(names) == {threading.current_thread().name} and len(names) == 6


def test_run_with_explicit_threads_splits_when_threads_is_one(monkeypatch):
    """threads= overrides THREADS: the caller and threads − 1 workers share the pieces; a run inside a
    piece (on the caller too) stays on its thread."""
    monkeypatch.setattr(parallel, "THREADS", 1)
    monkeypatch.setattr(parallel, "MIN_BYTES", 0)
    names, inner = [], []
    gate = threading.Barrier(2, timeout=10)

    def fn(lo, hi):
        names.append(threading.current_thread().name)
        if lo < 2:
            gate.wait()                         # both threads hold a piece at once: really two threads
        me = threading.current_thread().name
        parallel.run(lambda a, b: inner.append((me, threading.current_thread().name, b - a)), 3, 1 << 30,
                     step=1, threads=2)

    parallel.run(fn, 4, 1 << 30, step=1, threads=2)
    assert len(names) == 4 and len(set(names)) == 2
    assert len(inner) == 12 and all(outer == own and size == 1 for outer, own, size in inner)
    assert parallel.threads_for(parallel.SPLIT_ALWAYS, 2) == 2
    assert parallel.threads_for(parallel.SPLIT_ALWAYS - 1, 2) == 1


def test_a_finished_job_keeps_nothing_alive(two_threads):
    """What a piece function refers to (a weight gradient's padded input, say) is freed when run returns,
    though a worker still holds the finished job until its next one."""
    import gc
    import weakref

    class Big:
        pass

    big = Big()
    ref = weakref.ref(big)
    parallel.run(lambda lo, hi, big=big: None, 8, 1 << 30, step=1)
    del big
    gc.collect()
    assert ref() is None


def test_run_nested_and_errors(two_threads):
    out = np.zeros(8, int)

    def inner(lo, hi):
        out[lo:hi] += 1

    def outer(lo, hi):
        parallel.run(lambda a, b: inner(lo + a, lo + b), hi - lo, 1 << 30)    # inline inside a worker

    parallel.run(outer, 8, 1 << 30)
    assert out.tolist() == [1] * 8

    def fails(lo, hi):
        if lo > 0:
            raise ValueError("worker slice")

    with pytest.raises(ValueError, match="worker slice"):
        parallel.run(fails, 4, 1 << 30)


# -- kernels: threaded == one thread, bit for bit ------------------------------------------------------

def _grads(r):
    return [g for g in (r if isinstance(r, tuple) else (r,)) if g is not None]


def _run_kernel(name, attrs, x, params, gy, training):
    (y,), bwd, _ = run(name, attrs, [x], [p.copy() for p in params], training=training)
    return [y.copy()] + [np.array(g) for g in _grads(bwd(gy))]


KERNELS = [
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (3, 5, 17, 16)),
    ("max_pool2d", {"kernel_size": 2}, (4, 3, 8, 8)),
    ("max_pool2d", {"kernel_size": [3, 2], "stride": [2, 1], "padding": 1, "dilation": 2}, (2, 3, 9, 8)),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (3, 4, 9, 8)),
    ("relu", {}, (3, 4, 9, 8)),
    ("batch_norm", {"num_features": 6}, (5, 6, 9, 8)),                # L ≥ 64: per (sample, channel) sums
    ("batch_norm", {"num_features": 6}, (5, 6, 4, 3)),                # small L: column sums
    ("batch_norm", {"num_features": 6, "affine": False}, (7, 6)),
    ("batch_norm", {"num_features": 3}, (2, 3, 91, 91)),             # rows kept (L ≥ 8192), einsum dots
    ("conv2d", {"out_channels": 4, "kernel_size": 3, "padding": 1}, (3, 5, 9, 8)),
    ("conv2d", {"out_channels": 12, "kernel_size": [3, 2], "padding": [2, 1], "dilation": [1, 2]}, (3, 2, 7, 6)),
    ("conv2d", {"out_channels": 4, "kernel_size": [2, 5], "stride": [3, 2], "padding": [1, 2]}, (3, 3, 9, 8)),
    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}, (3, 4, 5, 6)),
]


def _force_pieces(monkeypatch, threads):
    """Threads as given, no size threshold, and tiny pieces everywhere (many pieces per call)."""
    import runtime.kernels.convolution as K
    import runtime.kernels.normalisation as N
    monkeypatch.setattr(parallel, "THREADS", threads)
    monkeypatch.setattr(parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "PIECE_BYTES", 64)
    monkeypatch.setattr(K, "_POOL_BLOCK", 1)
    monkeypatch.setattr(N, "_PIECE", 64)


@pytest.mark.parametrize("name,attrs,shape", KERNELS)
def test_kernel_threaded_equals_one_thread(monkeypatch, name, attrs, shape):
    """Outputs and gradients: the same bits with one thread and whole arrays, and with two threads and
    small pieces; for the convolutions also one sample per im2col block."""
    import runtime.kernels.convolution as K
    rng = np.random.default_rng(11)
    if "pool" in name:
        x = rng.integers(-3, 4, shape).astype(np.float32)         # ties
    else:
        x = rng.standard_normal(shape).astype(np.float32)
    params = make_params(name, attrs, [x], dtype=np.float32)
    (y,), _, _ = run(name, attrs, [x], params)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    monkeypatch.setattr(parallel, "THREADS", 1)
    want = _run_kernel(name, attrs, x, params, gy, True)
    for threads in (1, 2):
        _force_pieces(monkeypatch, threads)
        got = _run_kernel(name, attrs, x, params, gy, True)
        if name.startswith("conv"):
            monkeypatch.setattr(K, "_BLOCK", 1)
            monkeypatch.setattr(K, "_MIN_COLS", 1)
            got_blocks = _run_kernel(name, attrs, x, params, gy, True)
            monkeypatch.undo()
            monkeypatch.setattr(K, "_BLOCK", 1)
            monkeypatch.setattr(K, "_MIN_COLS", 1)
            want_blocks = _run_kernel(name, attrs, x, params, gy, True)
            monkeypatch.undo()
            _same(got_blocks, want_blocks, name)
        _same(got, want, name)


def _same(got, want, name):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), name


def test_training_bit_for_bit_at_any_thread_count(monkeypatch):
    """A few training steps of a small conv net (conv, batch norm, relu, max pool): the same weights
    with the pool off and with two threads and tiny pieces."""
    import yaml

    import compiler
    from runtime import Model
    from runtime.optim import SGD
    spec = {"name": "tiny_cnn", "inputs": {"image": ["N", 3, 12, 12], "label": {"shape": ["N"], "dtype": "int64"}},
            "layers": [{"op": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
                       {"op": "batch_norm"}, "relu",
                       {"op": "max_pool2d", "kernel_size": 3, "stride": 2, "padding": 1},
                       {"op": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2},
                       {"op": "batch_norm"}, "relu", "flatten",
                       {"op": "linear", "name": "fc", "out_features": 3},
                       {"op": "cross_entropy", "name": "loss", "in": ["fc", "label"]}],
            "outputs": ["fc"]}
    g = compiler.compile_text(yaml.safe_dump(spec, sort_keys=False))
    rng = np.random.default_rng(0)
    data = {"image": rng.standard_normal((6, 3, 12, 12)).astype(np.float32),
            "label": rng.integers(0, 3, 6).astype(np.int64)}

    def train(threads):
        _force_pieces(monkeypatch, threads)
        m = Model(g, seed=1)
        m.train()
        opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            out = m.forward(outputs=["loss"], **data)
            out["loss"].backward()
            opt.step()
            opt.zero_grad()
        monkeypatch.undo()
        return {k: v.copy() for k, v in m.state_dict().items()}

    one, two = train(1), train(2)
    assert one.keys() == two.keys()
    for k in one:
        assert np.array_equal(np.atleast_1d(one[k]).view(np.uint8), np.atleast_1d(two[k]).view(np.uint8)), k
