"""Bad files, paths and flags: a clear `error:` and exit 1 (file) or 2 (usage), never a traceback, and a
user's files are never lost or replaced by something else."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import compiler
import runtime
from cli.main import main
from compiler.errors import UserError
from compiler.files import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: blobs
inputs:
  image: [N, 1, 4, 4]
  label: {shape: [N], dtype: int64}
layers:
  - flatten
  - {op: linear, name: fc1, out_features: 8}
  - relu
  - {op: linear, name: logits, out_features: 3}
  - {op: cross_entropy, name: loss, in: [logits, label]}
outputs: [logits]
train:
  objective: loss
  optimizer: {type: adam, lr: 0.02}
  batch_size: 100
  epochs: 1
  data: {train: data/train.npz}
"""

EMB = """\
name: emb
inputs:
  tokens: {shape: [N, T], dtype: int64}
layers:
  - {op: embedding, name: emb, num_embeddings: 5, embedding_dim: 3}
outputs: [emb]
"""


def specc(*argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "specs" / "data").mkdir(parents=True)
    (tmp_path / "specs" / "blobs.yaml").write_text(SPEC)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "specs" / "data" / "train.npz",
             image=rng.standard_normal((40, 1, 4, 4)).astype(np.float32), label=rng.integers(0, 3, 40))
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 1, 4, 4)).astype(np.float32))
    model = runtime.Model(compiler.compile_file(tmp_path / "specs" / "blobs.yaml"), seed=0)
    runtime.save(model, tmp_path / "w.npz")
    (tmp_path / "afile").write_text("mine")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------ atomic_write

def test_atomic_write_refuses_folders_and_missing_parents(tmp_path):
    with pytest.raises(UserError, match="it is a folder"):
        atomic_write_text(tmp_path, "x")
    with pytest.raises(UserError, match="folder '.*nope' does not exist"):
        atomic_write_text(tmp_path / "nope" / "f.txt", "x")
    assert not (tmp_path / "nope").exists()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(UserError, match="is a file, not a folder"):
        atomic_write_text(tmp_path / "file" / "f.txt", "x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        atomic_write_text(tmp_path / "file" / "a" / "f.txt", "x", make_parents=True)
    assert (tmp_path / "file").read_text() == "mine"
    atomic_write_text(tmp_path / "new" / "f.txt", "x", make_parents=True)
    assert (tmp_path / "new" / "f.txt").read_text() == "x"


def test_atomic_write_follows_symlinks(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640            # the file keeps its mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


@pytest.mark.skipif(not os.path.exists("/dev/full") or not os.path.exists("/dev/null"), reason="no /dev/full")
def test_atomic_write_keeps_devices(capsys):
    atomic_write_text("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if os.access("/dev/full", os.W_OK):
        code, _, err = specc("schema", "-o", "/dev/full", capsys=capsys)
        assert code == 1 and "cannot write '/dev/full'" in err
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no fifos")
def test_atomic_write_writes_into_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen([sys.executable, "-c", f"print(open({str(fifo)!r}).read(), end='')"],
                              stdout=subprocess.PIPE, text=True)
    atomic_write_text(fifo, "through the pipe")
    assert reader.communicate(timeout=30)[0] == "through the pipe"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# ------------------------------------------------------------------------------ output paths

def test_outputs_to_folders_files_and_missing_folders(project, capsys):
    spec = "specs/blobs.yaml"
    (project / "outdir").mkdir()
    cases = [
        (["run", spec, "--weights", "w.npz", "--input", "image=x.npy", "-o", "outdir"], "it is a folder"),
        (["schema", "-o", "outdir"], "it is a folder"),
        (["compile", spec, "-o", "outdir"], "it is a folder"),
        (["compile", spec, "-o", "afile/x.onnx"], "'afile' is a file, not a folder"),
        (["schema", "-o", "afile/x.json"], "'afile' is a file, not a folder"),
        (["graph", spec, "-o", "afile/x.dot"], "'afile' is a file, not a folder"),
        (["run", spec, "--weights", "w.npz", "--input", "image=x.npy", "-o", "afile/o.npz"], "not a folder"),
        (["train", spec, "--out", "afile/sub"], "'afile' is a file"),
        (["compile", spec, "-o", "missing/x.onnx"], "folder 'missing' does not exist"),
        (["schema", "-o", "missing/x.json"], "folder 'missing' does not exist"),
        (["run", spec, "--weights", "w.npz", "--input", "image=x.npy", "-o", "missing/o.npz"], "does not exist"),
    ]
    for argv, want in cases:
        code, _, err = specc(*argv, capsys=capsys)
        assert code == 1 and want in err, (argv, code, err)
        assert err.startswith("error: ")
    assert (project / "afile").read_text() == "mine"
    assert not (project / "missing").exists() and list((project / "outdir").iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc")
def test_compile_into_proc(project, capsys):
    code, _, err = specc("compile", "specs/blobs.yaml", "-o", "/proc/x.onnx", capsys=capsys)
    assert code == 1 and "cannot write '/proc/x.onnx'" in err


def test_train_out_may_be_created(project, capsys):
    assert specc("train", "specs/blobs.yaml", "--out", "new/run", capsys=capsys)[0] == 0
    assert (project / "new" / "run" / "best.npz").is_file()


# ------------------------------------------------------------------------------ checkpoints

def test_npy_and_text_files_as_checkpoints(project, capsys):
    np.save(project / "w.npy", np.zeros(3, np.float32))
    (project / "text.npz").write_text("hello, not a zip")
    spec = "specs/blobs.yaml"
    for weights, want in (("w.npy", "'w.npy' is a .npy array, not an .npz checkpoint"),
                          ("text.npz", "not a valid .npz file")):
        for argv in (["eval", spec, "--weights", weights],
                     ["run", spec, "--weights", weights, "--input", "image=x.npy"],
                     ["run", spec, "--weights", weights, "--input", "image=x.npy", "--backend", "onnxruntime"],
                     ["compile", spec, "--weights", weights, "-o", "n.onnx"]):
            code, _, err = specc(*argv, capsys=capsys)
            assert code == 1 and want in err and "pickled" not in err, (argv, err)
    model = runtime.Model(compiler.compile_file(spec))
    with pytest.raises(UserError, match="is a .npy array"):
        runtime.load(model, "w.npy")


def test_string_weights_are_refused(project, capsys):
    arrays = dict(np.load("w.npz"))
    arrays["fc1.weight"] = arrays["fc1.weight"].astype(str)
    np.savez("s.npz", **arrays)
    spec = "specs/blobs.yaml"
    for argv in (["eval", spec, "--weights", "s.npz"],
                 ["run", spec, "--weights", "s.npz", "--input", "image=x.npy"],
                 ["compile", spec, "--weights", "s.npz", "-o", "n.onnx"]):
        code, _, err = specc(*argv, capsys=capsys)
        assert code == 1 and "non-numeric array 'fc1.weight'" in err, (argv, err)
    with pytest.raises(UserError, match="fc1.weight"):
        runtime.load(runtime.Model(compiler.compile_file(spec)), "s.npz")


def test_nonfinite_weights_warn_and_fail_verify(project, capsys):
    arrays = dict(np.load("w.npz"))
    arrays["fc1.weight"][0, 0] = np.nan
    np.savez("nan.npz", **arrays)
    spec = "specs/blobs.yaml"
    code, _, err = specc("run", spec, "--weights", "nan.npz", "--input", "image=x.npy", capsys=capsys)
    assert code == 0 and "warning" in err and "NaN/inf" in err and "fc1.weight" in err
    code, _, err = specc("eval", spec, "--weights", "nan.npz", capsys=capsys)
    assert "warning" in err and "NaN/inf" in err
    code, _, err = specc("compile", spec, "--weights", "nan.npz", "-o", "n.onnx", "--verify", capsys=capsys)
    assert code == 1 and "outputs contain NaN/inf: the weights or inputs are not finite" in err
    assert not (project / "n.onnx").exists()


# ------------------------------------------------------------------------------ exit codes

def test_missing_files_exit_1(project, capsys):
    spec = "specs/blobs.yaml"
    assert specc("compile", spec, "-o", "n.onnx", capsys=capsys)[0] == 0
    cases = [
        ["eval", spec, "--weights", "missing.npz"],
        ["train", spec, "--resume", "missing.npz"],
        ["train", spec, "--data", "missing.npz"],
        ["run", spec, "--weights", "missing.npz", "--input", "image=x.npy"],
        ["run", spec, "--weights", "w.npz", "--input", "image=missing.npy"],
        ["run", "missing.onnx", "--input", "image=x.npy"],
        ["compile", spec, "-o", "o.onnx", "--weights", "missing.npz"],
    ]
    for argv in cases:
        code, _, err = specc(*argv, capsys=capsys)
        assert code == 1 and "missing" in err, (argv, code, err)
    with pytest.raises(UserError) as e:
        runtime.OnnxSession("missing.onnx")
    assert e.value.code == 1
    assert specc("run", "n.onnx", "--input", "image", capsys=capsys)[0] == 2          # a malformed flag


def test_run_with_an_array_as_the_model(project, capsys):
    code, _, err = specc("run", "x.npy", "--input", "image=x.npy", capsys=capsys)
    assert code == 1 and "expects a spec .yaml or a .onnx file" in err
    (project / "blob.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    code, _, err = specc("run", "blob.yaml", "--weights", "w.npz", "--input", "image=x.npy", capsys=capsys)
    assert code == 1 and "not a text file" in err


def test_bad_files_and_spec_problems_exit_1_malformed_flags_2(project, capsys):
    np.savez("two.npz", a=np.zeros((2, 1, 4, 4), np.float32), b=np.zeros((2, 1, 4, 4), np.float32))
    code, _, err = specc("run", "specs/blobs.yaml", "--weights", "w.npz", "--input", "image=two.npz",
                         capsys=capsys)
    assert code == 1 and "none is named 'image'" in err                     # the file lacks the array
    (project / "specs" / "clash.yaml").write_text(SPEC.replace("outputs: [logits]", "outputs: {image: logits}"))
    code, _, err = specc("compile", "specs/clash.yaml", "-o", "c.onnx", capsys=capsys)
    assert code == 1 and "also the name of a graph input" in err            # fixed in the spec
    assert specc("run", "specs/blobs.yaml", "--weights", "w.npz", "--input", "image=x.npy", "--input",
                 "image=x.npy", capsys=capsys)[0] == 2                   # a flag given twice


# ------------------------------------------------------------------------------ runs

def test_train_refuses_to_replace_a_run_of_another_spec(project, capsys):
    spec = project / "specs" / "blobs.yaml"
    code, out, err = specc("train", spec, capsys=capsys)
    assert code == 0 and "replacing" not in err and "1 batch of 40" in out     # 40 samples, batch_size 100
    best = project / "runs" / "blobs" / "best.npz"
    before = best.read_bytes()
    code, _, err = specc("train", spec, capsys=capsys)                      # the same spec: replaced
    assert code == 0 and "replacing the previous run in runs/blobs" in err
    spec.write_text(SPEC.replace("out_features: 8", "out_features: 9"))
    before = best.read_bytes()
    code, _, err = specc("train", spec, capsys=capsys)
    assert code == 1 and "other --set params or an earlier version" in err and "use --out DIR" in err
    assert best.read_bytes() == before
    assert specc("train", spec, "--out", "runs/other", capsys=capsys)[0] == 0


# ------------------------------------------------------------------------------ data hints

def test_builtin_digits_only_suggested_when_it_fits(project, capsys):
    specs = project / "specs"
    (specs / "nodata.yaml").write_text(SPEC.replace("  data: {train: data/train.npz}\n", ""))
    code, _, err = specc("train", specs / "nodata.yaml", capsys=capsys)
    assert code == 2 and "builtin:digits" not in err                         # a 1×4×4 image
    (specs / "d8.yaml").write_text(SPEC.replace("[N, 1, 4, 4]", "[N, 1, 8, 8]")
                                   .replace("  data: {train: data/train.npz}\n", ""))
    code, _, err = specc("train", specs / "d8.yaml", capsys=capsys)
    assert code == 2 and "builtin:digits" in err
    for name in ("gcn", "seq2seq", "word2vec_cbow"):           # without the built-in sets their train.data names
        text = (ROOT / "specs" / f"{name}.yaml").read_text()
        (specs / f"{name}.yaml").write_text("".join(ln for ln in text.splitlines(True) if not ln.startswith("  data:")))
        code, _, err = specc("train", specs / f"{name}.yaml", "--out", "r", capsys=capsys)
        assert code == 2 and "builtin:digits" not in err, (name, err)


def test_lenet5_on_builtin_digits(project, capsys):
    # builtin:digits alone is resized to the spec's 28×28 (tests/test_builtin_data.py); an explicit 8×8 is not
    code, _, err = specc("train", ROOT / "specs" / "lenet5.yaml", "--data", "builtin:digits?size=8", "--out", "r",
                         capsys=capsys)
    assert code == 1 and "built-in digits are 1×8×8 images" in err and "1×28×28" in err
    assert "reshape the array" not in err


# ------------------------------------------------------------------------------ graph, ORT, tools

def test_graph_needs_a_picture_suffix(project, capsys):
    (project / "pics").mkdir()
    code, _, err = specc("graph", "specs/blobs.yaml", "-o", "g", capsys=capsys)
    assert code == 2 and "give the file a .dot, .mmd, .svg, .png or .pdf suffix" in err and "'.'" not in err
    code, _, err = specc("graph", "specs/blobs.yaml", "-o", "pics", capsys=capsys)
    assert code == 1 and "folder" in err and ".dot, .mmd, .svg, .png or .pdf" in err


def test_mermaid_has_block_subgraphs(tmp_path, capsys):
    out = tmp_path / "r.mmd"
    assert specc("graph", ROOT / "specs" / "resnet18.yaml", "-o", out, "--full", capsys=capsys)[0] == 0
    text = out.read_text()
    assert 'subgraph n_cluster_layer1_0["layer1.0"]' in text and text.count("subgraph") == text.count("  end")


def test_onnx_session_checks_embedding_indices(tmp_path, capsys):
    g = compiler.compile_text(EMB)
    sess = runtime.OnnxSession(compiler.to_onnx(g))
    assert sess.run(tokens=np.array([[0, 4]]))["emb"].shape == (1, 2, 3)
    for bad in (-1, 5):
        with pytest.raises(UserError, match=f"holds {bad}, outside 0..4"):
            sess.run(tokens=np.array([[0, bad]]))
    assert "\x1b[" not in capsys.readouterr().err


def test_shape_check_unknown_set_key():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "shape_check.py"), str(ROOT / "specs"),
                        "--set", "clases=3"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "no checked spec declares a param 'clases'" in r.stderr
    assert "did you mean 'classes'" in r.stderr and "Traceback" not in r.stderr


def test_outputs_never_replace_files_of_another_kind(tmp_path, capsys):
    """compile/run/schema -o refuse an existing file that is not of their kind (a spec, a library, a
    checkpoint), leaving it untouched; a new file with another suffix is written with a note."""
    spec = tmp_path / "net.yaml"
    spec.write_text("inputs: {x: [N, 4]}\nlayers:\n  - {op: linear, name: fc, out_features: 2}\n")
    other = tmp_path / "lib.yaml"
    other.write_text("blocks: {}\n")
    ckpt = tmp_path / "w.npz"
    ckpt.write_bytes(b"PK-not-really")
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 4), np.float32))
    cases = [("compile", spec, "-o", other), ("compile", spec, "-o", ckpt), ("schema", "-o", other),
             ("run", spec, "--backend", "onnxruntime", "--input", f"x={x}", "-o", other)]
    for argv in cases:
        code, _, err = specc(*argv, capsys=capsys)
        assert code == 1 and "refusing to replace it" in err, (argv, err)
    assert other.read_text() == "blocks: {}\n" and ckpt.read_bytes() == b"PK-not-really"
    code, _, err = specc("compile", spec, "-o", tmp_path / "net.txt", capsys=capsys)
    assert code == 0 and "does not end in .onnx" in err and (tmp_path / "net.txt").stat().st_size > 0
