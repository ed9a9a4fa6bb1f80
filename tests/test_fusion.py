"""Training-time fusion (runtime/fusion.py): which pairs fuse, and that a fused pair gives the same bits
as its two kernels, and PyTorch's values."""
import numpy as np
import pytest
import yaml

import compiler
from runtime import Model, fusion
from runtime.kernels import Ctx, KERNELS
from runtime.kernels.normalisation import batch_norm_relu
from runtime.optim import SGD

from opcheck import make_params


def _graph(layers, outputs=("fc",), size=12, channels=3):
    spec = {"name": "net", "inputs": {"image": ["N", channels, size, size],
                                      "label": {"shape": ["N"], "dtype": "int64"}},
            "layers": layers + ["flatten", {"op": "linear", "name": "fc", "out_features": 3},
                                {"op": "cross_entropy", "name": "loss", "in": ["fc", "label"]}],
            "outputs": list(outputs)}
    return compiler.compile_text(yaml.safe_dump(spec, sort_keys=False))


CONV_BN_RELU = [{"op": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
                {"op": "batch_norm", "name": "bn"}, {"op": "relu", "name": "act"},
                {"op": "max_pool2d", "kernel_size": 2},
                {"op": "conv2d", "out_channels": 8, "kernel_size": 3},
                {"op": "batch_norm", "name": "bn2", "affine": False}, {"op": "relu", "name": "act2"}]


def _pairs(g, outputs=None):
    m = Model(g)
    plan = m.plan(outputs)
    return {(plan.nodes[i].name, plan.nodes[j].name) for i, j in m._fused(plan).items()}


def test_which_pairs_fuse():
    g = _graph(CONV_BN_RELU)
    assert _pairs(g) == {("bn", "act"), ("bn2", "act2")}
    assert _pairs(g, ["fc", "bn"]) == {("bn2", "act2")}                  # bn asked for: it must exist
    shared = CONV_BN_RELU[:3] + [{"op": "add", "name": "res", "in": ["bn", "act"]}] + CONV_BN_RELU[3:]
    assert ("bn", "act") not in _pairs(_graph(shared))                   # bn read by another node too


def _train(g, data, fuse, monkeypatch, steps=3):
    monkeypatch.setenv("SPECC_FUSE", "1" if fuse else "0")
    m = Model(g, seed=1)
    m.train()
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        out = m.forward(outputs=["loss"], **data)
        out["loss"].backward()
        losses.append(float(out["loss"].data))
        opt.step()
        opt.zero_grad()
    return losses, {k: v.copy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("n,size", [(4, 12), (16, 40)])     # small: NumPy batch norm; 16×8×40×40: onnxruntime's
def test_fused_training_has_the_same_bits(monkeypatch, n, size):
    g = _graph(CONV_BN_RELU, size=size)
    rng = np.random.default_rng(0)
    data = {"image": rng.standard_normal((n, 3, size, size)).astype(np.float32),
            "label": rng.integers(0, 3, n).astype(np.int64)}
    calls = []
    monkeypatch.setitem(fusion.FUSED, ("batch_norm", "relu"),
                        lambda *a: calls.append(1) or batch_norm_relu(*a))
    l0, s0 = _train(g, data, False, monkeypatch)
    assert not calls
    l1, s1 = _train(g, data, True, monkeypatch)
    assert len(calls) == 6                                               # two pairs, three steps
    assert l0 == l1
    for k in s0:
        assert np.array_equal(np.atleast_1d(s0[k]).view(np.uint8), np.atleast_1d(s1[k]).view(np.uint8)), k


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("shape,affine", [((16, 8, 40, 40), True), ((3, 5, 4, 4), True), ((6, 4, 9, 9), False)])
def test_batch_norm_relu_matches_torch(shape, affine):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    attrs = {"num_features": shape[1], "affine": affine}
    from compiler.ops import OPS
    params = make_params("batch_norm", attrs, [x], dtype=np.float32)
    if affine:
        params[0][:] = rng.random(shape[1]) + 0.5
        params[1][:] = rng.standard_normal(shape[1]) * 0.3
    ctx = Ctx(OPS["batch_norm"].attrs.model_validate(attrs), True, needs=(True,) + (True,) * len(params))
    y, back = batch_norm_relu(ctx, x, *[p.copy() for p in params])
    gy = rng.standard_normal(shape).astype(np.float32)
    grads = back(gy)
    bn = torch.nn.BatchNorm2d(shape[1], affine=affine)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(torch.tensor(params[0]))
            bn.bias.copy_(torch.tensor(params[1]))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.relu(bn(tx))
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    assert (y >= 0).all()
    np.testing.assert_allclose(grads[0], tx.grad.numpy(), rtol=1e-3, atol=1e-4)
    if affine:
        np.testing.assert_allclose(grads[1], bn.weight.grad.numpy(), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(grads[2], bn.bias.grad.numpy(), rtol=1e-3, atol=1e-3)
    # the two kernels one after the other: the same bits
    y2, b2 = KERNELS["batch_norm"](ctx, x, *[p.copy() for p in params])
    r, rb = KERNELS["relu"](Ctx(None, True, needs=(True,)), y2)
    assert np.array_equal(r, y)
    for a, b in zip(b2(rb(gy)), grads):
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))


def test_switch_off(monkeypatch):
    monkeypatch.setenv("SPECC_FUSE", "0")
    assert not fusion.enabled()
    monkeypatch.setenv("SPECC_FUSE", "1")
    assert fusion.enabled()


def test_check_finite_names_batch_norm_even_where_relu_would_hide_it(monkeypatch):
    """A batch norm output of −inf is 0 after ReLU: with check_finite on, the pair runs apart, so the
    error names the batch norm, as without fusion."""
    from runtime.model import NonFiniteError
    monkeypatch.setenv("SPECC_FUSE", "1")
    g = _graph(CONV_BN_RELU)
    m = Model(g, seed=1)
    m.train()
    m.check_finite = True
    state = m.state_dict()
    state["bn.weight"][:] = 5e37
    state["bn.bias"][:] = -3e38
    m.load_state_dict(state)
    rng = np.random.default_rng(0)
    data = {"image": rng.standard_normal((4, 3, 12, 12)).astype(np.float32),
            "label": rng.integers(0, 3, 4).astype(np.int64)}
    with pytest.raises(NonFiniteError) as e, np.errstate(all="ignore"):
        m.forward(outputs=["loss"], **data)
    assert e.value.node == "bn"
