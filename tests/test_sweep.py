"""`specc sweep`: one run per combination, results sorted by the monitored metric, failures as rows."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from cli.main import main
from runtime.sweep import _split_values, parse_grid, run_name

SPEC = """
name: sw
params: {width: 8}
inputs:
  image: [N, 1, 4, 4]
  label: {shape: [N], dtype: int64}
layers:
  - flatten
  - {op: linear, name: fc1, out_features: "${width}"}
  - relu
  - {op: linear, name: logits, out_features: 3}
  - {op: cross_entropy, name: loss, in: [logits, label]}
train:
  objective: loss
  optimizer: {type: sgd, lr: 0.01}
  batch_size: 16
  epochs: 2
  data: {train: train.npz, val: 0.25}
  checkpoint: {monitor: val.accuracy}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 96)
    image = np.random.default_rng(1).normal(0, 1, (3, 1, 4, 4))[label] + 0.5 * rng.standard_normal((96, 1, 4, 4))
    np.savez(tmp_path / "train.npz", image=image.astype(np.float32), label=label.astype(np.int64))
    (tmp_path / "sw.yaml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sweep_table_sorted_with_failures(project, capsys):
    assert main(["sweep", "sw.yaml", "--grid", "train.optimizer.lr=1e-4,0.3", "--grid", "width=4,0",
                 "--out", "sweep", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader((project / "sweep" / "results.csv").open()))
    assert len(rows) == 4
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(ok) == 2 and len(failed) == 2 and rows[:2] == ok           # failures last
    values = [float(r["value"]) for r in ok]
    assert values == sorted(values, reverse=True)                         # accuracy: best (highest) first
    assert all(r["monitor"] == "val.accuracy" and r["epochs"] == "3" for r in ok)
    assert all(r["width"] == "0" and "out_features must be positive" in r["error"] for r in failed)
    for r in ok:
        assert (project / r["folder"] / "best.npz").is_file() and r["folder"].startswith("sweep/lr=")
    assert ok[0]["train.optimizer.lr"] == "0.3"                           # the larger lr learns in 3 epochs
    assert "rank" in out and "failed" in out and "results.csv" in out


def test_sweep_refusals(project, capsys):
    assert main(["sweep", "sw.yaml"]) == 2
    assert main(["sweep", "sw.yaml", "--grid", "width"]) == 2
    assert main(["sweep", "sw.yaml", "--grid", "width=1,", "--out", "x"]) == 2
    assert main(["sweep", "sw.yaml", "--grid", "width=1", "--grid", "width=2"]) == 2
    assert main(["sweep", "sw.yaml", "--grid", "nope=1,2", "--out", "x"]) == 1        # every run fails
    assert "no param 'nope'" in capsys.readouterr().out
    assert main(["sweep", "missing.yaml", "--grid", "width=1"]) == 1
    (project / "mine").mkdir()
    (project / "mine" / "results.csv").write_text("my own numbers\n")
    assert main(["sweep", "sw.yaml", "--grid", "width=1", "--out", "mine"]) == 1
    assert (project / "mine" / "results.csv").read_text() == "my own numbers\n"


def test_grid_parsing_and_names():
    assert _split_values("[3, 3],[5, 5]") == ["[3, 3]", "[5, 5]"]
    assert parse_grid(["train.optimizer.lr=1e-3,3e-3", "k=[3,3],7"]) == {
        "train.optimizer.lr": [1e-3, 3e-3], "k": [[3, 3], 7]}
    assert run_name({"train.optimizer.lr": 3e-4, "width": 16}) == "lr=0.0003_width=16"
    assert run_name({"train.optimizer.lr": 1, "lr": 2}) == "train.optimizer.lr=1_lr=2"
    assert run_name({"k": [3, 3]}) == "k=-3-3"
