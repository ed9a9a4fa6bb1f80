"""`specc neighbors`, `specc attention`, `specc boundary`, on weights set by hand (exact answers) and on a
small classifier trained here."""
from __future__ import annotations

import numpy as np
import pytest

from compiler import compile_text
from cli.main import main
from runtime import Model, fit, save

EMB = """\
name: words
inputs:
  center: {shape: [N], dtype: int64}
layers:
  - {op: embedding, name: embeddings, in: center, num_embeddings: 6, embedding_dim: 4}
"""
WORDS = ["king", "queen", "man", "woman", "apple", "prince"]
TABLE = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0.9, 1, 0, 0.2]],
                 dtype=np.float32)       # royal, male, female, fruit


@pytest.fixture
def words(tmp_path):
    m = Model(compile_text(EMB))
    m.load_state_dict({"embeddings.weight": TABLE})
    (tmp_path / "w.yaml").write_text(EMB)
    save(m, tmp_path / "w.npz")
    (tmp_path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    return ["neighbors", str(tmp_path / "w.yaml"), "--weights", str(tmp_path / "w.npz"),
            "--vocab", str(tmp_path / "vocab.txt")]


def table_rows(out: str) -> list[list[str]]:
    return [ln.split() for ln in out.splitlines()[2:]]


def test_neighbours_by_cosine_and_euclidean(words, capsys):
    assert main(words + ["--word", "king", "--k", "5"]) == 0
    rows = table_rows(capsys.readouterr().out)
    cos = TABLE @ TABLE[0] / (np.linalg.norm(TABLE, axis=1) * np.linalg.norm(TABLE[0]))
    want = [i for i in np.argsort(-cos, kind="stable") if i != 0]
    assert [r[3] for r in rows] == [WORDS[i] for i in want]
    assert [float(r[2]) for r in rows] == pytest.approx(cos[want], abs=1e-4)
    assert main(words + ["--index", "4", "--metric", "euclidean", "--k", "2"]) == 0
    rows = table_rows(capsys.readouterr().out)
    dist = np.linalg.norm(TABLE - TABLE[4], axis=1)
    want = [i for i in np.argsort(dist, kind="stable") if i != 4][:2]
    assert [int(r[1]) for r in rows] == want and [float(r[2]) for r in rows] == pytest.approx(dist[want], abs=1e-4)


def test_analogy(words, capsys):
    assert main(words + ["--analogy", "king,man,woman", "--k", "1"]) == 0     # king - man + woman
    out = capsys.readouterr().out
    assert "king - man + woman" in out and table_rows(out)[0][3] == "queen"
    assert table_rows(out)[0][2] == "1.0000"


def test_neighbours_errors(words, capsys):
    assert main(words + ["--word", "kingg"]) == 2
    assert "did you mean 'king'" in capsys.readouterr().err
    assert main(words + ["--word", "king", "--index", "1"]) == 2
    assert main(words + ["--index", "6"]) == 2
    assert main(words + ["--analogy", "king,man"]) == 2
    assert main(words + ["--table", "nope", "--index", "1"]) == 2


ATT = """\
name: tiny_encoder
inputs:
  tokens: {shape: [N, T], dtype: int64}
blocks:
  layer:
    params: {causal: false}
    layers:
      - {op: multi_head_attention, name: self_attn, num_heads: 2, causal: "${causal}"}
      - {op: add, name: res, in: [x, self_attn]}
layers:
  - {op: embedding, name: emb, in: tokens, num_embeddings: 10, embedding_dim: 4}
  - {use: layer, name: encoder}
  - {use: layer, name: decoder, causal: true}
"""


def test_attention_weights_heat_map(tmp_path, capsys):
    m = Model(compile_text(ATT), seed=0)
    sd = m.state_dict()
    sd["encoder.self_attn.in_proj_weight"] = np.zeros_like(sd["encoder.self_attn.in_proj_weight"])
    sd["decoder.self_attn.in_proj_weight"] = np.zeros_like(sd["decoder.self_attn.in_proj_weight"])
    m.load_state_dict(sd)                    # queries and keys all zero: every score equal
    (tmp_path / "a.yaml").write_text(ATT)
    save(m, tmp_path / "a.npz")
    base = ["attention", str(tmp_path / "a.yaml"), "--weights", str(tmp_path / "a.npz"), "--input", "tokens=1,2,3,4,5"]
    assert main(base + ["--node", "encoder", "-o", str(tmp_path / "enc.png")]) == 0
    w = np.load(tmp_path / "enc.npy")
    assert w.shape == (1, 5, 5) and np.allclose(w, 0.2)
    assert main(base + ["--node", "decoder.self_attn", "-o", str(tmp_path / "dec.png")]) == 0
    w = np.load(tmp_path / "dec.npy")[0]            # causal: query q reads keys 0..q equally
    assert np.allclose(w, np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None])
    assert "encoder.self_attn: weights [1, 5, 5]" in capsys.readouterr().out
    assert main(base + ["--node", "emb", "-o", str(tmp_path / "x.png")]) == 2


BOUNDARY = """\
name: points
inputs:
  x: [N, 2]
  label: {shape: [N], dtype: int64}
layers:
  - {op: linear, name: hidden, in: x, out_features: 8}
  - {op: tanh, name: act}
  - {op: linear, name: logits, out_features: 2}
  - {op: cross_entropy, name: loss, in: [logits, label]}
outputs: {logits: logits}
train: {objective: loss, optimizer: {type: adam, lr: 0.05}, batch_size: 32, epochs: 20, predict: logits, target: label}
"""


def blobs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    x = (np.array([[-1.5, 0.5], [1.5, -0.5]])[label] + 0.5 * rng.standard_normal((n, 2))).astype(np.float32)
    return {"x": x, "label": label.astype(np.int64)}


def test_boundary_regions(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(BOUNDARY)
    m = Model(compile_text(BOUNDARY))
    fit(m, blobs(200, 0), log=None, progress=False)
    save(m, tmp_path / "trained.npz")
    np.savez(tmp_path / "test.npz", **blobs(100, 1))
    assert main(["boundary", str(tmp_path / "p.yaml"), "--weights", str(tmp_path / "trained.npz"), "--data",
                 str(tmp_path / "test.npz"), "--resolution", "50", "-o", str(tmp_path / "b.png")]) == 0
    acc = float(capsys.readouterr().out.split("points): ")[1].split()[0])
    assert acc >= 0.95
    # weights by hand: class 1 exactly where x0 > 0
    hand = Model(compile_text(BOUNDARY)).state_dict()
    hand["hidden.weight"][:] = 0
    hand["hidden.weight"][0, 0] = 1
    hand["hidden.bias"][:] = 0
    hand["logits.weight"][:] = 0
    hand["logits.weight"][1, 0] = 1
    hand["logits.bias"][:] = 0
    m.load_state_dict(hand)
    save(m, tmp_path / "hand.npz")
    assert main(["boundary", str(tmp_path / "p.yaml"), "--weights", str(tmp_path / "hand.npz"), "--data",
                 str(tmp_path / "test.npz"), "--resolution", "41", "-o", str(tmp_path / "h.png")]) == 0
    with np.load(tmp_path / "h.npz") as z:
        assert np.array_equal(z["classes"], (z["xx"] > 0).astype(int))
        assert z["points"].shape == (100, 2)


def test_boundary_needs_2d_points(tmp_path):
    spec = BOUNDARY.replace("x: [N, 2]", "x: [N, 3]")
    (tmp_path / "p.yaml").write_text(spec)
    save(Model(compile_text(spec)), tmp_path / "w.npz")
    assert main(["boundary", str(tmp_path / "p.yaml"), "--weights", str(tmp_path / "w.npz"), "--data", "x.npz",
                 "-o", str(tmp_path / "b.png")]) == 2
