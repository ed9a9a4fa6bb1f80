"""specc run/eval --backend torch: the spec's generated module, built in memory, gives the NumPy runtime's
outputs and metrics from the same checkpoint; clear messages for a missing torch or CUDA device."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import compiler  # noqa: E402
import runtime  # noqa: E402
from cli.main import main  # noqa: E402
from runtime import checkpoint  # noqa: E402


def _checkpoint(tmp_path, spec: str, sets: dict | None = None):
    g = compiler.compile_file(ROOT / "specs" / spec, params=sets)
    m = runtime.Model(g, seed=0)
    path = tmp_path / "w.npz"
    checkpoint.save(m, path)
    return g, m, path


@pytest.mark.parametrize("spec,sets", [("lenet5.yaml", None),
                                       ("transformer_classifier.yaml", {"vocab": 50, "d_model": 16, "ff": 32})])
def test_run_torch_matches_numpy(tmp_path, spec, sets):
    g, m, w = _checkpoint(tmp_path, spec, sets)
    rng = np.random.default_rng(0)
    args = ["--set", "vocab=50", "--set", "d_model=16", "--set", "ff=32"] if sets else []
    feeds = {}
    for name, t in g.inputs.items():
        shape = [2 if d == "N" else 6 if isinstance(d, str) else d for d in t.shape]
        feeds[name] = (rng.integers(1, 50, shape) if t.dtype == "int64" else rng.random(shape) < 0.3
                       if t.dtype == "bool" else rng.standard_normal(shape)).astype(t.dtype)
        if name == "padding_mask":
            feeds[name][:, 0] = False                     # every sequence keeps a token
        np.save(tmp_path / f"{name}.npy", feeds[name])
    inputs = [a for k in feeds for a in ("--input", f"{k}={tmp_path / (k + '.npy')}")]
    outs = {}
    for backend in ("numpy", "torch"):
        out = tmp_path / f"{backend}.npz"
        assert main(["run", str(ROOT / "specs" / spec), "--weights", str(w), *inputs, "-o", str(out),
                     "--backend", backend, *args]) == 0
        outs[backend] = dict(np.load(out))
    assert set(outs["torch"]) == set(g.output_refs)
    for k in outs["numpy"]:
        np.testing.assert_allclose(outs["torch"][k], outs["numpy"][k], rtol=1e-4, atol=1e-5)


def test_eval_torch_matches_numpy(tmp_path, capsys):
    _g, _m, w = _checkpoint(tmp_path, "digits_mlp.yaml")
    res = {}
    for backend in ("numpy", "torch"):
        assert main(["eval", str(ROOT / "specs/digits_mlp.yaml"), "--weights", str(w), "--data", "builtin:digits",
                     "--backend", backend]) == 0
        res[backend] = capsys.readouterr().out
    assert "loss" in res["torch"] and res["torch"] == res["numpy"]


def test_cuda_without_a_device_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _g, _m, w = _checkpoint(tmp_path, "lenet5.yaml")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    code = main(["run", str(ROOT / "specs/lenet5.yaml"), "--weights", str(w), "--input", f"image={tmp_path / 'x.npy'}",
                 "--backend", "torch", "--device", "cuda"])
    assert code == 1 and "CUDA" in capsys.readouterr().err


def test_missing_torch_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    _g, _m, w = _checkpoint(tmp_path, "lenet5.yaml")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    code = main(["run", str(ROOT / "specs/lenet5.yaml"), "--weights", str(w), "--input", f"image={tmp_path / 'x.npy'}",
                 "--backend", "torch"])
    err = capsys.readouterr().err
    assert code == 1 and "specc[torch]" in err


def test_torch_backend_runs_specs_not_onnx_files(tmp_path, capsys):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not really")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    code = main(["run", str(onnx_file), "--input", f"image={tmp_path / 'x.npy'}", "--backend", "torch"])
    assert code == 2 and "the torch backend runs a spec" in capsys.readouterr().err


def test_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path, capsys):
    _g, _m, w = _checkpoint(tmp_path, "lenet5.yaml", {"classes": 7})
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    code = main(["run", str(ROOT / "specs/lenet5.yaml"), "--weights", str(w), "--input", f"image={tmp_path / 'x.npy'}",
                 "--backend", "torch"])
    err = capsys.readouterr().err
    assert code == 1 and "logits.weight" in err and "[7, 84]" in err
