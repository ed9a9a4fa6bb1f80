import numpy as np
import pytest
from pydantic import ValidationError

from compiler.errors import ShapeError
from opcheck import gradcheck, infer, onnx_parity, rand, run


# --- shape rules ---------------------------------------------------------------------------------

def test_reparameterize_shape():
    opdef, _, inf = infer("reparameterize", {}, [("N", 16), ("N", 16)])
    assert opdef.inputs == ("mu", "logvar") and not opdef.loss
    assert inf.outputs[0].shape == ("N", 16) and inf.params == [] and inf.macs == 16


def test_reparameterize_mismatch():
    with pytest.raises(ShapeError) as e:
        infer("reparameterize", {}, [("N", 16), ("N", 8)])
    assert "N×16" in e.value.message and "N×8" in e.value.message and "same shape" in e.value.message


@pytest.mark.parametrize("reduction,out", [("mean", ()), ("sum", ()), ("none", ("N",))])
def test_kl_shape(reduction, out):
    opdef, _, inf = infer("kl_normal", {"reduction": reduction}, [("N", 4, 8), ("N", 4, 8)])
    assert opdef.loss and opdef.primary is None
    assert inf.outputs[0].shape == out and inf.outputs[0].dtype == "float32"
    assert inf.macs == 32 and inf.params == []


def test_kl_errors():
    with pytest.raises(ShapeError) as e:
        infer("kl_normal", {}, [("N", 16), ("N", 10)])
    assert "N×16" in e.value.message and "N×10" in e.value.message
    with pytest.raises(ShapeError) as e:
        infer("kl_normal", {}, [(), ()])
    assert "batch" in e.value.message
    with pytest.raises(ShapeError) as e:
        infer("kl_normal", {}, [np.zeros((2, 3), np.int64), np.zeros((2, 3))])
    assert "mu is int64" in e.value.message
    with pytest.raises(ValidationError):
        infer("kl_normal", {"reduction": "avg"}, [("N", 4), ("N", 4)])


def test_kl_has_no_lowering_and_reparameterize_has_one():
    from compiler.onnx import LOWERINGS
    assert "kl_normal" not in LOWERINGS and "reparameterize" in LOWERINGS


# --- reparameterize semantics ---------------------------------------------------------------------

def test_reparameterize_eval_is_mu():
    mu, lv = rand(4, 3), rand(4, 3)
    (z,), bwd, _ = run("reparameterize", {}, [mu, lv], training=False)
    np.testing.assert_array_equal(z, mu)
    gmu, glv = bwd(np.ones_like(mu))
    np.testing.assert_array_equal(gmu, np.ones_like(mu))
    np.testing.assert_array_equal(glv, np.zeros_like(lv))


def test_reparameterize_training_uses_ctx_rng():
    mu, lv = rand(4, 3), rand(4, 3)
    (z,), _, _ = run("reparameterize", {}, [mu, lv], training=True, seed=5)
    eps = np.random.default_rng(5).standard_normal((4, 3))
    np.testing.assert_allclose(z, mu + eps * np.exp(lv / 2), rtol=1e-12)
    (z2,), _, _ = run("reparameterize", {}, [mu, lv], training=True, seed=6)
    assert not np.allclose(z, z2)


def test_reparameterize_training_distribution():
    mu = np.full((20000, 2), 3.0, np.float32)
    lv = np.log(np.full((20000, 2), 4.0, np.float32))          # σ = 2
    (z,), _, _ = run("reparameterize", {}, [mu, lv], training=True)
    assert z.dtype == np.float32
    assert abs(z.mean() - 3.0) < 0.05 and abs(z.std() - 2.0) < 0.05


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reparameterize_dtype(training, dtype):
    mu, lv = rand(3, 4).astype(dtype), rand(3, 4).astype(dtype)
    (z,), bwd, _ = run("reparameterize", {}, [mu, lv], training=training)
    gmu, glv = bwd(np.ones_like(z))
    assert z.dtype == gmu.dtype == glv.dtype == dtype


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("s_mu,s_lv", [((4, 3), (4, 3)), ((2, 3, 5), (2, 3, 5)), ((4, 1), (4, 3)), ((4, 3), (3,))])
def test_reparameterize_gradcheck(s_mu, s_lv, training):
    gradcheck("reparameterize", {}, [rand(*s_mu), rand(*s_lv)], training=training)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("s_mu,s_lv", [((4, 3), (4, 3)), ((2, 3, 5), (2, 3, 5)), ((4, 1), (4, 3))])
def test_reparameterize_onnx(s_mu, s_lv, opset):
    onnx_parity("reparameterize", {}, [rand(*s_mu), rand(*s_lv)], opset=opset)


def test_reparameterize_torch_gradients():
    torch = pytest.importorskip("torch")
    mu, lv = rand(5, 3), rand(5, 3)
    (z,), bwd, _ = run("reparameterize", {}, [mu, lv], training=True, seed=11)
    gz = rand(5, 3)
    gmu, glv = bwd(gz)
    eps = torch.tensor(np.random.default_rng(11).standard_normal((5, 3)))
    tmu, tlv = torch.tensor(mu, requires_grad=True), torch.tensor(lv, requires_grad=True)
    tz = tmu + eps * torch.exp(0.5 * tlv)
    tz.backward(torch.tensor(gz))
    np.testing.assert_allclose(z, tz.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gmu, tmu.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(glv, tlv.grad.numpy(), rtol=1e-12)


# --- kl_normal ---------------------------------------------------------------------------------------

def test_kl_zero_at_standard_normal():
    (kl,), _, _ = run("kl_normal", {}, [np.zeros((3, 4)), np.zeros((3, 4))])
    assert kl.shape == () and kl == 0.0


def test_kl_known_value():
    # one latent, mu = 1, var = e: 0.5 (1 + e − 1 − 1) = (e − 1) / 2
    (kl,), _, _ = run("kl_normal", {"reduction": "none"}, [np.ones((2, 1)), np.ones((2, 1))])
    np.testing.assert_allclose(kl, [(np.e - 1) / 2] * 2)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("s_mu,s_lv", [((4, 3), (4, 3)), ((2, 3, 5), (2, 3, 5)), ((5,), (5,)),
                                       ((4, 1), (4, 3)), ((4, 3), (3,))])
def test_kl_gradcheck(reduction, s_mu, s_lv):
    gradcheck("kl_normal", {"reduction": reduction}, [rand(*s_mu), rand(*s_lv)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_kl_dtype(dtype, reduction):
    mu, lv = rand(3, 4).astype(dtype), rand(3, 4).astype(dtype)
    (kl,), bwd, _ = run("kl_normal", {"reduction": reduction}, [mu, lv])
    gmu, glv = bwd(np.ones_like(kl))
    assert kl.dtype == gmu.dtype == glv.dtype == dtype


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5)])
def test_kl_torch(reduction, shape):
    torch = pytest.importorskip("torch")
    from torch.distributions import Normal, kl_divergence
    mu, lv = rand(*shape), rand(*shape) * 2
    (kl,), bwd, _ = run("kl_normal", {"reduction": reduction}, [mu, lv])
    gy = rand(*kl.shape) if kl.shape else np.array(1.7)
    gmu, glv = bwd(gy)
    tmu, tlv = torch.tensor(mu, requires_grad=True), torch.tensor(lv, requires_grad=True)
    per = kl_divergence(Normal(tmu, torch.exp(0.5 * tlv)), Normal(0.0, 1.0)).reshape(shape[0], -1).sum(1)
    ref = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    ref.backward(torch.tensor(gy))
    np.testing.assert_allclose(kl, ref.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(gmu, tmu.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(glv, tlv.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_reparameterize_broadcast_mu_exports():
    """mu [1, 1] with logvar [2, 3, 2]: the exporter passed mu through unexpanded while declaring the
    broadcast shape, and ONNX's checker refused the graph (found by tools/fuzz.py)."""
    import compiler
    from runtime.verify import verify
    from compiler.onnx.export import fresh_weights
    g = compiler.compile_text("inputs: {a: [N, 1], b: [2, 3, 2]}\nlayers:\n  - {op: mean, name: m, in: a, keepdim: true}\n"
                              "  - {op: reparameterize, name: z, in: [m, b]}\noutputs: [z]\n")
    result = verify(g, fresh_weights(g))
    assert result.ok, result.message
