"""Metrics that fit the data (runtime/metrics.py): regression (mae, rmse, r2), masked metrics (train.mask),
the loss's ignore_index left out of token and sequence accuracy — each against scikit-learn or a direct
computation — and their plumbing through evaluate/fit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import compiler
from cli.main import main
from runtime import metrics as M
from runtime.model import Model
from runtime.schedule import monitor_mode
from runtime.train import evaluate, fit, make_plan

ROOT = Path(__file__).resolve().parent.parent
rng = np.random.default_rng(3)


def batches(*arrays, size=7):
    n = len(arrays[0])
    for s in range(0, n, size):
        yield tuple(a[s:s + size] for a in arrays)


# -- regression ----------------------------------------------------------------------------------------
def test_regression_metrics_match_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    y = rng.normal(size=(50, 3)) * [1.0, 5.0, 0.1]
    p = y + rng.normal(size=y.shape) * 0.3
    acc = M.Accumulator(metrics=("mae", "rmse", "r2"))
    for pb, yb in batches(p.astype(np.float32), y.astype(np.float32)):
        acc.update(pb, yb)
    res = acc.result()
    assert res["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-5)
    assert res["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)), rel=1e-5)   # over every value
    assert res["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-5)                         # column average
    assert "accuracy" not in res
    one = M.compute(p[:, :1], y[:, 0], metrics=("rmse", "r2"))
    assert one["rmse"] == pytest.approx(skm.root_mean_squared_error(y[:, 0], p[:, 0]), rel=1e-5)
    assert one["r2"] == pytest.approx(skm.r2_score(y[:, 0], p[:, 0]), rel=1e-5)
    const = np.c_[np.full(20, 2.0), rng.normal(size=20)]
    for pred in (const, const + [[0.5, 0.0]]):              # a constant column: 1 if exact, else 0 (sklearn)
        assert M.compute(pred, const, metrics=("r2",))["r2"] == pytest.approx(skm.r2_score(const, pred))


def test_regression_with_a_mask():
    skm = pytest.importorskip("sklearn.metrics")
    y, p = rng.normal(size=40), rng.normal(size=40)
    keep = rng.random(40) < 0.6
    res = M.compute(p, y, metrics=("mae", "r2"), mask=keep.astype(np.float32))
    assert res["mae"] == pytest.approx(skm.mean_absolute_error(y[keep], p[keep]))
    assert res["r2"] == pytest.approx(skm.r2_score(y[keep], p[keep]))


# -- masks, ignore_index, sequences --------------------------------------------------------------------
def test_masked_classification_matches_sklearn_on_the_kept_samples():
    skm = pytest.importorskip("sklearn.metrics")
    logits = rng.normal(size=(60, 4)).astype(np.float32)
    y = rng.integers(0, 4, 60)
    mask = (rng.random(60) < 0.5).astype(np.float32)
    acc = M.Accumulator()
    for lb, yb, mb in batches(logits, y, mask):
        acc.update(lb, yb, mb)
    res, keep = acc.result(), mask > 0
    pred = logits.argmax(1)
    assert res["accuracy"] == pytest.approx(skm.accuracy_score(y[keep], pred[keep]))
    assert res["f1"] == pytest.approx(skm.f1_score(y[keep], pred[keep], average="macro"))
    assert acc.cm.sum() == keep.sum()
    with pytest.raises(ValueError, match="metric mask has shape"):
        M.compute(logits, y, mask=np.ones(7))


def test_token_and_sequence_accuracy_leave_out_ignored_positions():
    skm = pytest.importorskip("sklearn.metrics")
    n, c, t = 30, 5, 6
    logits = rng.normal(size=(n, c, t)).astype(np.float32)
    target = logits.argmax(1)
    wrong = rng.random((n, t)) < 0.1
    target[wrong] = (target[wrong] + 1) % c
    lengths = rng.integers(1, t + 1, n)
    pad = np.arange(t)[None] >= lengths[:, None]
    target[pad] = 0                                   # padding: class 0, ignored
    acc = M.Accumulator(metrics=("accuracy", "token_accuracy", "sequence_accuracy"), ignore_index=0)
    for lb, tb in batches(logits, target, size=4):
        acc.update(lb, tb)
    res = acc.result()
    keep = target != 0
    pred = logits.argmax(1)
    assert res["token_accuracy"] == res["accuracy"] == pytest.approx(skm.accuracy_score(target[keep], pred[keep]))
    exact = [all(pred[i, j] == target[i, j] for j in range(t) if target[i, j] != 0) for i in range(n)
             if (target[i] != 0).any()]
    assert res["sequence_accuracy"] == pytest.approx(np.mean(exact))
    plain = M.compute(logits, target, metrics=("accuracy",))          # without ignore_index padding counts
    assert plain["accuracy"] == pytest.approx(skm.accuracy_score(target.ravel(), pred.ravel()))


TOKENS = {
    "specc": 1, "name": "tagger",
    "inputs": {"src": {"shape": ["N", "S"], "dtype": "int64"}, "tgt_out": {"shape": ["N", "S"], "dtype": "int64"}},
    "layers": [
        {"op": "embedding", "name": "emb", "in": "src", "num_embeddings": 13, "embedding_dim": 8},
        {"op": "linear", "name": "proj", "out_features": 13},
        {"op": "permute", "name": "nct", "dims": [0, 2, 1]},
        {"op": "cross_entropy", "name": "loss", "in": ["nct", "tgt_out"], "ignore_index": 0}],
    "outputs": ["nct"],
    "train": {"objective": "loss", "batch_size": 64, "epochs": 3, "optimizer": {"type": "adam", "lr": 0.05},
              "metrics": ["token_accuracy", "sequence_accuracy"],
              "data": {"train": "builtin:copy?length=6,min_length=2", "test": "builtin:copy?length=6,min_length=2"}},
}


def test_ignore_index_reaches_the_metrics_in_evaluate_and_fit():
    g = compiler.compile_text(yaml.safe_dump(TOKENS, sort_keys=False))
    model = Model(g, seed=0)
    plan = make_plan(model, g.train)
    assert plan.ignore_index == 0 and plan.predict == "nct" and plan.target == "tgt_out"
    # copy: tgt_out is src then <eos>; predict src's tokens position by position (src is one shorter)
    from runtime import data as D
    arrays, _ = D.read("builtin:copy?length=6,min_length=2")
    ds = {"src": arrays["src"], "tgt_out": arrays["tgt_out"][:, :6]}    # drop <eos>: aligned with src
    history = fit(model, ds, epochs=3, log=None)
    res = evaluate(model, ds, plan=plan)
    out = model(outputs=["nct"], src=ds["src"])["nct"]
    keep = ds["tgt_out"] != 0
    pred = out.argmax(1)
    assert keep.mean() < 0.9                                           # there is padding to leave out
    assert res["token_accuracy"] == pytest.approx((pred == ds["tgt_out"])[keep].mean())
    assert res["sequence_accuracy"] == pytest.approx(((pred == ds["tgt_out"]) | ~keep).all(1).mean())
    assert res["token_accuracy"] > 0.95 and "train.token_accuracy" in history[-1]
    assert monitor_mode("val.sequence_accuracy") == "max" and monitor_mode("val.r2") == "max"
    assert monitor_mode("val.rmse") == "min"


def test_node_classification_on_karate_scored_on_the_masked_nodes(tmp_path, capsys):
    pytest.importorskip("networkx")
    text = (ROOT / "specs" / "gcn.yaml").read_text()
    text = text.replace('  train_mask: ["${nodes}"]\n', '  train_mask: ["${nodes}"]\n  test_mask: ["${nodes}"]\n')
    text += ('  predict: conv2\n  target: label\n  metrics: [accuracy]\n'
             '  mask: {train: train_mask, test: test_mask}\n'
             '  data: {train: "builtin:karate", test: "builtin:karate"}\n')
    spec = tmp_path / "gcn_karate.yaml"
    spec.write_text(text)
    sets = ["--set", "nodes=34", "--set", "features=34", "--set", "classes=2", "--set", "labelled=2"]
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), *sets]) == 0
    out = capsys.readouterr().out
    g = compiler.compile_file(spec, params={"nodes": 34, "features": 34, "classes": 2, "labelled": 2})
    model = Model(g)
    from runtime.checkpoint import load
    load(model, tmp_path / "run" / "last.npz")
    model.eval()
    from runtime import data as D
    plan = make_plan(model, g.train)
    ds = D.load(g, "builtin:karate", plan.needed, role="test")
    res_test, res_train = evaluate(model, ds, plan=plan), evaluate(model, ds, plan=plan, split="train")
    pred = model(outputs=["conv2"], **{k: ds.arrays[k] for k in ("x", "adj")})["conv2"].argmax(1)
    label, test = ds.arrays["label"], ds.arrays["test_mask"] > 0
    assert res_test["accuracy"] == pytest.approx((pred == label)[test].mean())        # the 32 test nodes
    assert res_test["confusion_matrix"].sum() == 32 and res_train["confusion_matrix"].sum() == 2
    assert res_test["accuracy"] >= 0.85
    assert f"accuracy   {res_test['accuracy']:.4f}" in out


def test_train_mask_must_name_an_input(tmp_path, capsys):
    text = (ROOT / "specs" / "gcn.yaml").read_text() + "  mask: {test: test_msk}\n"
    (tmp_path / "g.yaml").write_text(text)
    assert main(["check", str(tmp_path / "g.yaml")]) == 1
    err = capsys.readouterr().err
    assert "mask: 'test_msk' (the test mask) is not an input" in err and "train_mask" in err
    (tmp_path / "h.yaml").write_text((ROOT / "specs" / "gcn.yaml").read_text() + "  metrics: [mse]\n")
    assert main(["check", str(tmp_path / "h.yaml")]) == 1
    assert "rmse" in capsys.readouterr().err


def test_regression_metrics_in_a_training_run():
    text = (ROOT / "specs" / "deep_sets.yaml").read_text().replace("  epochs: 20\n", "  epochs: 2\n")
    text += "  metrics: [mae, rmse, r2]\n  early_stopping: {monitor: val.r2, patience: 3}\n"
    g = compiler.compile_text(text)
    model = Model(g, seed=0)
    hist = fit(model, "builtin:digit_sum?n=300", "builtin:digit_sum/test?n_test=100", log=None)
    last = hist[-1]
    for k in ("train.mae", "val.mae", "val.rmse", "val.r2"):
        assert k in last and np.isfinite(last[k])
    assert "val.accuracy" not in last and last["val.rmse"] >= last["val.mae"]


def test_metric_shape_problems_are_reported_before_training(tmp_path, capsys):
    text = (ROOT / "specs" / "lstm_classifier.yaml").read_text().replace("metrics: [accuracy, f1]", "metrics: [rmse]")
    (tmp_path / "a.yaml").write_text(text)
    assert main(["train", str(tmp_path / "a.yaml"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "train.metrics rmse compare predict 'fc' [N, 2] with target 'label' [N]" in err
    text = (ROOT / "specs" / "gcn.yaml").read_text().replace('  train_mask: ["${nodes}"]\n',
                                                           '  train_mask: ["${nodes}"]\n  m: [1, 1]\n')
    text += "  predict: conv2\n  target: label\n  mask: {test: m}\n  data: {train: builtin:karate}\n"
    (tmp_path / "b.yaml").write_text(text)
    assert main(["train", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "r2"), "--set", "nodes=34",
                 "--set", "features=34", "--set", "classes=2"]) == 1
    assert "train.mask: input 'm' has shape [1, 1], but the target 'label' has [34]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()
