"""`specc generate`: greedy, beam and sampled decoding of a small seq2seq model trained here (reverse three
tokens), checked against brute-force enumeration and against re-running the whole prefix."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from compiler import compile_text
from cli.main import main
from compiler.errors import SpecError, UserError
from runtime import Model, fit, save
from runtime.use.generate import decode

SPEC = """\
name: tiny_seq2seq
params: {vocab: 6, hidden: 16}
inputs:
  src: {shape: [N, S], dtype: int64}
  tgt_in: {shape: [N, T], dtype: int64}
  tgt_out: {shape: [N, T], dtype: int64}
layers:
  - {op: embedding, name: enc_emb, in: src, num_embeddings: "${vocab}", embedding_dim: 8}
  - {op: lstm, name: enc, hidden_size: "${hidden}"}
  - {op: embedding, name: dec_emb, in: tgt_in, num_embeddings: "${vocab}", embedding_dim: 8}
  - {op: lstm, name: dec, in: [dec_emb, "enc:h", "enc:c"], hidden_size: "${hidden}"}
  - {op: linear, name: proj, out_features: "${vocab}"}
  - {op: permute, name: nct, dims: [0, 2, 1]}
  - {op: cross_entropy, name: loss, in: [nct, tgt_out]}
outputs: {logits: proj}
train: {objective: loss, optimizer: {type: adam, lr: 0.02}, batch_size: 32, epochs: EPOCHS}
generate:
  feed: tgt_in
  logits: proj
  bos: 1
  eos: 2
  max_len: 4
  encoder: [src]
STATE"""
STATE = '  state: {"enc:h": "dec:h", "enc:c": "dec:c"}\n'


def reverse_task(n: int, seed: int) -> dict[str, np.ndarray]:
    src = np.random.default_rng(seed).integers(3, 6, size=(n, 3))
    tgt = src[:, ::-1]
    return {"src": src, "tgt_in": np.concatenate([np.ones((n, 1), int), tgt], 1),
            "tgt_out": np.concatenate([tgt, np.full((n, 1), 2)], 1)}


def trained(epochs: int, state: bool = True) -> Model:
    g = compile_text(SPEC.replace("EPOCHS", str(epochs)).replace("STATE", STATE if state else ""))
    m = Model(g, seed=0)
    fit(m, reverse_task(300, 0), log=None, progress=False)
    return m.eval()


@pytest.fixture(scope="module")
def model() -> Model:
    return trained(30)


def brute_force(m: Model, src: np.ndarray, vocab: int = 6, bos: int = 1, eos: int = 2, max_len: int = 4):
    """The best-scoring sequence of every complete sequence (ends in eos, or reaches max_len), each scored
    with one teacher-forced pass over the whole sequence (no decoding loop involved)."""
    best = (None, -np.inf)
    for length in range(1, max_len + 1):
        seqs = [s for s in itertools.product(range(vocab), repeat=length)
                if eos not in s[:-1] and (s[-1] == eos or length == max_len)]
        arr = np.array(seqs, dtype=np.int64)
        feed = np.concatenate([np.full((len(arr), 1), bos), arr[:, :-1]], axis=1)
        z = m(outputs=["logits"], src=np.repeat(src, len(arr), 0), tgt_in=feed)["logits"].astype(np.float64)
        logp = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
        scores = np.take_along_axis(logp, arr[:, :, None], 2)[:, :, 0].sum(1)
        i = int(np.argmax(scores))
        if scores[i] > best[1]:
            best = (list(seqs[i]), float(scores[i]))
    return best


def test_greedy_reverses_after_training(model):
    data = reverse_task(60, 1)
    res = decode(model, {"src": data["src"]})
    exact = np.mean([t == list(row) for t, row in zip(res.tokens, data["tgt_out"])])
    assert exact >= 0.9


def test_beam_width_one_is_greedy_and_wide_beam_is_exact():
    m = trained(2)                            # barely trained: greedy and the best sequence can differ
    src = reverse_task(6, 2)["src"]
    greedy = decode(m, {"src": src})
    beam1 = decode(m, {"src": src}, "beam", beam=1)
    assert beam1.tokens == greedy.tokens and np.allclose(beam1.scores, greedy.scores)
    wide = decode(m, {"src": src}, "beam", beam=6 ** 4)
    for i in range(len(src)):
        seq, score = brute_force(m, src[i:i + 1])
        assert wide.tokens[i] == seq and wide.scores[i] == pytest.approx(score, abs=1e-4)
        assert wide.scores[i] >= greedy.scores[i] - 1e-6


def test_state_is_carried_instead_of_rerunning_the_prefix(model):
    src = reverse_task(20, 3)["src"]
    plain = Model(compile_text(SPEC.replace("EPOCHS", "1").replace("STATE", "")))
    plain.load_state_dict(model.state_dict())
    plain.eval()
    from runtime.use.generate import Decoder
    feeds = []
    orig = Decoder.step

    def spy(self, tokens, *a):
        feeds.append(tokens.shape[1] if not self.state or a[-1] else 1)
        return orig(self, tokens, *a)

    Decoder.step = spy
    try:
        carried = decode(model, {"src": src}, "beam", beam=3)
    finally:
        Decoder.step = orig
    rerun = decode(plain, {"src": src}, "beam", beam=3)
    assert carried.tokens == rerun.tokens and np.allclose(carried.scores, rerun.scores, atol=1e-4)
    assert max(feeds) == 1                    # each step fed one token


def test_sampling_is_seeded_and_temperature_sharpens(model):
    src = reverse_task(30, 4)["src"]
    a = decode(model, {"src": src}, "sample", seed=5, temperature=2.0)
    b = decode(model, {"src": src}, "sample", seed=5, temperature=2.0)
    assert a.tokens == b.tokens
    cold = decode(model, {"src": src}, "sample", seed=5, temperature=0.05)
    assert cold.tokens == decode(model, {"src": src}).tokens          # T -> 0 is greedy
    top1 = decode(model, {"src": src}, "sample", seed=9, top_k=1, temperature=3.0)
    assert top1.tokens == decode(model, {"src": src}).tokens


def test_cli_generate(model, tmp_path, capsys):
    spec = tmp_path / "s2s.yaml"
    spec.write_text(SPEC.replace("EPOCHS", "1").replace("STATE", STATE))
    save(model, tmp_path / "w.npz")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<pad>\n<bos>\n<eos>\na\nb\nc\n")
    out = tmp_path / "gen.npz"
    assert main(["generate", str(spec), "--weights", str(tmp_path / "w.npz"), "--input", "src=3,4,5",
                 "--strategy", "beam", "--beam", "2", "--vocab", str(vocab), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0: c b a <eos>" in printed
    with np.load(out) as z:
        assert z["tokens"].tolist() == [[5, 4, 3, 2]] and z["lengths"].tolist() == [4]
    # usage errors: exit 2, a message, no traceback
    assert main(["generate", str(spec), "--weights", str(tmp_path / "w.npz"), "--input", "bogus=1,2"]) == 2
    assert "unknown input 'bogus'" in capsys.readouterr().err
    assert main(["generate", str(spec), "--weights", str(tmp_path / "w.npz"), "--temperature", "0.5",
                 "--input", "src=3,4"]) == 2


def test_spec_without_generate_section(model, tmp_path):
    g = compile_text(SPEC.replace("EPOCHS", "1").split("generate:")[0])
    with pytest.raises(UserError, match="no generate: section"):
        decode(Model(g).eval(), {"src": np.array([[3, 4]])})


@pytest.mark.parametrize("section, message", [
    ("{feed: tgt_out, logits: proj, bos: 1}", "does not depend on the feed input .tgt_out."),
    ("{feed: tgt_in, logits: enc_emb, bos: 1}", "does not depend on the feed input"),
    ("{feed: tgt_in, logits: proj, bos: 7}", "bos 7 is not a token id"),
    ("{feed: tgt_in, logits: proj, bos: 1, encoder: []}", "also read input 'src'"),
    ('{feed: tgt_in, logits: proj, bos: 1, state: {"dec:h": "enc:h"}}', "depends on the feed input"),
    ("{feed: tgt_in, logits: proj, bos: 1, beams: 3}", "beams"),
])
def test_generate_section_errors_have_positions(section, message):
    text = SPEC.replace("EPOCHS", "1").split("generate:")[0] + "generate: " + section + "\n"
    with pytest.raises(SpecError) as e:
        compile_text(text)
    import re
    assert re.search(message, e.value.render())
    assert e.value.diagnostics[0].loc is not None and e.value.diagnostics[0].loc.line == text.count("\n")


LM = """\
name: tiny_lm
inputs:
  tokens: {shape: [N, T], dtype: int64}
  next: {shape: [N, T], dtype: int64}
layers:
  - {op: embedding, name: emb, in: tokens, num_embeddings: 6, embedding_dim: 16}
  - {op: positional_encoding, name: pos}
  - {op: multi_head_attention, name: attn, num_heads: 2, causal: true}
  - {op: add, name: res, in: [pos, attn]}
  - {op: linear, name: head, out_features: 6}
  - {op: permute, name: nct, dims: [0, 2, 1]}
  - {op: cross_entropy, name: loss, in: [nct, next]}
train: {objective: loss, optimizer: {type: adam, lr: 0.02}, batch_size: 32, epochs: 15}
generate: {feed: tokens, logits: head, bos: 1, max_len: 5}
"""


def test_decoder_only_continues_a_prompt_by_rerunning_the_prefix():
    """A causal transformer (no state to carry: each step re-runs the prefix) learns the cycle 3 4 5."""
    rng = np.random.default_rng(0)
    phase = rng.integers(0, 3, 200)
    seq = 3 + (phase[:, None] + np.arange(7)[None]) % 3
    seq = np.concatenate([np.ones((200, 1), int), seq], 1)
    m = Model(compile_text(LM))
    fit(m, {"tokens": seq[:, :-1], "next": seq[:, 1:]}, log=None, progress=False)
    m.eval()
    res = decode(m, {"tokens": np.array([[1, 4], [1, 5]])})
    assert res.tokens == [[5, 3, 4, 5, 3], [3, 4, 5, 3, 4]]


def test_shipped_seq2seq_spec_carries_two_layer_state():
    """specs/seq2seq.yaml (2-layer LSTMs: h and c are [2, N, H], batch on axis 1): carrying the state gives
    what re-running the prefix gives, for greedy and beam search."""
    from pathlib import Path
    small = {"src_vocab": 9, "tgt_vocab": 9, "embed": 6, "hidden": 5}
    path = Path(__file__).parent.parent / "specs" / "seq2seq.yaml"
    from compiler import compile_file
    carried = Model(compile_file(path, params=small), seed=3).eval()
    text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.strip().startswith("state:"))
    rerun = Model(compile_text(text, params=small), seed=3).eval()
    src = np.random.default_rng(0).integers(3, 9, (4, 5))
    for kw in ({}, {"strategy": "beam", "beam": 3}):
        a = decode(carried, {"src": src}, max_len=6, **kw)
        b = decode(rerun, {"src": src}, max_len=6, **kw)
        assert a.tokens == b.tokens and np.allclose(a.scores, b.scores, atol=1e-4)


def test_generate_section_is_made_canonical():
    text = SPEC.replace("EPOCHS", "1").replace("STATE", STATE).replace("  logits: proj", "  logits: logits")
    g = compile_text(text)                   # `logits` names the public output; stored as its node
    assert g.generate.logits == "proj" and g.generate.state == {"enc:h": "dec:h", "enc:c": "dec:c"}
    assert g.generate.encoder == ["src"]
    g = compile_text(text.replace("  encoder: [src]\n", ""))
    assert g.generate.encoder == ["src"]     # the default: every input the logits read besides feed


def test_bad_inputs_are_refused_clearly(model, tmp_path, capsys):
    spec = tmp_path / "s2s.yaml"
    spec.write_text(SPEC.replace("EPOCHS", "1").replace("STATE", STATE))
    save(model, tmp_path / "w.npz")
    np.save(tmp_path / "f.npy", np.full((1, 3), 3.5))
    np.save(tmp_path / "r3.npy", np.full((1, 3, 1), 3))
    for bad, message in (("f.npy", "must hold integers"), ("r3.npy", "must have shape N×S")):
        assert main(["generate", str(spec), "--weights", str(tmp_path / "w.npz"),
                     "--input", f"src={tmp_path / bad}"]) == 1
        assert message in capsys.readouterr().err
    assert main(["generate", str(spec), "--weights", str(tmp_path / "w.npz"), "--input", "src=3,4,99"]) == 1
    assert "node 'enc_emb'" in capsys.readouterr().err                  # a token id beyond the vocabulary
    assert main(["generate", str(spec), "--weights", str(tmp_path / "w.npz")]) == 2
    assert "missing input 'src'" in capsys.readouterr().err
