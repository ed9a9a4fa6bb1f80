"""The runtime's public Python API (docs/runtime.md, interfaces.md "Python API"): Model.load_state_dict,
runtime.save/load, forward(outputs=...), Tensor.backward, train/eval, detach, grads(), and a PyTorch
state_dict saved as .npz."""
from __future__ import annotations

import json

import numpy as np
import pytest

import compiler
import runtime
from compiler.errors import UserError
from runtime import Model, Tensor
from runtime.model import KERNELS

MLP = """
name: mlp
inputs: {x: [N, 4], label: {shape: [N], dtype: int64}}
layers:
  - {op: linear, name: fc1, in: x, out_features: 8}
  - {op: tanh, name: act}
  - {op: linear, name: fc2, out_features: 3}
  - {op: cross_entropy, name: loss, in: [fc2, label]}
outputs: [fc2, loss]
"""

CNN = """
name: cnn
inputs: {image: [N, 3, 6, 6]}
layers:
  - {op: conv2d, name: "0", out_channels: 4, kernel_size: 3, padding: 1}
  - {op: batch_norm, name: "1"}
  - {op: relu, name: "2"}
  - {op: flatten, name: "3"}
  - {op: linear, name: "4", out_features: 5}
outputs: ["4"]
"""


@pytest.fixture(scope="module")
def mlp() -> compiler.Graph:
    return compiler.compile_text(MLP)


@pytest.fixture(scope="module")
def cnn() -> compiler.Graph:
    return compiler.compile_text(CNN)


def data(n=5, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, 4)).astype(np.float32), r.integers(0, 3, n)


def snapshot(model) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------------------- load_state_dict

def test_load_state_dict_lists_every_problem_in_one_error(mlp):
    model = runtime.Model(mlp, seed=0)
    before = snapshot(model)
    src = snapshot(runtime.Model(mlp, seed=1))
    del src["fc1.bias"], src["fc2.weight"]                                  # missing
    src["fc2.wieght"] = np.zeros((3, 8), np.float32)                        # unexpected, a typo
    src["head.bias"] = np.zeros(3, np.float32)                              # unexpected
    src["fc1.weight"] = np.zeros((4, 8), np.float32)                        # mis-shaped (transposed)
    src["fc2.bias"] = np.zeros((1, 3), np.float32)                          # mis-shaped
    with pytest.raises(runtime.StateDictError) as e:
        model.load_state_dict(src)
    msg = e.value.message
    for k in ("fc1.bias", "fc2.weight", "fc2.wieght", "head.bias", "fc1.weight", "fc2.bias"):
        assert k in msg, (k, msg)
    assert "missing: fc1.bias, fc2.weight" in msg
    assert "fc2.wieght (did you mean 'fc2.weight'?)" in msg
    assert "fc1.weight: checkpoint [4, 8], model [8, 4]" in msg and "fc2.bias: checkpoint [1, 3], model [3]" in msg
    assert e.value.hint
    assert_same(snapshot(model), before)                                    # nothing was loaded


def test_load_state_dict_non_strict_loads_what_fits_and_returns_the_rest(mlp):
    model = runtime.Model(mlp, seed=0)
    before = snapshot(model)
    src = snapshot(runtime.Model(mlp, seed=1))
    del src["fc2.bias"]
    src["extra.weight"] = np.ones(2, np.float32)
    src["fc1.weight"] = src["fc1.weight"].astype(np.float64)                # cast to the model's dtype
    res = model.load_state_dict(src, strict=False)
    assert res.missing_keys == ["fc2.bias"] and res.unexpected_keys == ["extra.weight"]
    after = model.state_dict()
    for k in ("fc1.weight", "fc1.bias", "fc2.weight"):
        np.testing.assert_array_equal(after[k], src[k].astype(np.float32))
        assert after[k].dtype == np.float32 and not np.array_equal(after[k], before[k])
    np.testing.assert_array_equal(after["fc2.bias"], before["fc2.bias"])   # kept
    src["fc1.weight"][:] = 7                                                # copied, not shared
    assert not np.any(model.state_dict()["fc1.weight"] == 7)
    # strict=True with everything present reports nothing skipped
    assert tuple(model.load_state_dict(snapshot(model))) == ([], [])


def test_load_state_dict_non_strict_still_refuses_a_wrong_shape(mlp):
    model = runtime.Model(mlp, seed=0)
    before = snapshot(model)
    src = {"fc1.weight": np.zeros((8, 5), np.float32), "fc1.bias": np.ones(8, np.float32)}
    with pytest.raises(runtime.StateDictError, match=r"fc1.weight: checkpoint \[8, 5\], model \[8, 4\]") as e:
        model.load_state_dict(src, strict=False)
    assert "missing" not in e.value.message and "unexpected" not in e.value.message
    assert_same(snapshot(model), before)                                    # fc1.bias not loaded either


# --------------------------------------------------------------------------- save / load

def test_save_load_round_trip_is_bit_exact_with_buffers_and_metadata(cnn, tmp_path):
    model = runtime.Model(cnn, seed=0).train()
    x = np.random.default_rng(0).standard_normal((8, 3, 6, 6)).astype(np.float32)
    model(image=x)                                                          # moves the running statistics
    sd = snapshot(model)
    assert sd["1.num_batches_tracked"] == 1 and sd["1.num_batches_tracked"].shape == ()
    assert not np.all(sd["1.running_mean"] == 0)
    path = tmp_path / "sub" / "ckpt.npz"
    opt = {"state.0.weight.momentum": np.full((4, 3, 3, 3), 0.5, np.float32)}
    runtime.save(model, path, meta={"epoch": 3, "note": "by hand"}, optimizer_state=opt)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.npz"]    # no temporary left behind
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == set(sd) | {"__meta__", "__opt__.state.0.weight.momentum"}
        assert json.loads(str(z["__meta__"]))["epoch"] == 3

    other = runtime.Model(cnn, seed=1)
    assert not np.array_equal(other.state_dict()["0.weight"], sd["0.weight"])
    meta = runtime.load(other, path)
    assert_same(snapshot(other), sd)
    assert meta["epoch"] == 3 and meta["note"] == "by hand"
    assert meta["spec_hash"] == cnn.spec_hash and meta["spec_name"] == "cnn"
    assert list(meta["optimizer"]) == ["state.0.weight.momentum"]
    np.testing.assert_array_equal(meta["optimizer"]["state.0.weight.momentum"], opt["state.0.weight.momentum"])
    np.testing.assert_array_equal(other.eval()(image=x)["4"], model.eval()(image=x)["4"])


def test_save_metadata_may_hold_numpy_numbers(mlp, tmp_path):
    """NumPy scalars and arrays (an epoch counter, a loss) are stored as the numbers they hold; they
    were a TypeError ('float32 is not JSON serializable'). Other objects are still refused, and the
    existing checkpoint survives the failed save."""
    model = runtime.Model(mlp)
    path = tmp_path / "m.npz"
    runtime.save(model, path, meta={"epoch": np.int64(3), "loss": np.float32(0.5), "curve": np.arange(3.0)})
    meta = runtime.load(model, path)
    assert meta["epoch"] == 3 and type(meta["epoch"]) is int
    assert meta["loss"] == 0.5 and meta["curve"] == [0.0, 1.0, 2.0]
    with pytest.raises(TypeError, match="metadata must be JSON data .*not object"):
        runtime.save(model, path, meta={"bad": object()})
    assert runtime.load(model, path)["epoch"] == 3


def test_load_refuses_another_models_checkpoint(cnn, mlp, tmp_path):
    runtime.save(runtime.Model(mlp), tmp_path / "mlp.npz")
    model = runtime.Model(cnn)
    before = snapshot(model)
    with pytest.raises(runtime.StateDictError) as e:
        runtime.load(model, tmp_path / "mlp.npz")
    assert "missing: 0.weight" in e.value.message and "unexpected: fc1.weight" in e.value.message
    assert_same(snapshot(model), before)


# --------------------------------------------------------------------------- forward(outputs=...)

def count_kernel_calls(monkeypatch) -> list[str]:
    """Patch every kernel to record the node it runs for."""
    calls: list[str] = []
    for op, fn in list(KERNELS.items()):
        def wrapped(ctx, *args, _fn=fn):
            calls.append(ctx.node.name)
            return _fn(ctx, *args)
        monkeypatch.setitem(KERNELS, op, wrapped)
    return calls


def test_forward_an_intermediate_node_computes_only_what_it_needs(mlp, monkeypatch):
    model = runtime.Model(mlp, seed=0)
    x, y = data()
    sd = model.state_dict()
    calls = count_kernel_calls(monkeypatch)
    out = model.forward(outputs=["act"], x=x)                              # no label: only the loss needs it
    assert list(out) == ["act"] and isinstance(out["act"], runtime.Tensor)
    assert calls == ["fc1", "act"]
    want = np.tanh(x.astype(np.float64) @ sd["fc1.weight"].T.astype(np.float64) + sd["fc1.bias"])
    np.testing.assert_allclose(out["act"].data, want, rtol=1e-5, atol=1e-6)

    calls.clear()
    res = model(outputs=["fc1", "x"], x=x)                                 # inference call, an input asked for
    assert calls == ["fc1"] and isinstance(res["fc1"], np.ndarray)
    np.testing.assert_array_equal(res["x"], x)
    calls.clear()
    full = model(x=x, label=y)                                             # default: the spec's outputs
    assert list(full) == ["fc2", "loss"] and calls == ["fc1", "act", "fc2", "loss"]
    with pytest.raises(UserError, match="missing input 'label'"):
        model(outputs=["loss"], x=x)
    with pytest.raises(UserError, match="unknown output 'fc3'"):
        model(outputs=["fc3"], x=x)


def test_forward_a_port_of_a_multi_output_node(monkeypatch):
    g = compiler.compile_text("inputs: {s: [N, 5, 3]}\nlayers:\n  - {op: lstm, name: rnn, hidden_size: 4}\n"
                              "  - {op: linear, name: head, out_features: 2}\noutputs: [head]\n")
    model = runtime.Model(g, seed=0)
    s = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    calls = count_kernel_calls(monkeypatch)
    out = model(outputs=["rnn:h"], s=s)
    assert calls == ["rnn"] and out["rnn:h"].shape == (1, 2, 4)
    y = model(outputs=["rnn"], s=s)["rnn"]
    np.testing.assert_allclose(out["rnn:h"][0], y[:, -1], rtol=1e-6)     # h is the last step's output


# --------------------------------------------------------------------------- backward

def test_backward_of_a_non_scalar_output_is_the_sum_of_per_element_backwards(mlp):
    model = runtime.Model(mlp, seed=0)
    x, _ = data(3)
    g = np.random.default_rng(1).standard_normal((3, 3)).astype(np.float32)

    def grads_for(seed_grad):
        model.zero_grad()
        xt = runtime.Tensor(x, requires_grad=True)
        model.forward(outputs=["fc2"], x=xt)["fc2"].backward(seed_grad)
        return xt.grad, model.grads()

    gx, gp = grads_for(g)
    assert set(gp) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    sx, sp = np.zeros_like(gx, np.float64), {k: np.zeros_like(v, np.float64) for k, v in gp.items()}
    for idx in np.ndindex(g.shape):                                        # one backward per output element
        e = np.zeros_like(g)
        e[idx] = 1.0
        ex, ep = grads_for(e)
        sx += g[idx] * ex
        for k in sp:
            sp[k] += g[idx] * ep[k]
    np.testing.assert_allclose(gx, sx, rtol=1e-5, atol=1e-6)
    for k in sp:
        np.testing.assert_allclose(gp[k], sp[k], rtol=1e-5, atol=1e-6, err_msg=k)

    # and central differences of <g, fc2(x)> in x
    def objective(xv):
        return float(np.sum(g.astype(np.float64) * model(outputs=["fc2"], x=xv)["fc2"]))
    h = 1e-2
    for idx in [(0, 0), (1, 2), (2, 3)]:
        up, dn = x.copy(), x.copy()
        up[idx] += h
        dn[idx] -= h
        assert (objective(up) - objective(dn)) / (2 * h) == pytest.approx(float(gx[idx]), rel=2e-3, abs=1e-4)


def test_backward_checks_its_gradient(mlp):
    model = runtime.Model(mlp, seed=0)
    x, y = data(3)
    out = model.forward(x=runtime.Tensor(x, requires_grad=True), label=y)
    with pytest.raises(ValueError, match="needs a scalar"):
        out["fc2"].backward()
    with pytest.raises(ValueError, match="does not match"):
        out["fc2"].backward(np.ones((3, 4)))
    out["loss"].backward()                                                 # a scalar: seed 1
    assert set(model.grads()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def test_a_second_backward_of_a_released_tape_raises(mlp):
    """backward() releases the tape it walked: a second backward() of the same output, or of another
    output whose tape went with it, raises as in PyTorch (it silently did nothing: the gradient was lost)."""
    model = runtime.Model(mlp, seed=0)
    x, y = data()
    out = model.forward(x=x, label=y)
    out["loss"].backward()
    first = {k: v.copy() for k, v in model.grads().items()}
    with pytest.raises(RuntimeError, match="already released"):
        out["loss"].backward()
    with pytest.raises(RuntimeError, match="already released"):
        out["fc2"].backward(np.ones((5, 3), np.float32))
    assert_same(model.grads(), first)
    model.forward(x=x, label=y)["loss"].backward()                         # a new forward is fine
    np.testing.assert_allclose(model.grads()["fc1.weight"], 2 * first["fc1.weight"], rtol=1e-6)


def test_gradients_accumulate_and_grads_names_only_trainable_parameters(cnn):
    model = runtime.Model(cnn, seed=0).train()
    x = np.random.default_rng(0).standard_normal((4, 3, 6, 6)).astype(np.float32)
    g = np.ones((4, 5), np.float32)
    model.forward(image=x)["4"].backward(g)
    first = {k: v.copy() for k, v in model.grads().items()}
    assert set(first) == {"0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"}   # no buffers
    model.forward(image=x)["4"].backward(g)
    for k, v in model.grads().items():
        np.testing.assert_allclose(v, 2 * first[k], rtol=1e-5, atol=1e-6, err_msg=k)
    model.zero_grad()
    assert model.grads() == {}
    model.freeze(["0.weight", "0.bias"])
    assert set(model.parameters()) == {"1.weight", "1.bias", "4.weight", "4.bias"}
    model.forward(image=x)["4"].backward(g)
    assert set(model.grads()) == {"1.weight", "1.bias", "4.weight", "4.bias"}
    assert model.named_tensors()["0.weight"].grad is None


def test_detach_stops_gradients():
    g = compiler.compile_text("inputs: {x: [N, 4]}\nlayers:\n  - {op: linear, name: a, out_features: 3}\n"
                              "  - {op: detach, name: cut}\n  - {op: linear, name: b, out_features: 2}\n"
                              "outputs: [b]\n")
    model = runtime.Model(g, seed=0)
    x = runtime.Tensor(np.ones((2, 4), np.float32), requires_grad=True)
    out = model.forward(x=x, outputs=["a", "b"])
    out["b"].backward(np.ones((2, 2), np.float32))
    assert set(model.grads()) == {"b.weight", "b.bias"} and x.grad is None
    assert np.all(model.grads()["b.bias"] == 2)
    # Tensor.detach: the same values, off the tape; the tensor itself still leads back to a and x
    a = out["a"]
    d = a.detach()
    assert a.tracked and not d.tracked and d.requires_grad is False
    np.testing.assert_array_equal(d.data, a.data)
    model.zero_grad()
    d.backward(np.ones((2, 3), np.float32))                                # reaches nothing
    assert model.grads() == {} and x.grad is None
    a.backward(np.ones((2, 3), np.float32))
    assert set(model.grads()) == {"a.weight", "a.bias"} and x.grad.shape == (2, 4)


# --------------------------------------------------------------------------- train / eval

def test_train_and_eval_switch_dropout():
    g = compiler.compile_text("inputs: {x: [N, 1000]}\nlayers: [{dropout: 0.25}]\n")
    model = runtime.Model(g, seed=0)
    x = np.ones((4, 1000), np.float32)
    assert model.training and model.eval() is model and not model.training
    np.testing.assert_array_equal(model(x=x)["dropout_1"], x)
    assert model.train() is model and model.training
    y = model(x=x)["dropout_1"]
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}                # kept values scaled by 1/(1-p)
    assert np.mean(y == 0) == pytest.approx(0.25, abs=0.03)
    assert not np.array_equal(y, model(x=x)["dropout_1"])                  # a new mask per call


def test_train_and_eval_switch_batch_norm():
    g = compiler.compile_text("inputs: {x: [N, 3, 4, 4]}\nlayers: [{op: batch_norm, name: bn}]\n")
    model = runtime.Model(g)
    x = (np.random.default_rng(0).standard_normal((6, 3, 4, 4)) * 3 + 2).astype(np.float32)
    x64 = x.astype(np.float64)
    y = model.train()(x=x)["bn"]                                            # batch statistics
    mean, var = x64.mean((0, 2, 3)), x64.var((0, 2, 3))
    np.testing.assert_allclose(y, (x64 - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5),
                               rtol=1e-4, atol=1e-5)
    sd = model.state_dict()                                                 # running stats moved, momentum 0.1
    n = x.size // 3
    np.testing.assert_allclose(sd["bn.running_mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(sd["bn.running_var"], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    assert sd["bn.num_batches_tracked"] == 1
    stats = snapshot(model)
    z = model.eval()(x=x)["bn"]                                             # running statistics, no update
    rm, rv = stats["bn.running_mean"].astype(np.float64), stats["bn.running_var"].astype(np.float64)
    np.testing.assert_allclose(z, (x64 - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5),
                               rtol=1e-4, atol=1e-5)
    assert_same(snapshot(model), stats)


# --------------------------------------------------------------------------- a PyTorch state_dict

def test_a_pytorch_state_dict_saved_as_npz_loads_unchanged_and_matches_torch(cnn, tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 5))
    net.train()
    with torch.no_grad():                                                   # non-trivial running statistics
        for _ in range(3):
            net(torch.randn(8, 3, 6, 6) * 2 + 1)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    net.eval()
    path = tmp_path / "torch_weights.npz"
    np.savez(path, **{k: v.numpy() for k, v in net.state_dict().items()})

    model = runtime.Model(cnn, seed=0)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in net.state_dict().items()}
    meta = runtime.load(model, path)
    assert meta == {}
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v.numpy(), err_msg=k)
    assert model.state_dict()["1.num_batches_tracked"] == 3
    x = np.random.default_rng(1).standard_normal((5, 3, 6, 6)).astype(np.float32)
    ours = model.eval()(image=x)["4"]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-6)


def test_tensor_inputs_of_another_dtype():
    """A constant Tensor is converted like an array; one that needs a gradient must already have the
    declared dtype (converting it would cut the gradient's way back)."""
    g = compiler.compile_text("inputs: {x: [N, 3]}\nlayers:\n  - {op: linear, name: fc, out_features: 2}\n")
    m = Model(g, seed=0)
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    out = m.forward(x=Tensor(x))["fc"]
    assert out.data.dtype == np.float32
    np.testing.assert_array_equal(out.data, m(x=x.astype(np.float32))["fc"])
    with pytest.raises(UserError, match="float64 Tensor that needs a gradient"):
        m.forward(x=Tensor(x, requires_grad=True))


def test_the_documented_dotted_names_resolve_after_a_bare_import_runtime():
    """docs/runtime.md and docs/training.md write runtime.train.evaluate, runtime.transfer.init_from and
    runtime.optim.SGD after `import runtime` alone: a fresh interpreter, so no other test imported them."""
    import subprocess
    import sys
    code = ("import runtime; print(runtime.train.evaluate.__name__, runtime.train.weighted_sum.__name__, "
            "runtime.transfer.init_from.__name__, runtime.optim.SGD.__name__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["evaluate", "weighted_sum", "init_from", "SGD"]
