"""`specc compile` and `specc run` end to end (in process), plus runtime.OnnxSession."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import compiler
import runtime
from cli.main import main
from compiler.errors import UserError
from compiler.onnx import LOWERINGS
from compiler.onnx.export import max_opset
from runtime.checkpoint import read_npz, split
from runtime.onnx_session import OnnxSession

ROOT = Path(__file__).resolve().parent.parent

SPEC = """
name: clf
inputs:
  x: [N, 6]
  y: {shape: [N], dtype: int64}
layers:
  - {op: linear, name: enc, out_features: 8}
  - {op: relu, name: act}
  - {op: dropout, p: 0.2}
  - {op: linear, name: logits, out_features: 3}
  - {op: softmax, name: probs}
  - {op: cross_entropy, name: loss, in: [logits, y]}
outputs: [logits, probs]
train:
  objective: loss
"""


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "clf.yaml"
    p.write_text(SPEC)
    return p


@pytest.fixture()
def ckpt(tmp_path: Path, spec: Path) -> Path:
    model = runtime.Model(compiler.compile_file(spec), seed=5)
    for t in model.parameters().values():
        t.data += 0.1                                   # not the fresh init
    path = tmp_path / "w.npz"
    runtime.save(model, path)
    return path


@pytest.fixture()
def x_file(tmp_path: Path) -> Path:
    p = tmp_path / "x.npy"
    np.save(p, np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))
    return p


def specc(*argv, capsys=None) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    if capsys is None:
        return code, "", ""
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------ compile

def test_compile_writes_a_loadable_model(spec, tmp_path, capsys):
    out = tmp_path / "net.onnx"
    code, stdout, err = specc("compile", spec, "-o", out, capsys=capsys)
    assert code == 0, err
    assert "wrote" in stdout and "opset 18" in stdout
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    sess = OnnxSession(out)
    assert sess.input_names == ["x"] and sess.output_names == ["logits", "probs"]
    assert sess.metadata["spec_name"] == "clf"
    # fresh weights from the spec's seed: equal to runtime.Model(g, seed=0)
    g = compiler.compile_file(spec)
    x = np.ones((2, 6), np.float32)
    np.testing.assert_allclose(sess.run(x=x)["probs"], runtime.Model(g).eval()(x=x)["probs"], rtol=1e-4, atol=1e-5)


def test_compile_with_weights_and_verify(spec, ckpt, tmp_path, capsys):
    out = tmp_path / "net.onnx"
    code, stdout, err = specc("compile", spec, "-o", out, "--weights", ckpt, "--verify", capsys=capsys)
    assert code == 0, err
    assert "verified: 2 outputs match" in stdout
    init = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    state = split(read_npz(ckpt))[0]
    for k in ("enc.weight", "logits.bias"):
        np.testing.assert_array_equal(init[k], state[k])


BN_SPEC = """
name: bn
inputs: {x: [N, 3, 8, 8]}
layers:
  - {op: conv2d, name: conv, out_channels: 4, kernel_size: 3, bias: false}
  - {op: batch_norm, name: bn}
  - {op: relu}
  - {op: global_avg_pool2d, name: pooled}
"""


def test_compile_and_run_with_a_batch_norm_checkpoint(tmp_path, capsys):
    """A saved checkpoint keeps num_batches_tracked 0-d; compile and run must take it as saved."""
    spec = tmp_path / "bn.yaml"
    spec.write_text(BN_SPEC)
    model = runtime.Model(compiler.compile_file(spec), seed=1)
    model.train()
    model.forward(x=np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32))  # moves the stats
    ckpt = tmp_path / "bn.npz"
    runtime.save(model, ckpt)
    assert split(read_npz(ckpt))[0]["bn.num_batches_tracked"].shape == ()
    for flags in ((), ("--no-optimize",)):
        out = tmp_path / f"bn{len(flags)}.onnx"
        code, stdout, err = specc("compile", spec, "-o", out, "--weights", ckpt, "--verify", *flags, capsys=capsys)
        assert code == 0 and "verified" in stdout, err
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 3, 8, 8), np.float32))
    code, stdout, err = specc("run", spec, "--weights", ckpt, "--backend", "onnxruntime", "--input", f"x={x}",
                              capsys=capsys)
    assert code == 0 and "pooled" in stdout, err


def test_compile_optimize(spec, ckpt, tmp_path, capsys):
    plain, opt = tmp_path / "plain.onnx", tmp_path / "opt.onnx"
    assert specc("compile", spec, "-o", plain, "--weights", ckpt, "--no-optimize", "--verify", capsys=capsys)[0] == 0
    code, stdout, err = specc("compile", spec, "-o", opt, "--weights", ckpt, "--verify", capsys=capsys)
    assert code == 0 and "verified" in stdout, err
    assert len(onnx.load(opt).graph.node) <= len(onnx.load(plain).graph.node)


def test_verify_failure_names_node_and_writes_nothing(spec, tmp_path, capsys, monkeypatch):
    out = tmp_path / "net.onnx"
    out.write_bytes(b"old")
    monkeypatch.setitem(LOWERINGS, "relu", lambda b, node, x, p: b.op("Abs", [x[0]]))
    code, _, err = specc("compile", spec, "-o", out, "--verify", capsys=capsys)
    assert code == 1
    assert "node 'act' (relu)" in err and "Traceback" not in err
    assert out.read_bytes() == b"old"


def test_output_selects_subgraph(spec, tmp_path, capsys):
    full, enc = tmp_path / "full.onnx", tmp_path / "enc.onnx"
    assert specc("compile", spec, "-o", full, capsys=capsys)[0] == 0
    code, _, err = specc("compile", spec, "-o", enc, "--output", "act", "--verify", capsys=capsys)
    assert code == 0, err
    m_full, m_enc = onnx.load(full), onnx.load(enc)
    assert [o.name for o in m_enc.graph.output] == ["act"]
    assert len(m_enc.graph.node) < len(m_full.graph.node)
    assert {t.name for t in m_enc.graph.initializer} == {"enc.weight", "enc.bias"}


def test_output_refusals(spec, tmp_path, capsys):
    code, _, err = specc("compile", spec, "-o", tmp_path / "a.onnx", "--output", "loss", capsys=capsys)
    assert code == 2 and "a loss" in err
    code, _, err = specc("compile", spec, "-o", tmp_path / "a.onnx", "--output", "probz", capsys=capsys)
    assert code == 2 and "did you mean 'probs'" in err


@pytest.mark.parametrize("opset", [17, max_opset()])
def test_opset_range(spec, tmp_path, capsys, opset):
    out = tmp_path / "net.onnx"
    code, _, err = specc("compile", spec, "-o", out, "--opset", opset, "--verify", capsys=capsys)
    assert code == 0, err
    assert onnx.load(out).opset_import[0].version == opset


@pytest.mark.parametrize("opset", [16, max_opset() + 1])
def test_opset_out_of_range_is_a_usage_error(spec, tmp_path, capsys, opset):
    code, _, err = specc("compile", spec, "-o", tmp_path / "n.onnx", "--opset", opset, capsys=capsys)
    assert code == 2 and f"opset {opset} is not supported" in err and "17 to" in err
    assert not (tmp_path / "n.onnx").exists()


# ------------------------------------------------------------------------------ bad weights

def _save(path: Path, **arrays) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _state(spec: Path) -> dict:
    return runtime.Model(compiler.compile_file(spec)).state_dict()


def test_bad_weights_missing_and_unexpected(spec, tmp_path, capsys):
    st = _state(spec)
    st.pop("enc.bias")
    st["enc.bais"] = np.zeros(8, np.float32)
    code, _, err = specc("compile", spec, "-o", tmp_path / "n.onnx", "--weights",
                         _save(tmp_path / "w.npz", **st), capsys=capsys)
    assert code == 1
    assert "missing: enc.bias" in err and "unexpected: enc.bais (did you mean 'enc.bias'?)" in err


def test_bad_weights_wrong_shape(spec, tmp_path, capsys):
    st = _state(spec)
    st["logits.weight"] = np.zeros((3, 9), np.float32)
    code, _, err = specc("compile", spec, "-o", tmp_path / "n.onnx", "--weights",
                         _save(tmp_path / "w.npz", **st), capsys=capsys)
    assert code == 1 and "logits.weight: weights [3, 9], spec [3, 8]" in err


def test_bad_weights_pickled(spec, tmp_path, capsys):
    st = _state(spec)
    st["enc.bias"] = np.array([{"evil": 1}] * 8, dtype=object)
    w = tmp_path / "w.npz"
    with open(w, "wb") as f:
        np.savez(f, **st)                                # object array: pickled inside the .npz
    code, _, err = specc("compile", spec, "-o", tmp_path / "n.onnx", "--weights", w, capsys=capsys)
    assert code == 1 and "pickled" in err and "Traceback" not in err


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04truncated"])
def test_bad_weights_corrupt(spec, tmp_path, capsys, content):
    w = tmp_path / "w.npz"
    w.write_bytes(content)
    code, _, err = specc("compile", spec, "-o", tmp_path / "n.onnx", "--weights", w, capsys=capsys)
    assert code == 1 and "w.npz" in err and "Traceback" not in err


def test_bad_weights_npy_instead_of_npz(spec, tmp_path, capsys):
    w = tmp_path / "w.npz"
    with open(w, "wb") as f:
        np.save(f, np.zeros(3))
    code, _, err = specc("compile", spec, "-o", tmp_path / "n.onnx", "--weights", w, capsys=capsys)
    assert code == 1 and "w.npz" in err


# ------------------------------------------------------------------------------ atomic output

def test_existing_output_replaced_atomically(spec, tmp_path, capsys, monkeypatch):
    out = tmp_path / "net.onnx"
    out.write_bytes(b"previous export")
    assert specc("compile", spec, "-o", out, capsys=capsys)[0] == 0
    first = out.read_bytes()
    assert first != b"previous export"
    onnx.load(out)

    def broken_save(model, path, *a, **k):          # dies half-way through writing
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", broken_save)
    code, _, err = specc("compile", spec, "-o", out, capsys=capsys)
    assert code == 1 and "cannot write" in err and "disk full" in err
    assert out.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.yaml", "net.onnx"]


def test_failed_compile_keeps_old_file(spec, tmp_path, capsys):
    out = tmp_path / "net.onnx"
    out.write_bytes(b"keep me")
    (tmp_path / "w.npz").write_bytes(b"junk")
    assert specc("compile", spec, "-o", out, "--weights", tmp_path / "w.npz", capsys=capsys)[0] == 1
    assert out.read_bytes() == b"keep me"


def test_compile_refuses_to_overwrite_the_spec(spec, capsys):
    code, _, err = specc("compile", spec, "-o", spec, capsys=capsys)
    assert code == 2 and "refusing" in err
    assert spec.read_text() == SPEC


# ------------------------------------------------------------------------------ run

def test_run_both_backends_agree(spec, ckpt, x_file, tmp_path, capsys):
    onnx_path = tmp_path / "net.onnx"
    assert specc("compile", spec, "-o", onnx_path, "--weights", ckpt, capsys=capsys)[0] == 0
    results = {}
    y_file = tmp_path / "y.npy"
    np.save(y_file, np.zeros(4, np.int64))
    for name, argv in {"numpy": [spec, "--weights", ckpt, "--input", f"y={y_file}"],
                       "ort_spec": [spec, "--weights", ckpt, "--backend", "onnxruntime", "--input", f"y={y_file}"],
                       "ort_file": [onnx_path]}.items():
        out = tmp_path / f"{name}.npz"
        code, stdout, err = specc("run", *argv, "--input", f"x={x_file}", "-o", out, capsys=capsys)
        assert code == 0, err
        with np.load(out) as z:
            results[name] = {k: z[k] for k in z.files}
    assert set(results["numpy"]) == {"logits", "probs"}
    for name in ("ort_spec", "ort_file"):
        for k in ("logits", "probs"):
            np.testing.assert_allclose(results[name][k], results["numpy"][k], rtol=1e-4, atol=1e-5)


def test_run_prints_a_preview(spec, ckpt, x_file, capsys):
    code, out, err = specc("run", spec, "--weights", ckpt, "--input", f"x={x_file}", capsys=capsys)
    assert code == 0, err
    assert "logits: shape 4×3 float32" in out and "probs: shape 4×3 float32" in out


def test_run_takes_a_bare_npz_of_inputs(spec, ckpt, tmp_path, capsys):
    data = tmp_path / "batch.npz"
    _save(data, x=np.ones((2, 6), np.float32), y=np.zeros(2, np.int64))
    code, out, err = specc("run", spec, "--weights", ckpt, "--input", data, capsys=capsys)
    assert code == 0, err
    assert "logits: shape 2×3 float32" in out


def test_run_errors(spec, ckpt, x_file, tmp_path, capsys):
    onnx_path = tmp_path / "net.onnx"
    specc("compile", spec, "-o", onnx_path, capsys=capsys)
    cases = [
        (["run", onnx_path, "--input", f"x={x_file}", "--backend", "numpy"], 2, "numpy backend runs a spec"),
        (["run", onnx_path, "--input", f"x={x_file}", "-o", x_file], 2, "refusing to overwrite"),
        (["run", onnx_path, "--input", f"x={tmp_path / 'nope.npy'}"], 1, "not found"),
        (["run", onnx_path, "--input", f"z={x_file}"], 1, "unknown input 'z'"),
        (["run", onnx_path, "--input", "x"], 2, "NAME=FILE.npy"),
        (["run", spec, "--input", f"x={x_file}"], 2, "--weights"),
        (["run", spec, "--weights", ckpt, "--input", f"z={x_file}"], 1, "unknown input 'z'"),
        (["run", tmp_path / "missing.onnx", "--input", f"x={x_file}"], 1, "no such model file"),
    ]
    for argv, want_code, want in cases:
        code, _, err = specc(*argv, capsys=capsys)
        assert (code, want in err) == (want_code, True), (argv, code, err)
        assert "Traceback" not in err
    assert np.load(x_file).shape == (4, 6)


def test_run_refuses_pickled_and_corrupt_inputs(spec, tmp_path, capsys):
    onnx_path = tmp_path / "net.onnx"
    specc("compile", spec, "-o", onnx_path, capsys=capsys)
    pk = tmp_path / "p.npy"
    np.save(pk, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = specc("run", onnx_path, "--input", f"x={pk}", capsys=capsys)
    assert code == 1 and "pickled" in err
    bad = tmp_path / "b.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    code, _, err = specc("run", onnx_path, "--input", f"x={bad}", capsys=capsys)
    assert code == 1 and "b.npy" in err


# ------------------------------------------------------------------------------ OnnxSession

def test_onnx_session_api(spec, tmp_path):
    g = compiler.compile_file(spec)
    proto = compiler.to_onnx(g)
    sess = runtime.OnnxSession(proto, threads=1)
    x64 = np.random.default_rng(1).standard_normal((3, 6))          # float64: cast to float32
    out = sess.run(x=x64)
    assert list(out) == ["logits", "probs"] and out["logits"].dtype == np.float32
    assert list(sess.run(outputs=["probs"], x=x64)) == ["probs"]
    with pytest.raises(UserError, match="missing input 'x'"):
        sess.run()
    with pytest.raises(UserError, match="must have shape N×6"):
        sess.run(x=np.zeros((3, 5)))
    with pytest.raises(UserError, match="must be numeric"):
        sess.run(x=np.array([["a"] * 6]))
    corrupt = tmp_path / "c.onnx"
    corrupt.write_bytes(b"\x08\x07garbage")
    with pytest.raises(UserError, match="not a valid ONNX model"):
        runtime.OnnxSession(corrupt)
    with pytest.raises(UserError, match="not found"):
        runtime.OnnxSession(tmp_path / "none.onnx")


def test_cli_subprocess_has_no_traceback(spec, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "cli", "compile", str(spec), "-o", str(tmp_path / "n.onnx"),
                        "--opset", "3"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2 and "opset 3 is not supported" in r.stderr and "Traceback" not in r.stderr


def test_export_with_weights_does_not_import_the_runtime(tmp_path):
    code = ("import sys, numpy as np, compiler\n"
            "g = compiler.compile_text('inputs: {x: [N, 3]}\\nlayers: [{linear: 2}]\\n')\n"
            "w = {k: np.zeros(p.shape, np.float32) for k, (p, _) in g.params().items()}\n"
            "compiler.to_onnx(g, weights=w)\n"
            "assert 'runtime' not in sys.modules, 'compiler imported runtime'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
