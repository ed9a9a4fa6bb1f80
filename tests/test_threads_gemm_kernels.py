"""Dense, matmul and attention kernels run their small GEMMs on one BLAS thread (runtime.threads), forward
and backward, and leave the threads alone when the same work counts as big."""
import numpy as np
import pytest

from runtime import threads
from test_threads import fake  # noqa: F401  (the fixture: a fake BLAS controller with 4 threads)


def _run_and_back(name, attrs, inputs):
    from opcheck import run
    outs, bwd, _ = run(name, attrs, inputs)
    g = tuple(None if o is None else np.ones_like(o) for o in outs)
    bwd(g if len(g) > 1 else g[0])


R = np.random.default_rng(0)


@pytest.mark.parametrize("name, attrs, inputs, mkn", [
    ("linear", {"out_features": 3}, [R.standard_normal((2, 5))], 2 * 5 * 3),
    ("linear", {"out_features": 3}, [R.standard_normal((2, 4, 5))], 8 * 5 * 3),
    ("matmul", {}, [R.standard_normal((2, 3, 4)), R.standard_normal((4, 5))], 2 * 3 * 4 * 5),
    ("matmul", {}, [R.standard_normal((3, 4)), R.standard_normal((2, 4, 5))], 2 * 3 * 4 * 5),
    ("scaled_dot_product_attention", {}, [R.standard_normal((2, 3, 4)), R.standard_normal((2, 6, 4)),
                                          R.standard_normal((2, 6, 4)), None], 6 * 6 * 4),
    ("multi_head_attention", {"embed_dim": 8, "num_heads": 2},
     [R.standard_normal((2, 3, 8)), None, None, None], 2 * 3 * 8 * 24),
])
def test_small_gemm_kernels_run_on_one_thread(fake, monkeypatch, name, attrs, inputs, mkn):
    _run_and_back(name, attrs, inputs)
    assert fake.calls == [1, 4, 1, 4]                 # forward, then backward, each restored
    fake.calls.clear()
    monkeypatch.setattr(threads, "SMALL_GEMM", mkn)   # the same work counted as big: threads left alone
    _run_and_back(name, attrs, inputs)
    assert fake.calls == []
