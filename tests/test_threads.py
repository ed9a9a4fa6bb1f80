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
