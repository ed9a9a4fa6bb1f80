"""`specc saliency` and `specc attack`: exact results on a linear classifier with weights set by hand, and
FGSM against PGD on a small digits classifier trained here."""
from __future__ import annotations

import numpy as np
import pytest

from compiler import compile_text
from cli.main import main
from runtime import Model, fit, save
from runtime.use.attack import run_attack

LINEAR = """\
name: linear_classifier
inputs:
  image: [N, 2, 3, 3]
  label: {shape: [N], dtype: int64}
layers:
  - {op: flatten, name: flat, in: image}
  - {op: linear, name: logits, out_features: 4}
  - {op: cross_entropy, name: loss, in: [logits, label]}
outputs: {logits: logits}
train: {objective: loss, predict: logits, target: label}
"""

DIGITS = """\
name: digits_mlp_small
inputs:
  image: [N, 1, 8, 8]
  label: {shape: [N], dtype: int64}
layers:
  - {op: flatten, name: flat, in: image}
  - {op: linear, name: fc1, out_features: 32}
  - {op: tanh, name: act}
  - {op: linear, name: logits, out_features: 10}
  - {op: cross_entropy, name: loss, in: [logits, label]}
outputs: {logits: logits}
train:
  objective: loss
  optimizer: {type: adam, lr: 0.01}
  batch_size: 64
  epochs: 8
  predict: logits
  target: label
  data: {train: builtin:digits, test: builtin:digits}
"""


@pytest.fixture
def linear(tmp_path):
    m = Model(compile_text(LINEAR), seed=0)
    w = np.random.default_rng(1).normal(size=(4, 18)).astype(np.float32)
    m.load_state_dict({"logits.weight": w, "logits.bias": np.zeros(4, np.float32)})
    (tmp_path / "lin.yaml").write_text(LINEAR)
    save(m, tmp_path / "lin.npz")
    return tmp_path, m.eval(), w


def test_saliency_of_a_linear_model_is_its_weight_row(linear, capsys):
    d, m, w = linear
    x = np.random.default_rng(2).random((3, 2, 3, 3)).astype(np.float32)
    np.save(d / "x.npy", x)
    assert main(["saliency", str(d / "lin.yaml"), "--weights", str(d / "lin.npz"), "--input",
                 f"image={d / 'x.npy'}", "--class", "2", "-o", str(d / "sal.png")]) == 0
    maps = np.load(d / "sal.npy")
    want = np.abs(w[2].reshape(2, 3, 3)).max(axis=0)          # d logit_2 / dx = W[2]; max |.| over channels
    assert maps.shape == (3, 3, 3) and np.allclose(maps, want[None], atol=1e-6)
    # default class: each image's predicted class
    assert main(["saliency", str(d / "lin.yaml"), "--weights", str(d / "lin.npz"), "--input",
                 f"image={d / 'x.npy'}", "-o", str(d / "sal2.png")]) == 0
    pred = (x.reshape(3, -1) @ w.T).argmax(1)
    assert np.allclose(np.load(d / "sal2.npy"), np.abs(w[pred].reshape(3, 2, 3, 3)).max(axis=1), atol=1e-6)
    assert "class" in capsys.readouterr().out
    assert main(["saliency", str(d / "lin.yaml"), "--weights", str(d / "lin.npz"), "--input",
                 f"image={d / 'x.npy'}", "--class", "9", "-o", str(d / "sal3.png")]) == 2


def test_fgsm_on_a_linear_model_is_exact(linear):
    _, m, w = linear
    rng = np.random.default_rng(3)
    x = rng.random((20, 2, 3, 3)).astype(np.float32)
    y = rng.integers(0, 4, 20)
    res = run_attack(m, {"image": x, "label": y}, "image", "label", "logits", "fgsm", [0.1], clip=(0.0, 1.0))
    z = x.reshape(20, -1) @ w.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(4)[y]) @ w                                # d cross_entropy / dx, by hand
    want = np.clip(x + 0.1 * np.sign(grad).reshape(x.shape), 0, 1)
    assert np.allclose(res["adversarial"][0], want, atol=1e-6)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    (d / "digits.yaml").write_text(DIGITS)
    m = Model(compile_text(DIGITS))
    fit(m, "builtin:digits", log=None, progress=False)
    save(m, d / "w.npz")
    return d, m.eval()


def test_pgd_at_least_as_strong_as_fgsm(digits):
    _, m = digits
    from runtime.data import digits as load_digits
    data = {k: v[:200] for k, v in load_digits("test").items()}
    eps = [0.05, 0.1, 0.2]
    fgsm = run_attack(m, data, "image", "label", "logits", "fgsm", eps)
    pgd = run_attack(m, data, "image", "label", "logits", "pgd", eps, steps=10)
    assert fgsm["clean_accuracy"] > 0.85
    assert np.all(pgd["accuracy"] <= fgsm["accuracy"]) and np.all(pgd["success"] >= fgsm["success"])
    assert pgd["accuracy"][-1] < 0.3 and np.all(np.diff(fgsm["accuracy"]) <= 0)
    for adv in pgd["adversarial"], fgsm["adversarial"]:            # inside the ball and the data range
        assert np.all(np.abs(adv - data["image"][None]) <= np.array(eps)[:, None, None, None, None] + 1e-6)
        assert adv.min() >= 0 and adv.max() <= 1
    targeted = run_attack(m, data, "image", "label", "logits", "pgd", [0.05, 0.2], target=3)
    assert targeted["success"][1] > targeted["success"][0] and targeted["success"][1] > 0.5


def test_cli_attack_prints_the_table(digits, capsys):
    d, _ = digits
    assert main(["attack", str(d / "digits.yaml"), "--weights", str(d / "w.npz"), "--method", "fgsm",
                 "--eps", "0.1,0.2", "--limit", "50", "-o", str(d / "attack.png")]) == 0
    out = capsys.readouterr().out
    assert "FGSM (untargeted) on 50 samples of builtin:digits/test" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith(("0.1", "0.2"))]
    assert [r[0] for r in rows] == ["0.1", "0.2"]
    with np.load(d / "attack.npz") as z:
        assert z["accuracy"].shape == (2,) and z["adversarial"].shape[:2] == (2, 16)
    assert main(["attack", str(d / "digits.yaml"), "--weights", str(d / "w.npz"), "--eps", "0.1,x"]) == 2
    assert main(["attack", str(d / "digits.yaml"), "--weights", str(d / "w.npz"), "--target", "10"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_predict_naming_a_block_instance(tmp_path):
    """train.predict may name a block instance (as specs/vgg16.yaml's `classifier` does)."""
    spec = """\
name: blocky
inputs:
  image: [N, 2, 3, 3]
  label: {shape: [N], dtype: int64}
blocks:
  head:
    layers:
      - flatten
      - {op: linear, name: fc, out_features: 4}
layers:
  - {use: head, name: classifier, in: image}
  - {op: cross_entropy, name: loss, in: [classifier, label]}
outputs: {logits: classifier}
train: {objective: loss, predict: classifier, target: label}
"""
    (tmp_path / "b.yaml").write_text(spec)
    m = Model(compile_text(spec))
    save(m, tmp_path / "b.npz")
    np.save(tmp_path / "x.npy", np.ones((1, 2, 3, 3), np.float32))
    assert main(["saliency", str(tmp_path / "b.yaml"), "--weights", str(tmp_path / "b.npz"), "--input",
                 f"image={tmp_path / 'x.npy'}", "--class", "1", "-o", str(tmp_path / "s.png")]) == 0
    w = m.state_dict()["classifier.fc.weight"]
    assert np.allclose(np.load(tmp_path / "s.npy")[0], np.abs(w[1].reshape(2, 3, 3)).max(0), atol=1e-6)
