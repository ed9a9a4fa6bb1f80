import numpy as np
import pytest

from compiler.errors import ShapeError
from compiler.ir import TensorType
from opcheck import gradcheck, infer, make_params, onnx_parity, rand, run
from compiler.init import initialise


def shape_error(name, attrs, inputs):
    with pytest.raises(ShapeError) as e:
        infer(name, attrs, inputs)
    return e.value


def bn_params(c, affine=True, dtype=np.float64, seed=3):
    """weight, bias (when affine), running_mean, running_var, num_batches_tracked (int64, as PyTorch)."""
    r = np.random.default_rng(seed)
    ps = [r.uniform(0.5, 1.5, c), r.uniform(-0.5, 0.5, c)] if affine else []
    ps += [r.uniform(-0.3, 0.3, c), r.uniform(0.5, 2.0, c)]
    return [p.astype(dtype) for p in ps] + [np.zeros((), np.int64)]


# -- batch_norm ---------------------------------------------------------------------------------

def test_batch_norm_shape_params_macs():
    _, _, inf = infer("batch_norm", {}, [("N", 3, 8, 8)])
    assert inf.outputs[0].shape == ("N", 3, 8, 8)
    assert [(p.name, p.shape, p.buffer, p.dtype) for p in inf.params] == [
        ("weight", (3,), False, "float32"), ("bias", (3,), False, "float32"),
        ("running_mean", (3,), True, "float32"), ("running_var", (3,), True, "float32"),
        ("num_batches_tracked", (), True, "int64")]
    assert [p.init.kind for p in inf.params] == ["ones", "zeros", "zeros", "ones", "zeros"]
    assert inf.macs == 3 * 8 * 8
    _, _, inf = infer("batch_norm", {"affine": False, "num_features": 5}, [("N", 5)])
    assert [p.name for p in inf.params] == ["running_mean", "running_var", "num_batches_tracked"]
    assert inf.macs == 5
    _, _, inf = infer("batch_norm", {}, [("N", 4, "T")])
    assert inf.outputs[0].shape == ("N", 4, "T") and inf.params[0].shape == (4,)


def test_batch_norm_errors():
    e = shape_error("batch_norm", {"num_features": 16}, [("N", 6, 14, 14)])
    assert e.attr == "num_features" and "16" in e.message and "6" in e.message and "N×6×14×14" in e.message
    e = shape_error("batch_norm", {}, [("N", 3, 4, 4, 4)])
    assert "rank 5" in e.message and "N×C×H×W" in e.message
    e = shape_error("batch_norm", {}, [("N",)])
    assert "rank 1" in e.message
    e = shape_error("batch_norm", {"momentum": 1.5}, [("N", 3)])
    assert e.attr == "momentum"
    e = shape_error("batch_norm", {}, [("N", "C", 4)])
    assert "'C'" in e.message
    e = shape_error("batch_norm", {}, [TensorType(("N", 3), "int64")])
    assert "int64" in e.message


@pytest.mark.parametrize("shape", [(6, 3), (3, 4, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(shape, affine, training):
    p = bn_params(shape[1], affine)
    buffers = (3, 4) if affine else (1, 2)
    gradcheck("batch_norm", {"affine": affine}, [rand(*shape)], p, training=training, skip=buffers)


@pytest.mark.parametrize("piece", [None, 256])
@pytest.mark.parametrize("shape", [(3, 3, 8, 8), (3, 5, 4, 5)])
def test_batch_norm_gradcheck_every_path(monkeypatch, shape, piece):
    """The fused per-(sample, channel) sums (L ≥ 64) and the column sums (small L), each in one piece and,
    with a tiny piece size, split into runs of whole channels / several column pieces."""
    from runtime.kernels import normalisation
    if piece is not None:
        monkeypatch.setattr(normalisation, "_PIECE", piece)
        ch = normalisation._Channels(np.empty(shape))
        assert ch.blocks > 1 if ch.per_row else ch.cl > max(64, piece // (ch.n * ch.item))
    gradcheck("batch_norm", {}, [rand(*shape)], bn_params(shape[1]), training=True, skip=(3, 4))


def test_batch_norm_training_needs_two_values():
    with pytest.raises(ValueError, match="more than one value per channel"):
        run("batch_norm", {}, [rand(1, 3)], bn_params(3), training=True)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 7), (2, 3, 4, 5)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("opset", [17, 18, 21])
def test_batch_norm_onnx(shape, affine, opset):
    onnx_parity("batch_norm", {"affine": affine, "eps": 1e-3}, [rand(*shape)],
                bn_params(shape[1], affine, np.float32), opset=opset)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 6), (4, 3, 5, 6)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batch_norm_torch_training(shape, affine, momentum):
    """Three training steps then one eval step: outputs, gradients and running statistics match PyTorch."""
    torch = pytest.importorskip("torch")
    c = shape[1]
    mod = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[len(shape)](
        c, eps=1e-5, momentum=momentum, affine=affine)
    p = bn_params(c, affine, np.float32)
    with torch.no_grad():
        if affine:
            mod.weight.copy_(torch.tensor(p[0]))
            mod.bias.copy_(torch.tensor(p[1]))
        mod.running_mean.copy_(torch.tensor(p[-3]))
        mod.running_var.copy_(torch.tensor(p[-2]))
    attrs = {"affine": affine, "momentum": momentum}
    r = np.random.default_rng(0)
    for step, training in enumerate([True, True, True, False]):
        x = (r.standard_normal(shape) * 2 + 0.5).astype(np.float32)
        gy = r.standard_normal(shape).astype(np.float32)
        (y,), bwd, _ = run("batch_norm", attrs, [x], p, training=training)
        assert y.dtype == np.float32
        grads = bwd(gy)
        mod.train(training)
        xt = torch.tensor(x, requires_grad=True)
        mod.zero_grad()
        yt = mod(xt)
        yt.backward(torch.tensor(gy))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(grads[0], xt.grad.numpy(), rtol=1e-4, atol=1e-4)
        if affine:
            np.testing.assert_allclose(grads[1], mod.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(grads[2], mod.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(p[-3], mod.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p[-2], mod.running_var.numpy(), rtol=1e-5, atol=1e-6)
        assert int(p[-1]) == int(mod.num_batches_tracked) == min(step + 1, 3)
    sd = mod.state_dict()
    _, _, inf = infer("batch_norm", attrs, [shape])
    assert [q.name for q in inf.params] == list(sd)


@pytest.mark.parametrize("long", [False, True])
@pytest.mark.parametrize("piece", [None, 256])
def test_batch_norm_keep_x_path(monkeypatch, long, piece):
    """The long-row training path (x kept, one-pass Chan statistics), with the per-channel vectors
    repeated or broadcast over L and in one piece or runs of whole channels: float64 gradients against
    finite differences, float32 outputs, gradients and running statistics against PyTorch."""
    from runtime.kernels import normalisation
    monkeypatch.setattr(normalisation, "_KEEP_X_ROWS", 64)
    monkeypatch.setattr(normalisation, "_LONG_ROWS", 64 if long else 1 << 30)
    if piece is not None:
        monkeypatch.setattr(normalisation, "_ROW_PIECE", piece)
    gradcheck("batch_norm", {}, [rand(3, 3, 8, 8)], bn_params(3), training=True, skip=(3, 4))
    gradcheck("batch_norm", {"affine": False}, [rand(2, 3, 8, 9)], bn_params(3, False), training=True, skip=(1, 2))
    for momentum in (0.1, None):
        test_batch_norm_torch_training((4, 3, 8, 10), True, momentum)
    test_batch_norm_torch_training((4, 3, 70), False, 0.1)


def test_batch_norm_keep_x_path_offset_mean():
    """One-pass statistics stay accurate when the mean is large against the spread (float32, vs PyTorch)."""
    torch = pytest.importorskip("torch")
    x = (np.random.default_rng(1).standard_normal((4, 2, 96, 96)) * 0.1 + 30).astype(np.float32)
    gy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    p = bn_params(2, True, np.float32)
    w, b, rm, rv = (torch.tensor(q, dtype=torch.float64) for q in p[:4])
    (y,), bwd, _ = run("batch_norm", {}, [x], p, training=True)
    gx = bwd(gy)[0]
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, rm, rv, w, b, training=True)
    yt.backward(torch.tensor(gy, dtype=torch.float64))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(p[3], rv.numpy(), rtol=1e-4)


def test_batch_norm_float32_stays_float32_and_skips_unneeded_grads():
    x = rand(4, 3, 5, 5).astype(np.float32)
    p = bn_params(3, True, np.float32)
    (y,), bwd, _ = run("batch_norm", {}, [x], p, training=True, needs=(False, True, False, False, False, False))
    gx, gw, gb, *_ = bwd(np.ones_like(y))
    assert y.dtype == np.float32 and gw.dtype == np.float32 and gx is None and gb is None


# -- layer_norm ---------------------------------------------------------------------------------

def test_layer_norm_shape_params_macs():
    _, _, inf = infer("layer_norm", {}, [("N", "T", 8)])
    assert inf.outputs[0].shape == ("N", "T", 8)
    assert [(p.name, p.shape, p.init.kind) for p in inf.params] == [("weight", (8,), "ones"), ("bias", (8,), "zeros")]
    assert inf.macs == 8
    _, _, inf = infer("layer_norm", {"normalized_shape": [4, 5]}, [("N", 3, 4, 5)])
    assert [p.shape for p in inf.params] == [(4, 5), (4, 5)] and inf.macs == 60
    _, _, inf = infer("layer_norm", {"normalized_shape": 5, "elementwise_affine": False}, [("N", 5)])
    assert inf.params == []
    _, _, inf = infer("layer_norm", {"bias": False}, [("N", 5)])
    assert [p.name for p in inf.params] == ["weight"]


def test_layer_norm_errors():
    e = shape_error("layer_norm", {"normalized_shape": [4, 6]}, [("N", 3, 4, 5)])
    assert e.attr == "normalized_shape" and "4×6" in e.message and "N×3×4×5" in e.message
    e = shape_error("layer_norm", {"normalized_shape": [2, 3, 4]}, [("N", 4)])
    assert e.attr == "normalized_shape" and "only 2" in e.message
    e = shape_error("layer_norm", {}, [("N", "D")])
    assert "'D'" in e.message


@pytest.mark.parametrize("attrs,shape", [
    ({}, (3, 5)), ({}, (2, 3, 4)), ({"normalized_shape": [3, 4]}, (2, 3, 4)),
    ({"normalized_shape": 4, "elementwise_affine": False}, (2, 3, 4)), ({"bias": False}, (3, 6)),
    ({"eps": 0.1}, (2, 5))])
def test_layer_norm_gradcheck(attrs, shape):
    x = rand(*shape)
    p = [q + rand(*q.shape) * 0.3 for q in make_params("layer_norm", attrs, [x])]
    gradcheck("layer_norm", attrs, [x], p)


@pytest.mark.parametrize("attrs,shape", [
    ({}, (3, 5)), ({}, (2, 3, 4)), ({"normalized_shape": [3, 4]}, (2, 3, 4)),
    ({"elementwise_affine": False}, (2, 3, 4)), ({"bias": False}, (3, 6))])
@pytest.mark.parametrize("opset", [17, 18])
def test_layer_norm_onnx(attrs, shape, opset):
    x = rand(*shape)
    p = [(q + rand(*q.shape) * 0.3).astype(np.float32) for q in make_params("layer_norm", attrs, [x])]
    onnx_parity("layer_norm", attrs, [x], p, opset=opset)


@pytest.mark.parametrize("ns", [None, [3, 4]])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_torch(ns, affine):
    torch = pytest.importorskip("torch")
    x = (rand(2, 3, 4) * 3 + 1).astype(np.float32)
    attrs = {"normalized_shape": ns, "elementwise_affine": affine}
    p = [(q + rand(*q.shape) * 0.3).astype(np.float32) for q in make_params("layer_norm", attrs, [x])]
    gy = rand(2, 3, 4).astype(np.float32)
    (y,), bwd, _ = run("layer_norm", attrs, [x], p)
    grads = bwd(gy)
    mod = torch.nn.LayerNorm(ns or 4, elementwise_affine=affine)
    if affine:
        with torch.no_grad():
            mod.weight.copy_(torch.tensor(p[0]))
            mod.bias.copy_(torch.tensor(p[1]))
    xt = torch.tensor(x, requires_grad=True)
    yt = mod(xt)
    yt.backward(torch.tensor(gy))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[0], xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    if affine:
        np.testing.assert_allclose(grads[1], mod.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(grads[2], mod.bias.grad.numpy(), rtol=1e-4, atol=1e-5)


# -- dropout ------------------------------------------------------------------------------------

def test_dropout_shape_and_errors():
    opdef, a, inf = infer("dropout", {"p": 0.2}, [("N", 7)])
    assert inf.outputs[0].shape == ("N", 7) and inf.params == [] and opdef.primary == "p" and a.p == 0.2
    assert infer("dropout", {}, [("N", 7)])[1].p == 0.5
    for p in (1.0, -0.1, 1.5):
        e = shape_error("dropout", {"p": p}, [("N", 7)])
        assert e.attr == "p" and str(p) in e.message


def test_dropout_train_and_eval():
    x = rand(200, 100).astype(np.float32) + 2
    (y,), bwd, _ = run("dropout", {"p": 0.3}, [x])
    np.testing.assert_array_equal(y, x)
    assert bwd(np.ones_like(x))[0] is not None
    (y,), bwd, _ = run("dropout", {"p": 0.3}, [x], training=True, seed=5)
    assert y.dtype == np.float32
    dropped = y == 0
    assert 0.28 < dropped.mean() < 0.32
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.7, rtol=1e-6)
    (gx,) = bwd(np.ones_like(x))
    np.testing.assert_allclose(gx, np.where(dropped, 0, 1 / 0.7), rtol=1e-6)
    (y2,), _, _ = run("dropout", {"p": 0.3}, [x], training=True, seed=5)
    np.testing.assert_array_equal(y, y2)                       # the mask comes from ctx.rng
    (y3,), _, _ = run("dropout", {"p": 0.3}, [x], training=True, seed=6)
    assert not np.array_equal(y, y3)


@pytest.mark.parametrize("training", [True, False])
def test_dropout_gradcheck(training):
    gradcheck("dropout", {"p": 0.4}, [rand(4, 6)], training=training)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4, 4)])
def test_dropout_onnx(shape):
    onnx_parity("dropout", {"p": 0.5}, [rand(*shape)])


# -- standardize --------------------------------------------------------------------------------

def test_standardize_shape_params():
    _, _, inf = infer("standardize", {"mean": [0.5, 0.4, 0.3], "std": 0.25}, [("N", 3, 32, 32)])
    assert inf.outputs[0] == TensorType(("N", 3, 32, 32), "float32")
    assert [(p.name, p.shape, p.buffer) for p in inf.params] == [("mean", (3,), True), ("std", (3,), True)]
    assert inf.params[0].init.kind == "values" and inf.params[1].init.kind == "constant"
    r = np.random.default_rng(0)
    np.testing.assert_allclose(initialise(inf.params[0].init, (3,), r), [0.5, 0.4, 0.3], rtol=1e-7)
    np.testing.assert_allclose(initialise(inf.params[1].init, (3,), r), [0.25] * 3)
    assert inf.macs == 3 * 32 * 32
    _, _, inf = infer("standardize", {"mean": [0.5, 0.5], "std": [2]}, [("N", 2)])
    assert [p.init for p in inf.params] == [inf.params[0].init.of("constant", value=0.5),
                                            inf.params[0].init.of("constant", value=2.0)]
    _, _, inf = infer("standardize", {"from_data": True}, [TensorType(("N", 4), "int64")])
    assert [p.init.kind for p in inf.params] == ["zeros", "ones"] and inf.outputs[0].dtype == "float32"


def test_standardize_errors():
    e = shape_error("standardize", {}, [("N", 3)])
    assert "mean and std" in e.message and "from_data" in e.message
    e = shape_error("standardize", {"mean": 0.5}, [("N", 3)])
    assert e.attr == "mean" and "no std" in e.message
    e = shape_error("standardize", {"mean": 0.5, "std": 0.2, "from_data": True}, [("N", 3)])
    assert e.attr == "from_data"
    e = shape_error("standardize", {"mean": [0.5, 0.4], "std": 0.2}, [("N", 3, 8, 8)])
    assert e.attr == "mean" and "2 mean values" in e.message and "3 channels" in e.message
    e = shape_error("standardize", {"mean": 0.5, "std": [0.2, 0.0, 0.1]}, [("N", 3, 8, 8)])
    assert e.attr == "std" and "positive" in e.message
    e = shape_error("standardize", {"mean": 0.5, "std": 0.2}, [("N",)])
    assert "rank 2" in e.message


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 4)])
def test_standardize_gradcheck_and_values(shape):
    attrs = {"mean": [0.5, -0.2, 0.1], "std": [0.3, 2.0, 1.5]}
    x = rand(*shape)
    gradcheck("standardize", attrs, [x], skip=(1, 2))
    (y,), _, _ = run("standardize", attrs, [x])
    bc = (3,) + (1,) * (len(shape) - 2)
    np.testing.assert_allclose(y, (x - np.reshape([0.5, -0.2, 0.1], bc)) / np.reshape([0.3, 2.0, 1.5], bc))


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 4), (2, 3, 5)])
@pytest.mark.parametrize("opset", [17, 18])
def test_standardize_onnx(shape, opset):
    onnx_parity("standardize", {"mean": [0.5, -0.2, 0.1], "std": [0.3, 2.0, 1.5]}, [rand(*shape)], opset=opset)


def test_standardize_integer_input_onnx():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4))
    (y,), _, _ = run("standardize", {"mean": 127.5, "std": 64.0}, [x])
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, (x - 127.5) / 64.0, rtol=1e-6)
    onnx_parity("standardize", {"mean": 127.5, "std": 64.0}, [x])


def test_standardize_torch():
    torch = pytest.importorskip("torch")
    x = rand(2, 3, 4, 4).astype(np.float32)
    mean, std = [0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]
    (y,), bwd, _ = run("standardize", {"mean": mean, "std": std}, [x],
                       make_params("standardize", {"mean": mean, "std": std}, [x], dtype=np.float32))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, torch.tensor(mean), torch.tensor(std) ** 2, eps=0.0)
    gy = rand(2, 3, 4, 4).astype(np.float32)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bwd(gy)[0], xt.grad.numpy(), rtol=1e-5, atol=1e-5)


# -- layer_norm over one dimension (LayerNorm2d) --------------------------------------------------

def test_layer_norm_dim_is_layer_norm_of_the_moved_axis():
    x = rand(2, 5, 3, 4) * 3 + 1
    w, b = rand(5), rand(5)
    (y,), bwd, _ = run("layer_norm", {"dim": 1}, [x], [w, b])
    (ref,), rbwd, _ = run("layer_norm", {}, [np.moveaxis(x, 1, -1).copy()], [w, b])
    np.testing.assert_allclose(y, np.moveaxis(ref, -1, 1), rtol=1e-12)
    gy = rand(*x.shape)
    gx, gw, gb = bwd(gy)
    rx, rw, rb = rbwd(np.moveaxis(gy, 1, -1).copy())
    np.testing.assert_allclose(gx, np.moveaxis(rx, -1, 1), rtol=1e-10)
    np.testing.assert_allclose(gw, rw, rtol=1e-10)
    np.testing.assert_allclose(gb, rb, rtol=1e-10)
    _, _, inf = infer("layer_norm", {"dim": 1}, [("N", 5, 3, 4)])
    assert [(p.name, p.shape) for p in inf.params] == [("weight", (5,)), ("bias", (5,))]


def test_layer_norm_dim_errors():
    e = shape_error("layer_norm", {"dim": 1, "normalized_shape": 5}, [("N", 5, 3)])
    assert e.attr == "dim" and "not both" in e.message
    assert shape_error("layer_norm", {"dim": 3}, [("N", 5, 3)]).attr == "dim"


def test_layer_norm_dim_onnx_without_affine():
    onnx_parity("layer_norm", {"dim": 1, "elementwise_affine": False}, [rand(2, 4, 3, 3)])


# -- stochastic_depth ---------------------------------------------------------------------------

def test_stochastic_depth_is_identity_in_eval():
    x = rand(8, 3, 4)
    (y,), bwd, _ = run("stochastic_depth", {"p": 0.5}, [x])
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(bwd(x)[0], x)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_statistics(mode):
    """Whole rows (or the whole input) survive with probability 1 - p, scaled so that the mean is kept."""
    p, n = 0.3, 4000 if mode == "row" else 1
    x = (np.abs(rand(n, 2, 3)) + 1).astype(np.float32)
    draws, means = [], []
    for seed in range(1 if mode == "row" else 2000):
        (y,), bwd, _ = run("stochastic_depth", {"p": p, "mode": mode}, [x], training=True, seed=seed)
        kept = np.all(y != 0, axis=(1, 2))
        dropped = np.all(y == 0, axis=(1, 2))
        assert np.all(kept | dropped)                          # all of a row or none of it
        np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
        np.testing.assert_allclose(bwd(np.ones_like(x))[0], y / x, rtol=1e-6)   # the same mask scales the gradient
        draws.append(kept)
        means.append(y.mean())
    rate = np.concatenate(draws).mean()
    assert abs(rate - (1 - p)) < 0.03, rate                   # ~4.5 standard deviations
    mean = np.mean(means) if mode == "batch" else y.mean()
    assert abs(mean / x.mean() - 1) < 0.05
    (y2,), _, _ = run("stochastic_depth", {"p": p, "mode": mode}, [x], training=True, seed=0)
    (y3,), _, _ = run("stochastic_depth", {"p": p, "mode": mode}, [x], training=True, seed=0)
    np.testing.assert_array_equal(y2, y3)                     # the draw comes from ctx.rng


def test_stochastic_depth_errors_and_p_one():
    for p in (-0.1, 1.5):
        assert shape_error("stochastic_depth", {"p": p}, [("N", 4)]).attr == "p"
    assert shape_error("stochastic_depth", {"p": 0.1}, [()]).attr == "mode"
    x = rand(5, 3)
    (y,), _, _ = run("stochastic_depth", {"p": 1.0}, [x], training=True)
    np.testing.assert_array_equal(y, np.zeros_like(x))
