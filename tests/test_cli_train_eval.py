"""`specc train` and `specc eval` end to end through cli.main.main, in a temporary folder."""
from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest

from cli.main import main

SPEC = """\
name: blobs
inputs:
  image: [N, 1, 4, 4]
  label: {shape: [N], dtype: int64}
layers:
  - {op: standardize, name: norm, from_data: true}
  - flatten
  - {op: linear, name: fc1, out_features: 8}
  - relu
  - {op: linear, name: logits, out_features: 3}
  - {op: cross_entropy, name: loss, in: [logits, label]}
outputs: [logits]
train:
  objective: loss
  optimizer: {type: adam, lr: 0.02}
  batch_size: 16
  epochs: 4
  early_stopping: {monitor: val.accuracy, patience: 3}
  metrics: [accuracy, precision, recall, f1, confusion_matrix]
  predict: logits
  target: label
  data: {train: data/train.npz, val: 0.2, test: data/test.npz}
"""


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0, 1, (3, 1, 4, 4))
    label = rng.integers(0, 3, n)
    image = (centres[label] + 0.4 * rng.standard_normal((n, 1, 4, 4))).astype(np.float32)
    return {"image": image, "label": label.astype(np.int64)}


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "specs" / "data").mkdir(parents=True)
    (tmp_path / "specs" / "blobs.yaml").write_text(SPEC)
    np.savez(tmp_path / "specs" / "data" / "train.npz", **blobs(120, 1))
    np.savez(tmp_path / "specs" / "data" / "test.npz", **blobs(60, 2))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_then_eval(project, capsys):
    assert main(["train", "specs/blobs.yaml"]) == 0          # data paths relative to the spec's folder
    out = capsys.readouterr().out
    run = project / "runs" / "blobs"
    plots = importlib.util.find_spec("matplotlib") is not None
    for f in ("best.npz", "last.npz", "history.csv") + (("curves.png",) if plots else ()):
        assert (run / f).is_file(), f
    assert "\r" not in out                                 # not a terminal: plain lines
    assert out.count("epoch ") >= 4 and "val loss" in out and "acc" in out
    assert "test set" in out and "accuracy" in out and "confusion matrix" in out
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert len(rows) == 4 and {"epoch", "train.loss", "val.loss", "val.accuracy", "val.f1", "lr"} <= set(rows[0])
    if plots:
        assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["eval", "specs/blobs.yaml", "--weights", str(run / "best.npz")]) == 0
    out = capsys.readouterr().out
    for word in ("loss", "accuracy", "precision", "recall", "f1", "confusion matrix", "true  2"):
        assert word in out, word
    assert "60 samples" in out and "macro" in out
    acc = float(next(ln for ln in out.splitlines() if ln.startswith("accuracy")).split()[1])
    assert acc > 0.9

    # --data overrides the spec's test set (a path relative to the current folder)
    np.savez(project / "other.npz", **blobs(30, 3))
    assert main(["eval", "specs/blobs.yaml", "--weights", str(run / "last.npz"), "--data", "other.npz"]) == 0
    assert "30 samples" in capsys.readouterr().out


def test_train_options_and_resume(project, capsys):
    assert main(["train", "specs/blobs.yaml", "--epochs", "2", "--out", "r1", "--set", "x=1"]) == 1
    assert "no param 'x'" in capsys.readouterr().err
    assert main(["train", "specs/blobs.yaml", "--epochs", "2", "--out", "r1"]) == 0
    assert len(list(csv.DictReader((project / "r1" / "history.csv").open()))) == 2
    capsys.readouterr()
    assert main(["train", "specs/blobs.yaml", "--epochs", "3", "--out", "r1", "--resume", "r1/last.npz"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "epoch 3/3" in out and "epoch 1/3" not in out
    assert len(list(csv.DictReader((project / "r1" / "history.csv").open()))) == 3
    # --data replaces the training file
    np.savez(project / "mine.npz", **blobs(50, 4))
    assert main(["train", "specs/blobs.yaml", "--epochs", "1", "--out", "r2", "--data", "mine.npz"]) == 0
    assert "training blobs: 40 samples, validating on 10" in capsys.readouterr().out


def test_train_replacing_resuming_and_finished_runs(project, capsys):
    assert main(["train", "specs/blobs.yaml", "--epochs", "2", "--out", "r"]) == 0
    capsys.readouterr()
    before = {f: (project / "r" / f).read_bytes() for f in ("best.npz", "last.npz", "history.csv")}
    # a failing run announces nothing and touches nothing
    assert main(["train", "specs/blobs.yaml", "--epochs", "1", "--out", "r", "--data", "missing.npz"]) == 1
    assert "replacing" not in capsys.readouterr().err
    # a finished run resumed: nothing to do, nothing written
    assert main(["train", "specs/blobs.yaml", "--out", "r", "--resume", "r/last.npz", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "already trained 2 epochs" in out and "wrote" not in out
    assert before == {f: (project / "r" / f).read_bytes() for f in before}
    # the same spec with other params: said as such, the old run kept
    spec2 = (project / "specs" / "blobs.yaml").read_text().replace("out_features: 8", "out_features: 9")
    (project / "specs" / "blobs.yaml").write_text(spec2)
    assert main(["train", "specs/blobs.yaml", "--epochs", "1", "--out", "r"]) == 1
    err = capsys.readouterr().err
    assert "a run of blobs made with other --set params or an earlier version of the spec" in err
    assert before == {f: (project / "r" / f).read_bytes() for f in before}
    # resuming it with the changed spec: the checkpoint's own message, not --out advice
    assert main(["train", "specs/blobs.yaml", "--out", "r", "--resume", "r/last.npz", "--epochs", "3"]) == 1
    err = capsys.readouterr().err
    assert "different spec" in err and "--out" not in err
    # a run of the unchanged spec replaced: said once training starts
    (project / "specs" / "blobs.yaml").write_text(SPEC)
    assert main(["train", "specs/blobs.yaml", "--epochs", "1", "--out", "r"]) == 0
    assert "replacing the previous run in r" in capsys.readouterr().err


def test_train_refusals(project, capsys):
    (project / "afile").write_text("mine")
    assert main(["train", "specs/blobs.yaml", "--out", "afile"]) == 1
    assert "not a folder" in capsys.readouterr().err and (project / "afile").read_text() == "mine"

    assert main(["train", "specs/blobs.yaml", "--data", "missing.npz"]) == 1
    err = capsys.readouterr().err
    assert "missing.npz" in err and "not found" in err and "Traceback" not in err

    np.savez(project / "bad.npz", image=np.zeros((10, 16), np.float32), label=np.zeros(10, np.int64))
    assert main(["train", "specs/blobs.yaml", "--data", "bad.npz"]) == 1
    err = capsys.readouterr().err
    assert "array 'image'" in err and "[N, 1, 4, 4]" in err and "[10, 16]" in err

    np.savez(project / "labels.npz", image=np.zeros((10, 1, 4, 4), np.float32), label=np.full(10, 7))
    assert main(["train", "specs/blobs.yaml", "--data", "labels.npz"]) == 1
    assert "outside 0..2" in capsys.readouterr().err

    assert main(["train", "specs/blobs.yaml", "--resume", "nope.npz"]) == 1
    assert main(["eval", "specs/blobs.yaml", "--weights", "nope.npz"]) == 1
    capsys.readouterr()
    (project / "weights.npz").write_bytes(b"junk")
    assert main(["eval", "specs/blobs.yaml", "--weights", "weights.npz"]) == 1
    assert "weights.npz" in capsys.readouterr().err


def test_train_without_data_or_train_section(project, capsys):
    (project / "specs" / "nodata.yaml").write_text(SPEC.replace(
        "  data: {train: data/train.npz, val: 0.2, test: data/test.npz}\n", ""))
    assert main(["train", "specs/nodata.yaml"]) == 2
    assert "no training data" in capsys.readouterr().err
    assert main(["eval", "specs/nodata.yaml", "--weights", "x.npz"]) == 1      # a missing file
    assert "not found" in capsys.readouterr().err
    (project / "specs" / "notrain.yaml").write_text(SPEC.split("train:\n")[0])
    assert main(["train", "specs/notrain.yaml"]) == 1
    assert "no train section" in capsys.readouterr().err


def test_builtin_digits_source_and_missing_digits_files(project, capsys):
    pytest.importorskip("sklearn")
    spec = SPEC.replace("[N, 1, 4, 4]", "[N, 1, 8, 8]").replace("out_features: 3", "out_features: 10")
    (project / "specs" / "d.yaml").write_text(spec.replace(
        "data/train.npz, val: 0.2, test: data/test.npz", "data/digits_train.npz, test: data/digits_test.npz"))
    assert main(["train", "specs/d.yaml"]) == 1
    err = capsys.readouterr().err
    assert "digits_train.npz" in err and "python tools/digits.py" in err
    (project / "specs" / "b.yaml").write_text(spec.replace(
        "data/train.npz, val: 0.2, test: data/test.npz", '"builtin:digits", val: 0.1, test: "builtin:digits"'))
    assert main(["train", "specs/b.yaml", "--epochs", "1", "--out", "rd"]) == 0
    out = capsys.readouterr().out
    assert "builtin:digits/test" in out
    assert main(["eval", "specs/b.yaml", "--weights", "rd/best.npz", "--data", "builtin:digits"]) == 0
    assert "builtin:digits/test" in capsys.readouterr().out


def test_interrupted_run_resumes_in_its_out_folder(project, capsys, monkeypatch):
    import cli.train as C
    real_fit = C.fit

    def interrupted_fit(*a, **k):
        def stop(epoch, rec):
            if epoch == 2:
                raise KeyboardInterrupt
        return real_fit(*a, callback=stop, **k)

    monkeypatch.setattr(C, "fit", interrupted_fit)
    assert main(["train", "specs/blobs.yaml", "--out", "my run", "--set", "train.optimizer.lr=0.01",
                 "--epochs", "4"]) == 130
    err = capsys.readouterr().err
    command = err.split("continue with: ")[1].strip()
    assert command == ("specc train specs/blobs.yaml --epochs 4 --set train.optimizer.lr=0.01 "
                       "--resume 'my run/last.npz' --out 'my run'")
    monkeypatch.setattr(C, "fit", real_fit)
    import shlex
    args = shlex.split(command)[2:]
    args.remove("--out"), args.remove("my run")                # without --out: continues in the same folder
    assert main(["train"] + args) == 0
    assert "resuming from" in capsys.readouterr().out
    rows = list(csv.DictReader((project / "my run" / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert not (project / "runs").exists()
