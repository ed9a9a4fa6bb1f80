"""runtime.threads: one BLAS thread for small GEMMs, restored afterwards; nothing changes without threadpoolctl."""
import numpy as np
import pytest

from runtime import threads


class FakeBlas:
    def __init__(self, n):
        self.num_threads = n
        self.calls = []

    def set_num_threads(self, n):
        self.calls.append(n)
        self.num_threads = n


@pytest.fixture
def fake(monkeypatch):
    blas = FakeBlas(4)
    monkeypatch.setattr(threads, "_controllers", [blas])
    monkeypatch.setattr(threads, "_other_pool_until", 0.0)     # no onnxruntime kernel ran just before
    monkeypatch.delenv("SPECC_BLAS_POLICY", raising=False)
    return blas


def test_small_gemm_runs_single_threaded_and_restores(fake):
    with threads.gemm(64, 128, 384):
        assert fake.num_threads == 1
        with threads.gemm(64, 128, 384):             # nested: no second change
            assert fake.num_threads == 1
        assert fake.num_threads == 1
    assert fake.num_threads == 4 and fake.calls == [1, 4]


def test_big_gemm_keeps_the_threads(fake):
    with threads.gemm(4096, 4096, 4096):
        assert fake.num_threads == 4
    assert fake.calls == []


def test_big_gemms_run_on_one_thread_while_onnxruntime_works(fake, monkeypatch):
    """After an MLAS convolution (onnxruntime's pool), OpenBLAS keeps one thread for OTHER_POOL_HOLD
    seconds: its spinning threads would take the cores onnxruntime's need."""
    threads.other_pool_used()
    with threads.gemm(4096, 4096, 4096):
        assert fake.num_threads == 1
    assert fake.num_threads == 4
    monkeypatch.setattr(threads, "_other_pool_until", 0.0)      # the hold has run out
    with threads.gemm(4096, 4096, 4096):
        assert fake.num_threads == 4


def test_an_mlas_convolution_starts_the_hold(fake):
    from runtime import mlas_conv
    if mlas_conv.block_size() == 0:
        pytest.skip("no NCHWc convolution in this onnxruntime")
    x = np.ones((1, 16, 6, 6), np.float32)
    mlas_conv.conv(x, np.ones((16, 16, 3, 3), np.float32), None, ((1, 1), (1, 1)), (1, 1), (1, 1))
    with threads.gemm(4096, 4096, 4096):
        assert fake.num_threads == 1


def test_restored_after_an_exception(fake):
    with pytest.raises(ValueError):
        with threads.single():
            raise ValueError("x")
    assert fake.num_threads == 4 and not threads._single


def test_policy_off_changes_nothing(fake, monkeypatch):
    monkeypatch.setenv("SPECC_BLAS_POLICY", "off")
    with threads.gemm(2, 2, 2):
        assert fake.num_threads == 4
    assert fake.calls == []


def test_without_threadpoolctl_nothing_happens(monkeypatch):
    monkeypatch.setattr(threads, "_controllers", [])
    with threads.gemm(2, 2, 2):
        assert np.matmul(np.eye(2), np.ones((2, 2))).sum() == 4


def test_real_blas_count_is_limited_and_restored():
    pytest.importorskip("threadpoolctl")
    ctrls = threads._blas()
    if not ctrls:
        pytest.skip("no BLAS library found by threadpoolctl")
    before = [c.num_threads for c in ctrls]
    for c in ctrls:
        c.set_num_threads(2)
    try:
        with threads.single():
            assert all(c.num_threads == 1 for c in ctrls)
        assert all(c.num_threads == 2 for c in ctrls)
    finally:
        for c, n in zip(ctrls, before):
            c.set_num_threads(n)


def _conv_and_back(name, attrs, x):
    from opcheck import run
    outs, bwd, _ = run(name, attrs, [x])
    bwd(np.ones_like(outs[0]))


@pytest.mark.parametrize("name, attrs, x, mkn", [
    ("conv2d", {"out_channels": 4, "kernel_size": 3, "padding": 1}, (2, 3, 8, 8), 2 * 64 * 4 * 27),
    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3, "stride": 2}, (2, 3, 5, 5), 2 * 25 * 3 * 36),
    ("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 2}, (2, 3, 9), 2 * 5 * 4 * 9),
])
def test_small_convolutions_run_on_one_thread(fake, monkeypatch, name, attrs, x, mkn):
    x = np.random.default_rng(0).standard_normal(x)
    _conv_and_back(name, attrs, x)
    assert fake.calls == [1, 4, 1, 4]                 # forward, then backward, each restored
    fake.calls.clear()
    monkeypatch.setattr(threads, "SMALL_GEMM", mkn)   # the same work counted as big: threads left alone
    _conv_and_back(name, attrs, x)
    assert fake.calls == []


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_recurrent_time_loop_runs_on_one_thread(fake, monkeypatch, name):
    from opcheck import run
    x = np.random.default_rng(0).standard_normal((5, 2, 3))       # [T, N, input]
    attrs = {"hidden_size": 4, "batch_first": False}
    outs, bwd, _ = run(name, attrs, [x] + [None] * (2 if name == "lstm" else 1))
    bwd(tuple(np.ones_like(o) if o is not None else None for o in outs))
    assert fake.calls == [1, 4, 1, 4]                 # the whole layer is small: one region each way
    fake.calls.clear()
    ng = {"rnn": 1, "lstm": 4, "gru": 3}[name]
    monkeypatch.setattr(threads, "SMALL_GEMM", 10 * 4 * ng * 4)      # the layer big, one step's GEMM small
    outs, bwd, _ = run(name, attrs, [x] + [None] * (2 if name == "lstm" else 1))
    bwd(tuple(np.ones_like(o) if o is not None else None for o in outs))
    assert fake.calls == [1, 4, 1, 4]                 # only the time loops limited
