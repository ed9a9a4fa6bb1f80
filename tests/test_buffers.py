"""Buffers (`{op: buffer}`: a fixed tensor in the state_dict, as PyTorch's register_buffer) and the index ops
that read them (gather, index_select): a Swin window's relative position bias against torchvision's
construction, no training of buffers, checkpoints, strict loading, ONNX initialisers, export-torch's
register_buffer, and the index checks (dtype at `check`, range at run time)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.errors import SpecError, UserError
from runtime import Model
from runtime.checkpoint import load, read_npz, save

ROOT = Path(__file__).resolve().parent.parent
SWIN = ROOT / "tests/specs/ops_torch/index_ops.yaml"


def swin(window: int = 7, heads: int = 3):
    return compiler.compile_file(SWIN, params={"window": window, "heads": heads})


def torchvision_index(torch, window: int):
    """torchvision's SwinTransformer relative_position_index (models/swin_transformer.py), as written there."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1).flatten()


def test_swin_relative_position_bias_matches_torchvision():
    """The index computed by a spec expression is torchvision's; the bias table indexed by it, added to the
    attention logits, gives PyTorch's values and PyTorch's gradient of the table (repeated indices add up)."""
    torch = pytest.importorskip("torch")
    window, heads = 7, 3
    model = Model(swin(window, heads), seed=0)
    state = model.state_dict()
    index = state["relative_position_index"]
    assert index.dtype == np.int64 and index.shape == (window ** 4,)
    np.testing.assert_array_equal(index, torchvision_index(torch, window).numpy())

    rng = np.random.default_rng(0)
    scores = rng.standard_normal((2, heads, window ** 2, window ** 2)).astype(np.float32)
    img = rng.standard_normal((2, 8, 3, 3)).astype(np.float32)
    out = model.forward(outputs=["attn"], scores=scores, img=img)["attn"]
    cot = rng.standard_normal(out.data.shape).astype(np.float32)
    out.backward(cot)
    ours_grad = model.parameters()["relative_position_bias_table"].grad

    table = torch.tensor(state["relative_position_bias_table"], requires_grad=True)
    n = window * window           # torchvision's _get_relative_position_bias
    bias = table[torch.from_numpy(index)].view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
    want = torch.softmax(torch.from_numpy(scores) + bias, dim=-1)
    (want * torch.from_numpy(cot)).sum().backward()
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours_grad, table.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert model.named_tensors()["relative_position_index"].grad is None


TRAINED = {
    "name": "buffered", "inputs": {"x": ["N", 3], "y": ["N", 2]},
    "layers": [{"op": "buffer", "name": "shift", "value": [0.5, -1.0, 2.0]},
               {"op": "add", "name": "moved", "in": ["x", "shift"]},
               {"op": "linear", "name": "fc", "out_features": 2},
               {"op": "mse_loss", "name": "loss", "in": ["fc", "y"]}],
    "outputs": ["fc"],
    "train": {"objective": "loss", "optimizer": {"type": "adamw", "lr": 0.1, "weight_decay": 0.5},
              "batch_size": 8, "epochs": 2, "seed": 0},
}


def test_a_buffer_on_the_gradient_path_is_never_trained(tmp_path):
    """A float buffer that the loss depends on gets no gradient, no optimiser step and no weight decay; it
    is saved with the checkpoints, and a strict load restores it."""
    from runtime.train import fit
    g = compiler.compile_text(json.dumps(TRAINED))
    model = Model(g, seed=0)
    assert "shift" in model.state_dict() and "shift" not in model.parameters()
    assert model.parameter_names() == ["fc.weight", "fc.bias"]
    before = {k: v.copy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    data = {"x": rng.standard_normal((32, 3)).astype(np.float32), "y": rng.standard_normal((32, 2)).astype(np.float32)}
    fit(model, data, out_dir=tmp_path, log=None, progress=False)
    after = model.state_dict()
    np.testing.assert_array_equal(after["shift"], [0.5, -1.0, 2.0])
    assert not np.array_equal(after["fc.weight"], before["fc.weight"])
    saved = read_npz(tmp_path / "last.npz")
    np.testing.assert_array_equal(saved["shift"], [0.5, -1.0, 2.0])


def test_checkpoints_keep_int64_buffers_and_strict_loading_requires_them(tmp_path):
    g = swin(2, 2)
    model = Model(g, seed=0)
    path = tmp_path / "w.npz"
    save(model, path)
    saved = read_npz(path)
    assert saved["relative_position_index"].dtype == np.int64 and saved["order"].dtype == np.int64
    assert "offset" not in saved                                       # persistent: false
    fresh = Model(g, seed=1)
    fresh.named_tensors()["relative_position_index"].data = np.zeros(16, np.int64)
    load(fresh, path)
    np.testing.assert_array_equal(fresh.state_dict()["relative_position_index"], saved["relative_position_index"])
    assert fresh.state_dict()["relative_position_index"].dtype == np.int64

    partial = {k: v for k, v in saved.items() if k != "relative_position_index" and not k.startswith("__")}
    np.savez(tmp_path / "partial.npz", **partial)
    with pytest.raises(UserError, match="missing: relative_position_index"):
        load(Model(g), tmp_path / "partial.npz")
    meta = load(Model(g), tmp_path / "partial.npz", strict=False)
    assert meta["missing_keys"] == ["relative_position_index"]


def test_buffers_are_onnx_initialisers():
    """An int64 buffer read with the input data stays an initialiser under its state_dict name; the whole
    Swin-style spec runs in onnxruntime to the NumPy runtime's values."""
    ort = pytest.importorskip("onnxruntime")
    spec = {"name": "picks", "inputs": {"x": ["N", 5]},
            "layers": [{"op": "buffer", "name": "order", "value": [4, 0, 0, 2], "dtype": "int64"},
                       {"op": "index_select", "name": "sel", "in": ["x", "order"], "dim": 1}],
            "outputs": ["sel"]}
    proto = compiler.to_onnx(compiler.compile_text(json.dumps(spec)))
    inits = {t.name: t for t in proto.graph.initializer}
    assert "order" in inits and inits["order"].data_type == 7                   # INT64
    from onnx import numpy_helper
    np.testing.assert_array_equal(numpy_helper.to_array(inits["order"]), [4, 0, 0, 2])

    g = swin(3, 2)
    model = Model(g, seed=0).eval()
    for optimize in (True, False):
        proto = compiler.to_onnx(g, weights=model.state_dict(), optimize=optimize)
        if not optimize:
            assert {"relative_position_index", "order"} <= {t.name for t in proto.graph.initializer}
        rng = np.random.default_rng(2)
        feeds = {"scores": rng.standard_normal((2, 2, 9, 9)).astype(np.float32),
                 "img": rng.standard_normal((2, 8, 3, 3)).astype(np.float32)}
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        want = model(**feeds)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_export_torch_registers_buffers(tmp_path):
    """Persistent buffers are register_buffer(name, value) with their values (a fresh module holds them without
    loading anything); a non-persistent one says persistent=False and is not in the state_dict."""
    torch = pytest.importorskip("torch")
    import importlib.util

    from runtime.torch_backend.codegen import generate
    g = swin(7, 2)
    exp = generate(g, str(SWIN))
    assert "self.register_buffer('relative_position_index', torch.tensor([" in exp.source
    assert "persistent=False" in exp.source.split("'offset'")[1].split("\n")[0]
    path = tmp_path / "swin_model.py"
    path.write_text(exp.source)
    spec = importlib.util.spec_from_file_location("swin_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = getattr(mod, exp.class_name)()
    state = net.state_dict()
    ours = Model(g).state_dict()
    assert set(state) == set(ours)
    np.testing.assert_array_equal(state["relative_position_index"].numpy(), torchvision_index(torch, 7).numpy())
    assert state["order"].dtype == torch.int64 and tuple(state["order"].shape) == (1, 1, 2, 3)
    assert "torch.tensor([\n            84, 83, 82," in exp.source            # a long table: a few numbers a line


# --------------------------------------------------------------------------- errors

def _compile(layers, inputs=None):
    return compiler.compile_text(json.dumps({"name": "t", "inputs": inputs or {"x": ["N", 4]}, "layers": layers,
                                             "outputs": [layers[-1]["name"]]}))


@pytest.mark.parametrize("layer,msg", [
    ({"op": "buffer", "name": "b", "value": [1, 2.5], "dtype": "int64"}, "an int64 buffer holds integers, got 2.5"),
    ({"op": "buffer", "name": "b", "value": [[1, 2], [3]]}, "ragged"),
    ({"op": "buffer", "name": "b", "value": [1, 2, 3], "shape": [2, 2]}, "3 items, which do not fill the shape"),
    ({"op": "buffer", "name": "b", "value": [2], "dtype": "bool"}, "a bool buffer holds true/false"),
    ({"op": "buffer", "name": "b", "value": [1], "dtype": "int32"}, "dtype"),
])
def test_bad_buffers_are_spec_errors(layer, msg):
    with pytest.raises(SpecError) as e:
        _compile([layer])
    assert msg in str(e.value)


@pytest.mark.parametrize("op,dim,index,msg", [
    ("index_select", 1, {"shape": [3], "dtype": "float32"}, "the index must be int64, but it is float32"),
    ("gather", 1, {"shape": ["N", 4], "dtype": "bool"}, "the index must be int64, but it is bool"),
    ("index_select", 1, {"shape": [3, 1], "dtype": "int64"}, "the index must be 1-D"),
    ("gather", 1, {"shape": [3], "dtype": "int64"}, "the index has rank 1"),
    ("gather", 0, {"shape": ["N", 5], "dtype": "int64"}, "larger than the input (shape N×4) in dimension 1"),
])
def test_index_dtype_and_rank_are_checked(op, dim, index, msg):
    with pytest.raises(SpecError) as e:
        _compile([{"op": op, "name": "g", "in": ["x", "i"], "dim": dim}], {"x": ["N", 4], "i": index})
    assert msg in str(e.value)


@pytest.mark.parametrize("op,bad", [("index_select", [0, 4]), ("index_select", [-1, 0]), ("gather", [[0, 7]])])
def test_index_out_of_range_is_a_clear_runtime_error(op, bad):
    """A bad index from the data names the node, the value and the allowed range (not a NumPy traceback)."""
    shape = [len(bad)] if op == "index_select" else ["N", 2]
    g = _compile([{"op": op, "name": "pick", "in": ["x", "i"], "dim": 1}],
                 {"x": ["N", 4], "i": {"shape": shape, "dtype": "int64"}})
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(UserError) as e:
        Model(g)(x=x, i=np.asarray(bad, np.int64))
    assert f"node 'pick' ({op})" in str(e.value) and "out of range for dimension 1 of size 4 (allowed 0..3)" \
        in str(e.value)


def test_index_out_of_range_from_the_command_line(tmp_path, capsys):
    from cli.main import main
    spec = tmp_path / "pick.yaml"
    spec.write_text(json.dumps({"name": "pick", "inputs": {"x": ["N", 4], "i": {"shape": [2], "dtype": "int64"}},
                                "layers": [{"op": "index_select", "name": "pick", "in": ["x", "i"], "dim": 1}],
                                "outputs": ["pick"]}))
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    np.save(tmp_path / "i.npy", np.asarray([1, 9]))
    save(Model(compiler.compile_file(spec)), tmp_path / "w.npz")
    code = main(["run", str(spec), "--weights", str(tmp_path / "w.npz"), "--input", f"x={tmp_path / 'x.npy'}",
                 "--input", f"i={tmp_path / 'i.npy'}"])
    err = capsys.readouterr().err
    assert code == 1 and "index 9 is out of range" in err and "Traceback" not in err
