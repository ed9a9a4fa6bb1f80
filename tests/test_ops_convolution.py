import math

import numpy as np
import pytest
from pydantic import ValidationError

from compiler.errors import ShapeError
from compiler.ir import TensorType
from opcheck import gradcheck, infer, make_params, onnx_parity, rand, run


def shape_error(name, attrs, shape) -> ShapeError:
    with pytest.raises(ShapeError) as e:
        infer(name, attrs, [TensorType(tuple(shape))])
    return e.value


def out_shape(name, attrs, shape):
    return infer(name, attrs, [TensorType(tuple(shape))])[2].outputs[0].shape


# -- shape rules: conv1d / conv2d ----------------------------------------------------------------------

def test_conv2d_shape_params_macs_lenet():
    _, _, inf = infer("conv2d", {"out_channels": 6, "kernel_size": 5, "padding": 2}, [("N", 1, 28, 28)])
    assert inf.outputs[0].shape == ("N", 6, 28, 28)
    assert [(p.name, p.shape) for p in inf.params] == [("weight", (6, 1, 5, 5)), ("bias", (6,))]
    assert inf.params[0].init.kind == "kaiming_uniform" and inf.params[0].init.kw == {"a": 5 ** 0.5}
    assert inf.params[1].init.kw == {"fan_in": 25}
    assert inf.macs == 6 * 28 * 28 * 1 * 25


@pytest.mark.parametrize("attrs,shape,want", [
    ({"out_channels": 8, "kernel_size": 3}, (2, 3, 10, 9), (2, 8, 8, 7)),
    ({"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 10, 9), (2, 8, 5, 5)),
    ({"out_channels": 8, "kernel_size": [3, 5], "dilation": 2, "padding": [1, 0]}, (2, 3, 10, 12), (2, 8, 8, 4)),
    ({"out_channels": 8, "kernel_size": 4, "padding": "same"}, (2, 3, 10, 9), (2, 8, 10, 9)),
    ({"out_channels": 8, "kernel_size": 4, "padding": "valid"}, (2, 3, 10, 9), (2, 8, 7, 6)),
    ({"out_channels": 8, "kernel_size": 3, "padding": "same"}, ("N", 3, "H", "W"), ("N", 8, "H", "W")),
    ({"out_channels": 8, "kernel_size": 3, "padding": 1}, ("N", 3, "H", "W"), ("N", 8, "H", "W")),
])
def test_conv2d_shapes(attrs, shape, want):
    assert out_shape("conv2d", attrs, shape) == want


def test_conv2d_groups_params_and_macs():
    _, _, inf = infer("conv2d", {"out_channels": 8, "kernel_size": 3, "groups": 4, "bias": False}, [(2, 12, 6, 6)])
    assert [(p.name, p.shape) for p in inf.params] == [("weight", (8, 3, 3, 3))]
    assert inf.macs == 8 * 4 * 4 * 3 * 9


def test_conv1d_shape_params_macs():
    _, _, inf = infer("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 2}, [("N", 6, 11)])
    assert inf.outputs[0].shape == ("N", 4, 5)
    assert [(p.name, p.shape) for p in inf.params] == [("weight", (4, 6, 3)), ("bias", (4,))]
    assert inf.params[1].init.kw == {"fan_in": 18}
    assert inf.macs == 4 * 5 * 6 * 3
    assert out_shape("conv1d", {"out_channels": 4, "kernel_size": [4], "padding": "same"}, (2, 6, 9)) == (2, 4, 9)


def test_conv2d_in_channels_mismatch_message():
    e = shape_error("conv2d", {"out_channels": 32, "kernel_size": 3, "in_channels": 16}, ("N", 6, 14, 14))
    assert e.attr == "in_channels"
    assert e.message == ("conv2d expects 16 input channels (in_channels: 16) but its input gives 6 "
                         "(shape N×6×14×14)")
    assert e.hint == "drop in_channels to infer it"
    assert out_shape("conv2d", {"out_channels": 32, "kernel_size": 3, "in_channels": 6}, (1, 6, 5, 5)) == (1, 32, 3, 3)


def test_conv_groups_errors():
    e = shape_error("conv2d", {"out_channels": 8, "kernel_size": 3, "groups": 4}, (1, 6, 8, 8))
    assert e.attr == "groups" and "input channels divisible by 4" in e.message and "1×6×8×8" in e.message
    e = shape_error("conv1d", {"out_channels": 6, "kernel_size": 3, "groups": 4}, (1, 8, 8))
    assert e.attr == "groups" and "out_channels divisible by 4" in e.message and "6" in e.message
    e = shape_error("conv_transpose2d", {"out_channels": 6, "kernel_size": 3, "groups": 4}, (1, 8, 8, 8))
    assert e.attr == "groups"


def test_conv_input_too_small():
    e = shape_error("conv2d", {"out_channels": 8, "kernel_size": 5}, (1, 3, 3, 9))
    assert e.attr == "kernel_size" and "too small" in e.message and "height 3" in e.message
    e = shape_error("conv1d", {"out_channels": 8, "kernel_size": 3, "dilation": 3}, (1, 3, 6))
    assert e.attr == "kernel_size" and "span 7" in e.message


def test_conv_same_needs_stride_one():
    e = shape_error("conv2d", {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": "same"}, (1, 3, 8, 8))
    assert e.attr == "padding" and "stride 1" in e.message


def test_conv_rank_errors():
    e = shape_error("conv2d", {"out_channels": 8, "kernel_size": 3}, ("N", 3, 32))
    assert "rank-4" in e.message and "N×3×32" in e.message
    e = shape_error("conv1d", {"out_channels": 8, "kernel_size": 3}, ("N", 3, 32, 32))
    assert "rank-3" in e.message and "N×3×32×32" in e.message


def test_conv_bad_attribute_values():
    assert shape_error("conv2d", {"out_channels": 8, "kernel_size": 0}, (1, 3, 8, 8)).attr == "kernel_size"
    assert shape_error("conv2d", {"out_channels": 8, "kernel_size": 3, "stride": [1, 0]}, (1, 3, 8, 8)).attr == "stride"
    assert shape_error("conv2d", {"out_channels": 8, "kernel_size": 3, "padding": -1}, (1, 3, 8, 8)).attr == "padding"
    assert shape_error("conv2d", {"out_channels": 0, "kernel_size": 3}, (1, 3, 8, 8)).attr == "out_channels"
    with pytest.raises(ValidationError):
        infer("conv2d", {"out_channels": 8, "kernel_size": True}, [(1, 3, 8, 8)])
    with pytest.raises(ValidationError):
        infer("conv2d", {"out_channels": 8, "kernel_size": [3, 3, 3]}, [(1, 3, 8, 8)])
    with pytest.raises(ValidationError):
        infer("conv2d", {"out_channels": 8, "kernel_size": 3, "padding": "full"}, [(1, 3, 8, 8)])


def test_conv_symbolic_spatial_size_needs_number():
    e = shape_error("conv2d", {"out_channels": 8, "kernel_size": 3}, ("N", 3, "H", 8))
    assert "symbol 'H'" in e.message


# -- shape rules: conv_transpose2d ---------------------------------------------------------------------

def test_conv_transpose2d_shape_params_macs():
    _, _, inf = infer("conv_transpose2d", {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1,
                                           "output_padding": 1, "groups": 2}, [("N", 4, 7, 5)])
    assert inf.outputs[0].shape == ("N", 8, 14, 10)
    assert [(p.name, p.shape) for p in inf.params] == [("weight", (4, 4, 3, 3)), ("bias", (8,))]
    assert inf.params[0].init.kw == {"a": 5 ** 0.5}          # fans from the weight shape, as torch
    assert inf.params[1].init.kw == {"fan_in": 4 * 9}        # weight.size(1) · receptive field
    assert inf.macs == 4 * 7 * 5 * 4 * 9


def test_conv_transpose2d_output_size_picks_output_padding():
    attrs = {"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1}
    assert out_shape("conv_transpose2d", attrs, (1, 3, 5, 4)) == (1, 2, 9, 7)
    assert out_shape("conv_transpose2d", {**attrs, "output_size": [10, 7]}, (1, 3, 5, 4)) == (1, 2, 10, 7)
    assert out_shape("conv_transpose2d", {**attrs, "output_size": 10}, (1, 3, 5, 5)) == (1, 2, 10, 10)
    e = shape_error("conv_transpose2d", {**attrs, "output_size": [11, 7]}, (1, 3, 5, 4))
    assert e.attr == "output_size" and "height 11" in e.message and "reachable sizes are 9, 10" in e.message
    e = shape_error("conv_transpose2d", {**attrs, "output_size": [10, 8], "output_padding": [0, 1]}, (1, 3, 5, 4))
    assert e.attr == "output_padding"


def test_conv_transpose2d_output_padding_limit():
    e = shape_error("conv_transpose2d", {"out_channels": 2, "kernel_size": 3, "stride": 2, "output_padding": 2},
                    (1, 3, 5, 4))
    assert e.attr == "output_padding" and "smaller than stride or dilation" in e.message
    # dilation also allows it, as in PyTorch
    assert out_shape("conv_transpose2d", {"out_channels": 2, "kernel_size": 3, "dilation": 2, "output_padding": 1},
                     (1, 3, 5, 4)) == (1, 2, 10, 9)


def test_conv_transpose2d_errors():
    e = shape_error("conv_transpose2d", {"out_channels": 2, "kernel_size": 3, "in_channels": 4}, (1, 3, 5, 4))
    assert e.attr == "in_channels" and "expects 4 input channels" in e.message
    e = shape_error("conv_transpose2d", {"out_channels": 2, "kernel_size": 1, "padding": 1}, (1, 3, 1, 4))
    assert e.attr == "padding"
    e = shape_error("conv_transpose2d", {"out_channels": 2, "kernel_size": 3}, (1, 3, 5))
    assert "rank-4" in e.message


def test_conv_init_matches_torch():
    torch = pytest.importorskip("torch")
    fans = torch.nn.init._calculate_fan_in_and_fan_out
    m = torch.nn.ConvTranspose2d(6, 8, (3, 2), groups=2)
    _, _, inf = infer("conv_transpose2d", {"out_channels": 8, "kernel_size": [3, 2], "groups": 2}, [(1, 6, 5, 5)])
    assert inf.params[0].shape == tuple(m.weight.shape)
    assert inf.params[1].init.kw["fan_in"] == fans(m.weight)[0]
    from compiler.init import fans as our_fans
    assert our_fans(inf.params[0].shape)[0] == fans(m.weight)[0]
    m = torch.nn.Conv2d(6, 8, (3, 2), groups=2)
    _, _, inf = infer("conv2d", {"out_channels": 8, "kernel_size": [3, 2], "groups": 2}, [(1, 6, 5, 5)])
    assert inf.params[0].shape == tuple(m.weight.shape)
    assert inf.params[1].init.kw["fan_in"] == fans(m.weight)[0]
    w = make_params("conv2d", {"out_channels": 8, "kernel_size": [3, 2], "groups": 2}, [(1, 6, 5, 5)])[0]
    bound = 1 / math.sqrt(fans(m.weight)[0])                 # kaiming_uniform(a=√5) bound
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound


# -- shape rules: pooling, upsample ----------------------------------------------------------------------

@pytest.mark.parametrize("name,attrs,shape,want", [
    ("max_pool2d", {"kernel_size": 2}, ("N", 6, 28, 28), ("N", 6, 14, 14)),
    ("max_pool2d", {"kernel_size": 2}, (1, 6, 7, 7), (1, 6, 3, 3)),
    ("max_pool2d", {"kernel_size": 2, "ceil_mode": True}, (1, 6, 7, 7), (1, 6, 4, 4)),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (1, 64, 112, 112), (1, 64, 56, 56)),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2}, (1, 4, 9, 9), (1, 4, 4, 4)),
    # ceil_mode drops a last window that would start in the right padding (PyTorch's rule)
    ("max_pool2d", {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 1, 4, 4), (1, 1, 3, 3)),
    ("avg_pool2d", {"kernel_size": [3, 2], "stride": [1, 2]}, (1, 6, 7, 7), (1, 6, 5, 3)),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "ceil_mode": True}, (1, 6, 8, 8), (1, 6, 4, 4)),
])
def test_pool_shapes(name, attrs, shape, want):
    assert out_shape(name, attrs, shape) == want


def test_pool_macs():
    _, _, inf = infer("max_pool2d", {"kernel_size": 2}, [("N", 6, 28, 28)])
    assert inf.macs == 6 * 14 * 14 * 4 and inf.params == []


def test_pool_errors():
    e = shape_error("max_pool2d", {"kernel_size": 3, "padding": 2}, (1, 3, 8, 8))
    assert e.attr == "padding" and "half" in e.message
    e = shape_error("avg_pool2d", {"kernel_size": 4, "padding": [1, 3]}, (1, 3, 8, 8))
    assert e.attr == "padding"
    e = shape_error("max_pool2d", {"kernel_size": 5}, (1, 3, 4, 8))
    assert e.attr == "kernel_size" and "too small" in e.message
    e = shape_error("avg_pool2d", {"kernel_size": 2}, ("N", 3, 8))
    assert "rank-4" in e.message and "N×3×8" in e.message
    assert shape_error("max_pool2d", {"kernel_size": 2, "stride": 0}, (1, 3, 8, 8)).attr == "stride"
    # a dilated window that skips over a 1-pixel input: only padding, output −inf (PyTorch: garbage indices)
    e = shape_error("max_pool2d", {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 2}, (1, 3, 1, 8))
    assert e.attr == "dilation" and "only padding" in e.message and "window 0 along height" in e.message
    assert out_shape("max_pool2d", {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 2},
                     (1, 3, 3, 8)) == (1, 3, 3, 8)                  # every window sees an input pixel
    with pytest.raises(ValidationError):
        infer("max_pool2d", {"kernel_size": 2, "count_include_pad": False}, [(1, 3, 8, 8)])
    with pytest.raises(ValidationError):
        infer("avg_pool2d", {"kernel_size": 2, "dilation": 2}, [(1, 3, 8, 8)])


def test_adaptive_and_global_shapes():
    assert out_shape("adaptive_avg_pool2d", {"output_size": 1}, ("N", 512, 7, 7)) == ("N", 512, 1, 1)
    assert out_shape("adaptive_avg_pool2d", {"output_size": [3, None]}, ("N", 8, 7, 6)) == ("N", 8, 3, 6)
    assert out_shape("adaptive_avg_pool2d", {"output_size": [3, 2]}, ("N", 8, "H", "W")) == ("N", 8, 3, 2)
    _, _, inf = infer("adaptive_avg_pool2d", {"output_size": [3, 2]}, [(1, 2, 7, 6)])
    assert inf.macs == 2 * (3 + 3 + 3) * 6                  # windows [0,3) [2,5) [4,7) overlap
    assert shape_error("adaptive_avg_pool2d", {"output_size": 0}, (1, 3, 8, 8)).attr == "output_size"
    assert "rank-4" in shape_error("adaptive_avg_pool2d", {"output_size": 2}, (1, 3, 8)).message
    _, _, inf = infer("global_avg_pool2d", {}, [("N", 512, 7, 7)])
    assert inf.outputs[0].shape == ("N", 512) and inf.macs == 512 * 49
    assert "rank-4" in shape_error("global_avg_pool2d", {}, ("N", 512)).message


def test_upsample_shapes():
    _, _, inf = infer("upsample", {"scale_factor": 2}, [("N", 3, 7, 5)])
    assert inf.outputs[0].shape == ("N", 3, 14, 10) and inf.macs == 0
    _, _, inf = infer("upsample", {"scale_factor": [1, 3], "mode": "bilinear"}, [("N", 3, "H", 5)])
    assert inf.outputs[0].shape == ("N", 3, "H", 15) and inf.macs == 4 * 3 * 15
    assert "symbol 'H'" in shape_error("upsample", {"scale_factor": 2}, ("N", 3, "H", 5)).message
    assert shape_error("upsample", {"scale_factor": 0}, (1, 3, 4, 4)).attr == "scale_factor"
    with pytest.raises(ValidationError):
        infer("upsample", {"scale_factor": 2, "mode": "bicubic"}, [(1, 3, 4, 4)])


# -- kernels: gradient checks ----------------------------------------------------------------------------

CONV2D = [
    {"out_channels": 4, "kernel_size": 3, "padding": 1},
    {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
    {"out_channels": 4, "kernel_size": [3, 2], "stride": [2, 1], "dilation": 2, "padding": [2, 1]},
    {"out_channels": 6, "kernel_size": 3, "groups": 2, "padding": "same"},
    {"out_channels": 4, "kernel_size": 4, "padding": "same", "dilation": [1, 2]},
    {"out_channels": 4, "kernel_size": 1},
    {"out_channels": 4, "kernel_size": 1, "stride": 2},
    {"out_channels": 4, "kernel_size": 2, "stride": 3},
    {"out_channels": 4, "kernel_size": 3, "padding": 3},
]


@pytest.mark.parametrize("attrs", CONV2D)
def test_conv2d_gradcheck(attrs):
    gradcheck("conv2d", attrs, [rand(2, 4, 7, 6)], max_points=20)


CONV1D = [
    {"out_channels": 3, "kernel_size": 3},
    {"out_channels": 4, "kernel_size": 4, "padding": "same", "groups": 2},
    {"out_channels": 3, "kernel_size": 3, "stride": 2, "dilation": 2, "padding": 1, "bias": False},
]


@pytest.mark.parametrize("attrs", CONV1D)
def test_conv1d_gradcheck(attrs):
    gradcheck("conv1d", attrs, [rand(2, 4, 11)], max_points=20)


CONVT = [
    {"out_channels": 3, "kernel_size": 3},
    {"out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
    {"out_channels": 4, "kernel_size": [3, 2], "stride": [2, 3], "padding": [2, 1], "dilation": 2, "groups": 2},
    {"out_channels": 2, "kernel_size": 3, "padding": 2, "dilation": 2, "output_padding": 1, "bias": False},
    {"out_channels": 2, "kernel_size": 2, "stride": 2},
    {"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1, "output_size": [10, 8]},
]


@pytest.mark.parametrize("attrs", CONVT)
def test_conv_transpose2d_gradcheck(attrs):
    gradcheck("conv_transpose2d", attrs, [rand(2, 4, 5, 4)], max_points=20)


POOL = [
    ("max_pool2d", {"kernel_size": 2}),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("max_pool2d", {"kernel_size": [3, 2], "stride": [2, 1], "padding": 1, "dilation": 2}),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("max_pool2d", {"kernel_size": 2, "stride": 3}),
    ("avg_pool2d", {"kernel_size": 2}),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", {"kernel_size": [2, 3], "stride": 1}),
    ("adaptive_avg_pool2d", {"output_size": [3, 2]}),
    ("adaptive_avg_pool2d", {"output_size": [4, None]}),
    ("adaptive_avg_pool2d", {"output_size": 2}),
    ("adaptive_avg_pool2d", {"output_size": 1}),
    ("global_avg_pool2d", {}),
    ("upsample", {"scale_factor": 2}),
    ("upsample", {"scale_factor": [3, 2], "mode": "bilinear"}),
    ("upsample", {"scale_factor": [1, 4], "mode": "bilinear"}),
]


@pytest.mark.parametrize("name,attrs", POOL)
def test_pool_gradcheck(name, attrs):
    x = rand(2, 3, 8, 7)
    if name == "max_pool2d":                     # distinct values: no ties within a window
        x = np.random.default_rng(3).permutation(x.size).reshape(x.shape) / x.size
    gradcheck(name, attrs, [x], max_points=30)


# -- kernels: behaviour --------------------------------------------------------------------------------

def test_conv2d_float32_preserved_and_needs_respected():
    x = rand(3, 3, 8, 8).astype(np.float32)
    attrs = {"out_channels": 4, "kernel_size": 3, "padding": 1}
    params = make_params("conv2d", attrs, [x], dtype=np.float32)
    (y,), bwd, _ = run("conv2d", attrs, [x], params, needs=(False, True, True))
    assert y.dtype == np.float32
    gx, gw, gb = bwd(np.ones_like(y))
    assert gx is None and gw.dtype == np.float32 and gw.shape == (4, 3, 3, 3) and gb.dtype == np.float32
    (_,), bwd, _ = run("conv2d", attrs, [x], params, needs=(True, False, False))
    gx, gw, gb = bwd(np.ones_like(y))
    assert gx.shape == x.shape and gx.dtype == np.float32 and gw is None and gb is None
    for name, a in [("conv2d", attrs), ("conv1d", {"out_channels": 4, "kernel_size": 3}),
                    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3, "stride": 2})]:
        xi = x[:, :, 0] if name == "conv1d" else x
        p = make_params(name, a, [xi], dtype=np.float32)
        for needs in [(False, False, False), (True, False, False), (False, True, False), (False, False, True)]:
            (y,), bwd, _ = run(name, a, [xi], p, needs=needs)
            grads = bwd(np.ones_like(y))
            assert [g is not None for g in grads] == list(needs), (name, needs)


def test_max_pool2d_ties_go_to_first_maximum():
    x = np.zeros((1, 1, 2, 2))
    (y,), bwd, _ = run("max_pool2d", {"kernel_size": 2}, [x])
    gx = bwd(np.ones_like(y))
    assert gx.tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]


@pytest.mark.parametrize("attrs", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                                   {"kernel_size": [2, 3], "stride": 1, "dilation": [2, 1]},
                                   {"kernel_size": 3, "stride": 1, "padding": 1},
                                   {"kernel_size": 2, "stride": 3, "padding": 1},
                                   {"kernel_size": [1, 3], "stride": [2, 2]},
                                   {"kernel_size": [3, 2], "stride": [2, 1], "padding": 1, "dilation": 2},
                                   {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}])
@pytest.mark.parametrize("threads", [1, 2])
def test_max_pool2d_ties_as_torch(attrs, threads, monkeypatch):
    """Many ties (small integers): the gradient goes to the first maximum in row-major order; also with
    the planes cut into one-plane pieces over two threads."""
    torch = pytest.importorskip("torch")
    if threads > 1:
        import runtime.kernels.convolution as K
        from runtime import parallel
        monkeypatch.setattr(parallel, "THREADS", threads)
        monkeypatch.setattr(parallel, "MIN_BYTES", 0)
        monkeypatch.setattr(K, "_POOL_BLOCK", 1)
    x = np.random.default_rng(0).integers(0, 3, (2, 3, 9, 8)).astype(np.float64)
    a = {"stride": None, "padding": 0, "dilation": 1, **attrs}
    torch_parity("max_pool2d", attrs, x, lambda t: torch.nn.functional.max_pool2d(
        t, _t(a["kernel_size"]), _t(a["stride"]), _t(a["padding"]), _t(a["dilation"]), a.get("ceil_mode", False)))


@pytest.mark.parametrize("name,attrs", [("conv1d", {"out_channels": 3, "kernel_size": 3}),
                                        ("conv1d", {"out_channels": 3, "kernel_size": 2, "stride": 2}),
                                        ("conv2d", {"out_channels": 3, "kernel_size": 3}),
                                        ("conv2d", {"out_channels": 3, "kernel_size": 1}),
                                        ("max_pool2d", {"kernel_size": 2}),
                                        ("upsample", {"scale_factor": 2, "mode": "bilinear"})])
def test_non_contiguous_inputs(name, attrs):
    """Inputs that are transposed views (e.g. after permute) give the same results as their copies."""
    x = rand(2, 6, 5, 4) if name != "conv1d" else rand(2, 9, 4)
    xt = np.swapaxes(x, 1, -1)                                 # a view with channels last in memory
    params = make_params(name, attrs, [xt])
    (y1,), b1, _ = run(name, attrs, [xt], params)
    (y2,), b2, _ = run(name, attrs, [np.ascontiguousarray(xt)], params)
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)
    gy = np.swapaxes(rand(*np.swapaxes(y1, 1, -1).shape), 1, -1)   # a non-contiguous gradient too
    def grads(r):
        return r if isinstance(r, tuple) else (r,)
    for g1, g2 in zip(grads(b1(gy)), grads(b2(np.ascontiguousarray(gy))), strict=True):
        np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-12)


def test_conv2d_known_values():
    # a 2×2 all-ones kernel sums each window: independent of any reference implementation
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    attrs = {"out_channels": 1, "kernel_size": 2, "stride": 2, "bias": False}
    (y,), _, _ = run("conv2d", attrs, [x], [np.ones((1, 1, 2, 2))])
    assert y.tolist() == [[[[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]]]]


def test_gradient_inputs_not_modified():
    x = rand(2, 4, 7, 6)
    params = make_params("conv2d", CONV2D[0], [x])
    (y,), bwd, _ = run("conv2d", CONV2D[0], [x], params)
    gy = rand(*y.shape)
    gy.setflags(write=False)
    keep = x.copy()
    bwd(gy)
    np.testing.assert_array_equal(x, keep)


@pytest.mark.parametrize("wide,per_sample", [(0.0, False), (100.0, False), (0.0, True), (100.0, True)])
@pytest.mark.parametrize("name,attrs,cin", [
    ("conv2d", {"out_channels": 4, "kernel_size": 3, "padding": 1}, 4),
    ("conv2d", {"out_channels": 12, "kernel_size": [3, 2], "padding": [2, 1], "dilation": [1, 2]}, 2),  # col2im
    ("conv2d", {"out_channels": 6, "kernel_size": 3, "stride": 2, "groups": 3}, 3),
    ("conv2d", {"out_channels": 4, "kernel_size": [2, 5], "stride": [3, 2], "padding": [1, 2]}, 3),   # phases
    ("conv2d", {"out_channels": 4, "kernel_size": 3, "stride": 2, "dilation": 2, "padding": 2}, 2),
    ("conv2d", {"out_channels": 4, "kernel_size": 1, "stride": 2}, 4),
    ("conv2d", {"out_channels": 4, "kernel_size": 1}, 4),
    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}, 4),
    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3, "padding": 1, "groups": 2}, 6),
])
def test_conv_blocks_and_column_layouts(monkeypatch, name, attrs, cin, wide, per_sample):
    """One sample per im2col block; columns over the padded width or exact; per sample or folded."""
    import runtime.kernels.convolution as K
    monkeypatch.setattr(K, "_BLOCK", 1)
    monkeypatch.setattr(K, "_MIN_COLS", 1)
    monkeypatch.setattr(K, "_WIDE", wide)
    monkeypatch.setattr(K, "_WIDE_ROWS", wide)
    monkeypatch.setattr(K, "_SAMPLE_COLS", 1 if per_sample else 10 ** 9)
    x = rand(3, cin, 7, 6)
    if wide == 0.0 and not per_sample:
        gradcheck(name, attrs, [x], max_points=10)
    F = pytest.importorskip("torch").nn.functional
    a = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **attrs}
    if name == "conv2d":
        fn = lambda x, w, b: F.conv2d(x, w, b, _t(a["stride"]), _t(a["padding"]), _t(a["dilation"]),  # noqa: E731
                                      a["groups"])
    else:
        fn = lambda x, w, b: F.conv_transpose2d(x, w, b, _t(a["stride"]), _t(a["padding"]), 0,  # noqa: E731
                                                a["groups"], _t(a["dilation"]))
    torch_parity(name, attrs, x, fn)


# -- ONNX parity ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", CONV2D)
def test_conv2d_onnx(attrs):
    onnx_parity("conv2d", attrs, [rand(2, 4, 7, 6)])


@pytest.mark.parametrize("attrs", CONV1D)
def test_conv1d_onnx(attrs):
    onnx_parity("conv1d", attrs, [rand(2, 4, 11)])


@pytest.mark.parametrize("attrs", CONVT + [
    {"out_channels": 2, "kernel_size": 3, "dilation": 2, "output_padding": 1},      # output_padding >= stride
    {"out_channels": 2, "kernel_size": 3, "padding": [0, 1], "dilation": 3, "stride": [1, 2],
     "output_padding": [2, 1], "bias": False},
])
@pytest.mark.parametrize("opset", [17, 18])
def test_conv_transpose2d_onnx(attrs, opset):
    onnx_parity("conv_transpose2d", attrs, [rand(2, 4, 5, 4)], opset=opset)


@pytest.mark.parametrize("name,attrs", POOL + [
    ("max_pool2d", {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg_pool2d", {"kernel_size": 2, "ceil_mode": True}),
    ("adaptive_avg_pool2d", {"output_size": [2, 3]}),     # divisible by one dim only
])
def test_pool_onnx(name, attrs):
    onnx_parity(name, attrs, [rand(2, 3, 8, 7)])


# PyTorch drops a ceil_mode window that starts in the right padding, ONNX keeps it: windows that hang
# over the end, windows dropped, trailing rows no window reads, and both at once (one per dim)
CEIL_EDGES = [
    ("max_pool2d", {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True}),
    ("max_pool2d", {"kernel_size": [2, 3], "stride": [3, 2], "padding": 1, "dilation": [1, 2], "ceil_mode": True}),
    ("avg_pool2d", {"kernel_size": [2, 3], "stride": [3, 2], "padding": 1, "ceil_mode": True}),
    ("avg_pool2d", {"kernel_size": [2, 3], "stride": [3, 2], "padding": 1, "ceil_mode": True,
                    "count_include_pad": False}),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
]


@pytest.mark.parametrize("name,attrs", CEIL_EDGES)
@pytest.mark.parametrize("shape", [(1, 2, 8, 8), (1, 2, 9, 7), (1, 2, 10, 11)])
def test_pool_ceil_mode_edges_onnx(name, attrs, shape):
    onnx_parity(name, attrs, [rand(*shape)])


@pytest.mark.parametrize("name,attrs", CEIL_EDGES)
@pytest.mark.parametrize("shape", [(1, 2, 8, 8), (1, 2, 9, 7), (1, 2, 10, 11)])
def test_pool_ceil_mode_edges_torch(name, attrs, shape):
    F = pytest.importorskip("torch").nn.functional
    a = {"stride": None, "padding": 0, "ceil_mode": False, **attrs}
    if name == "max_pool2d":
        fn = lambda x: F.max_pool2d(x, _t(a["kernel_size"]), _t(a["stride"]), _t(a["padding"]),  # noqa: E731
                                    _t(a.get("dilation", 1)), True)
    else:
        fn = lambda x: F.avg_pool2d(x, _t(a["kernel_size"]), _t(a["stride"]), _t(a["padding"]), True,  # noqa: E731
                                    a.get("count_include_pad", True))
    x = np.random.default_rng(2).permutation(math.prod(shape)).reshape(shape) / 10.0
    torch_parity(name, attrs, x, fn)


def test_onnx_lowerings_use_native_ops_and_explicit_pads():
    from compiler.ir import Node
    from compiler.onnx import LOWERINGS, Builder
    import compiler.ops as ops

    def lower(name, attrs, shape):
        opdef = ops.OPS[name]
        a = opdef.attrs.model_validate(attrs)
        inf = opdef.infer(a, [TensorType(shape)])
        b = Builder(18)
        b.ins = [TensorType(shape)]
        node = Node(name=name, op=name, attrs=a, inputs=[], outputs={"out": inf.outputs[0]}, params=inf.params)
        LOWERINGS[name](b, node, ["x"], [f"p{i}" for i in range(len(inf.params))])
        return b.nodes

    (conv,) = lower("conv2d", {"out_channels": 4, "kernel_size": 4, "padding": "same"}, ("N", 3, 8, 8))
    attrs = {a.name: a for a in conv.attribute}
    assert conv.op_type == "Conv" and "auto_pad" not in attrs and list(attrs["pads"].ints) == [1, 1, 2, 2]
    (pool,) = lower("avg_pool2d", {"kernel_size": 3, "padding": 1}, ("N", 3, 8, 8))
    attrs = {a.name: a for a in pool.attribute}
    assert pool.op_type == "AveragePool" and attrs["count_include_pad"].i == 1 and attrs["ceil_mode"].i == 0
    assert [n.op_type for n in lower("adaptive_avg_pool2d", {"output_size": 1}, ("N", 3, "H", "W"))] == \
        ["GlobalAveragePool"]
    assert [n.op_type for n in lower("adaptive_avg_pool2d", {"output_size": 2}, ("N", 3, 8, 6))] == ["AveragePool"]
    assert [n.op_type for n in lower("global_avg_pool2d", {}, ("N", 3, 8, 6))] == ["GlobalAveragePool", "Flatten"]
    (rs,) = lower("upsample", {"scale_factor": 2}, ("N", 3, 8, 6))
    attrs = {a.name: a.s for a in rs.attribute}
    assert attrs == {"mode": b"nearest", "coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"}
    from compiler.errors import UserError
    with pytest.raises(UserError, match="concrete input height"):
        lower("adaptive_avg_pool2d", {"output_size": 2}, ("N", 3, "H", "W"))


# -- PyTorch parity: forward and gradients ----------------------------------------------------------------

def torch_parity(name, attrs, x, fn):
    """Run our kernel (float64) and `fn(x, *params)` in torch with the same weights; compare outputs and
    the gradients of every input and parameter for a random output gradient."""
    torch = pytest.importorskip("torch")
    params = make_params(name, attrs, [x])
    (y,), bwd, inf = run(name, attrs, [x], params)
    gy = np.random.default_rng(5).standard_normal(y.shape)
    grads = bwd(gy)
    grads = grads if isinstance(grads, tuple) else (grads,)
    ts = [torch.tensor(v, requires_grad=True) for v in [x] + params]
    yt = fn(*ts)
    yt.backward(torch.tensor(gy))
    assert y.shape == tuple(yt.shape) == inf.outputs[0].shape
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert len(grads) == len(ts)
    for i, (g, t) in enumerate(zip(grads, ts)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{name} gradient {i}")


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("attrs", CONV2D + [
    {"out_channels": 8, "kernel_size": 3, "groups": 4, "stride": 2, "dilation": 2, "padding": 2},
    {"out_channels": 4, "kernel_size": [2, 5], "padding": "same"},
    {"out_channels": 4, "kernel_size": 3, "padding": "valid", "groups": 4},
])
def test_conv2d_torch(attrs):
    F = pytest.importorskip("torch").nn.functional
    a = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **attrs}
    fn = (lambda x, w, b=None: F.conv2d(x, w, b, _t(a["stride"]), a["padding"] if isinstance(a["padding"], str)
                                         else _t(a["padding"]), _t(a["dilation"]), a["groups"]))
    torch_parity("conv2d", attrs, rand(3, 8, 9, 8), fn)


def _t(v):
    return tuple(v) if isinstance(v, list) else v


@pytest.mark.parametrize("attrs", CONV1D + [
    {"out_channels": 4, "kernel_size": 3, "stride": 3, "padding": 2, "groups": 4},
    {"out_channels": 4, "kernel_size": 2, "dilation": 3, "padding": "same"},
])
def test_conv1d_torch(attrs):
    torch = pytest.importorskip("torch")
    a = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **attrs}
    fn = lambda x, w, b=None: torch.nn.functional.conv1d(x, w, b, a["stride"], a["padding"], a["dilation"],  # noqa: E731
                                                         a["groups"])
    torch_parity("conv1d", attrs, rand(2, 4, 13), fn)


@pytest.mark.parametrize("attrs", CONVT + [
    {"out_channels": 2, "kernel_size": 3, "padding": [0, 1], "dilation": 3, "stride": [1, 2], "output_padding": [2, 1]},
    {"out_channels": 8, "kernel_size": 3, "stride": 3, "padding": 1, "groups": 4, "output_size": [14, 10]},
])
def test_conv_transpose2d_torch(attrs):
    torch = pytest.importorskip("torch")
    x = rand(2, 4, 5, 4)
    a = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "output_padding": 0, **attrs}
    if "output_size" in attrs:
        m = torch.nn.ConvTranspose2d(4, attrs["out_channels"], attrs["kernel_size"], a["stride"], a["padding"],
                                     dilation=a["dilation"], groups=a["groups"], dtype=torch.float64)

        def fn(x, w, b):
            return torch.nn.functional.conv_transpose2d(
                x, w, b, m.stride, m.padding, m._output_padding(x, attrs["output_size"], m.stride, m.padding,
                                                                m.kernel_size, 2, m.dilation), m.groups, m.dilation)
    else:
        def fn(x, w, b=None):
            return torch.nn.functional.conv_transpose2d(x, w, b, _t(a["stride"]), _t(a["padding"]),
                                                        _t(a["output_padding"]), a["groups"], _t(a["dilation"]))
    torch_parity("conv_transpose2d", attrs, x, fn)


@pytest.mark.parametrize("name,attrs", POOL + [
    ("max_pool2d", {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", {"kernel_size": [3, 2], "stride": [2, 3], "padding": [1, 1], "ceil_mode": True}),
    ("adaptive_avg_pool2d", {"output_size": [5, 3]}),
    ("upsample", {"scale_factor": 3, "mode": "bilinear"}),
    ("upsample", {"scale_factor": [2, 3]}),
])
def test_pool_torch(name, attrs):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    a = {"stride": None, "padding": 0, "ceil_mode": False, **attrs}
    fns = {
        "max_pool2d": lambda x: F.max_pool2d(x, _t(a["kernel_size"]), _t(a["stride"]), _t(a["padding"]),
                                             _t(a.get("dilation", 1)), a["ceil_mode"]),
        "avg_pool2d": lambda x: F.avg_pool2d(x, _t(a["kernel_size"]), _t(a["stride"]), _t(a["padding"]),
                                             a["ceil_mode"], a.get("count_include_pad", True)),
        "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, _t(a.get("output_size"))),
        "global_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1),
        "upsample": lambda x: F.interpolate(x, scale_factor=_t(a.get("scale_factor")), mode=a.get("mode", "nearest")),
    }
    x = np.random.default_rng(11).permutation(2 * 3 * 9 * 7).reshape(2, 3, 9, 7) / 100.0
    torch_parity(name, attrs, x, fns[name])
