"""Transfer learning from the command line: `specc train --init CKPT [--init-map OLD=NEW]`, frozen
backbones, standardize statistics kept from the loaded run; runtime.load(strict=False) reporting."""
from __future__ import annotations

import numpy as np
import pytest

import compiler
import runtime
from cli.main import main
from compiler.errors import UserError
from runtime.checkpoint import read_npz, split
from runtime.transfer import init_from, parse_map

SOURCE = """
name: source
inputs:
  image: [N, 1, 4, 4]
  label: {shape: [N], dtype: int64}
layers:
  - {op: standardize, name: norm, from_data: true}
  - flatten
  - {op: linear, name: backbone, out_features: 8}
  - relu
  - {op: linear, name: head, out_features: 3}
  - {op: cross_entropy, name: loss, in: [head, label]}
train: {objective: loss, optimizer: {type: adam, lr: 0.02}, batch_size: 16, epochs: 3,
        data: {train: source.npz}}
"""
TARGET = """
name: target
inputs:
  image: [N, 1, 4, 4]
  label: {shape: [N], dtype: int64}
layers:
  - {op: standardize, name: norm, from_data: true}
  - flatten
  - {op: linear, name: features, out_features: 8}
  - relu
  - {op: linear, name: head, out_features: 2}        # a new head: 2 classes instead of 3
  - {op: cross_entropy, name: loss, in: [head, label]}
train: {objective: loss, optimizer: {type: adam, lr: 0.02}, batch_size: 16, epochs: 3,
        data: {train: target.npz}}
"""


def blobs(n, classes, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, classes, n)
    centres = np.random.default_rng(7).normal(0, 1, (classes, 1, 4, 4))
    image = centres[label] + 0.3 * rng.standard_normal((n, 1, 4, 4)) + shift
    return {"image": image.astype(np.float32), "label": label.astype(np.int64)}


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "source.yaml").write_text(SOURCE)
    (tmp_path / "target.yaml").write_text(TARGET)
    np.savez(tmp_path / "source.npz", **blobs(96, 3, 0))
    np.savez(tmp_path / "target.npz", **blobs(64, 2, 1, shift=3.0))    # another mean: a re-fit would show
    monkeypatch.chdir(tmp_path)
    assert main(["train", "source.yaml", "--out", "runs/source"]) == 0
    return tmp_path


def test_init_map_freeze_and_new_head(project, capsys):
    capsys.readouterr()
    src = split(read_npz(project / "runs/source/best.npz"))[0]
    assert main(["train", "target.yaml", "--init", "runs/source/best.npz", "--init-map", "backbone.*=features.*",
                 "--set", "train.freeze=[features.*]", "--out", "runs/target"]) == 0
    out = capsys.readouterr().out
    assert "2 loaded" not in out and "4 loaded, 2 shape-mismatched, 0 skipped" in out
    for line in ("backbone.weight", "features.weight", "head.weight: checkpoint [3, 8], model [2, 8]",
                 "norm.mean"):
        assert line in out, line
    assert "keeping the statistics of the loaded weights" in out
    new = split(read_npz(project / "runs/target/best.npz"))[0]
    np.testing.assert_array_equal(new["features.weight"], src["backbone.weight"])      # frozen: unchanged
    np.testing.assert_array_equal(new["features.bias"], src["backbone.bias"])
    np.testing.assert_array_equal(new["norm.mean"], src["norm.mean"])                 # not re-fitted
    fresh = runtime.Model(compiler.compile_file("target.yaml"), seed=0).state_dict()
    assert not np.allclose(new["head.weight"], fresh["head.weight"])                  # the head trained


def test_init_without_a_map_and_refusals(project, capsys):
    capsys.readouterr()
    # same names: the source's head does not fit (3 vs 2 classes) and is reported; the rest loads
    assert main(["train", "target.yaml", "--init", "runs/source/best.npz", "--out", "runs/t2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 loaded" in out and "backbone.weight" in out and "not in the model" in out
    # nothing fits -> exit 1, clear message, nothing written
    assert main(["train", "target.yaml", "--init", "runs/source/best.npz", "--init-map", "norm.*=zzz.*",
                 "--init-map", "head.*=other.*", "--init-map", "backbone.*=x.*", "--out", "runs/t3"]) == 1
    err = capsys.readouterr().err
    assert "none of its" in err and "--init-map" in err
    assert not (project / "runs/t3/best.npz").exists()
    assert main(["train", "target.yaml", "--init", "runs/source/best.npz", "--init-map", "nothing.*=features.*",
                 "--out", "runs/t3"]) == 1
    assert "matches no weight" in capsys.readouterr().err
    assert main(["train", "target.yaml", "--init", "runs/source/best.npz", "--init-map", "a.*=b"]) == 2
    assert main(["train", "target.yaml", "--init-map", "a=b"]) == 2
    assert main(["train", "target.yaml", "--init", "runs/source/best.npz", "--resume", "runs/source/last.npz"]) == 2
    assert main(["train", "target.yaml", "--init", "missing.npz"]) == 1


def test_parse_map_globs():
    m = parse_map("blocks.*.conv*=stage.*.c*")
    assert m.rename("blocks.3.conv1.weight") == "stage.3.c1.weight"
    assert m.rename("head.weight") is None
    assert parse_map("fc=head").rename("fc") == "head" and parse_map("fc=head").rename("fc.weight") is None


def test_load_not_strict_reports_skipped_keys(project):
    source = runtime.Model(compiler.compile_file("source.yaml"), seed=1)
    state = dict(source.state_dict())
    state["features.weight"] = state.pop("backbone.weight")            # one renamed, one missing
    del state["backbone.bias"]
    np.savez("partial.npz", **state)
    model = runtime.Model(compiler.compile_file("source.yaml"), seed=2)
    before = model.state_dict()["backbone.weight"].copy()
    meta = runtime.load(model, "partial.npz", strict=False)
    assert sorted(meta["missing_keys"]) == ["backbone.bias", "backbone.weight"]
    assert meta["unexpected_keys"] == ["features.weight"]
    np.testing.assert_array_equal(model.state_dict()["head.weight"], source.state_dict()["head.weight"])
    np.testing.assert_array_equal(model.state_dict()["backbone.weight"], before)
    with pytest.raises(UserError, match="missing: backbone"):
        runtime.load(model, "partial.npz")
    np.savez("unrelated.npz", **{"zzz.weight": np.zeros(3, np.float32)})
    with pytest.raises(UserError, match="none of the 1 weights"):            # it would change nothing
        runtime.load(model, "unrelated.npz", strict=False)
    with pytest.raises(UserError, match="none of its 1 weights"):
        init_from(model, "unrelated.npz")


def test_fit_keeps_standardize_loaded_with_runtime_load(project):
    src = split(read_npz(project / "runs/source/best.npz"))[0]
    g = compiler.compile_file("source.yaml")
    fresh = runtime.Model(g)
    runtime.fit(fresh, dict(np.load("target.npz")), epochs=1, log=None, progress=False)
    assert not np.allclose(fresh.state_dict()["norm.mean"], src["norm.mean"])    # fitted on the new data
    model = runtime.Model(g)
    runtime.load(model, project / "runs/source/best.npz")
    lines = []
    runtime.fit(model, dict(np.load("target.npz")), epochs=1, log=lines.append, progress=False)
    np.testing.assert_array_equal(model.state_dict()["norm.mean"], src["norm.mean"])
    assert any("keeping the statistics" in ln for ln in lines)
