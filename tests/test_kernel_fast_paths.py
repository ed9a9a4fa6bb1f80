"""The kernels' fast paths against PyTorch, bit for bit where the arithmetic allows: max pooling over
windows that tile the input (gradient by assignment), and the paths they fall back from."""
import numpy as np
import pytest

from compiler import ops
from runtime.kernels import Ctx, convolution


def _max_pool(attrs, x):
    a = ops.OPS["max_pool2d"].attrs.model_validate(attrs)
    y, bwd = convolution.max_pool2d(Ctx(a, training=True, needs=(True,)), x)
    return a, y, bwd


@pytest.mark.parametrize("attrs,shape,tiles", [
    ({"kernel_size": 2}, (2, 3, 8, 6), True),
    ({"kernel_size": [3, 2]}, (2, 3, 9, 8), True),
    ({"kernel_size": [1, 4]}, (1, 2, 5, 8), True),
    ({"kernel_size": [2, 1]}, (1, 2, 6, 5), True),
    ({"kernel_size": [1, 2]}, (2, 2, 5, 8), True),
    ({"kernel_size": 2}, (4, 16, 32, 32), True),                     # several pieces of planes
    ({"kernel_size": 2}, (2, 3, 9, 8), False),                       # odd height: floor drops a row
    ({"kernel_size": 2, "ceil_mode": True}, (1, 2, 7, 7), False),
    ({"kernel_size": 2, "padding": 1}, (1, 2, 6, 6), False),
    ({"kernel_size": 2, "stride": 2, "dilation": 2}, (1, 2, 8, 8), False),
])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2d_tiling_windows_as_torch(attrs, shape, tiles, ties):
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(0)
    x = r.standard_normal(shape).astype(np.float32)
    if ties:
        x = np.round(x)                       # many ties: the first maximum in row-major order wins
    a, y, bwd = _max_pool(attrs, x)
    assert convolution._tiles(convolution.pool_geometry(a, shape[2:]), shape[2:]) == tiles
    gy = r.standard_normal(y.shape).astype(np.float32)
    gx = bwd(gy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, a.kernel_size, a.stride, a.padding, a.dilation, a.ceil_mode)
    yt.backward(torch.tensor(gy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(gx, xt.grad.numpy())
    assert gx.dtype == np.float32


@pytest.mark.parametrize("ks", [2, [3, 2], [1, 2]])
def test_max_pool2d_pairs_path_has_torchs_bits_with_relu_ties(ks, monkeypatch):
    """The float32 two-wide tiling windows' gradient written as uint64 pairs (_tile_grad_pairs): the bits
    of PyTorch's, +0.0 where no maximum is (after a ReLU most windows tie at 0), and _tile_grad's values."""
    torch = pytest.importorskip("torch")
    if not convolution._PAIRS:
        pytest.skip("NumPy's shifts or the byte order here keep the strided path")
    calls = []
    real = convolution._tile_grad_pairs
    monkeypatch.setattr(convolution, "_tile_grad_pairs", lambda *a: calls.append(1) or real(*a))
    r = np.random.default_rng(1)
    kh = ks[0] if isinstance(ks, list) else ks
    x = np.maximum(r.standard_normal((3, 5, 4 * kh, 12)).astype(np.float32), 0)
    a, y, bwd = _max_pool({"kernel_size": ks}, x)
    gy = r.standard_normal(y.shape).astype(np.float32)
    gx = bwd(gy)
    assert calls
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, a.kernel_size).backward(torch.tensor(gy))
    np.testing.assert_array_equal(gx.view(np.uint32), xt.grad.numpy().view(np.uint32))
    monkeypatch.setattr(convolution, "_PAIRS", False)
    np.testing.assert_array_equal(_max_pool({"kernel_size": ks}, x)[2](gy), gx)     # the strided path


def test_max_pool2d_float64_keeps_the_strided_path(monkeypatch):
    monkeypatch.setattr(convolution, "_tile_grad_pairs", None)          # would fail if called
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8))
    a, y, bwd = _max_pool({"kernel_size": 2}, x)
    gx = bwd(np.ones_like(y))
    assert gx.dtype == np.float64 and gx.sum() == y.size
