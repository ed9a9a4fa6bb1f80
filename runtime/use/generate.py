"""`specc generate`: autoregressive decoding (greedy, beam search, sampling) as the spec's `generate:` says.

    specc generate SPEC --weights CKPT --input src=1,5,7 [--strategy greedy|beam|sample] [--beam K]
                   [--temperature T] [--top-k K] [--max-len L] [--seed S] [--vocab FILE] [-o OUT.npz]

The inputs in `generate.encoder` come from `--input`; everything that does not depend on the feed input is
computed once (the encoder). Each step then runs only the nodes that depend on the feed input: with a
`state:` mapping the feed holds just the newest token and the decoder's state is carried from step to step
(e.g. an LSTM's h and c); without one the whole prefix is re-run each step (transformer decoders). The
feed input may be given too, as a prompt: decoding continues it (it should start with bos).

Scores are sums of log-probabilities (a finished sequence includes its eos). Beam search keeps the K best
prefixes; it stops when the best finished sequence outscores every live prefix (a longer prefix can only
score lower), so with K at least the number of possible prefixes it finds the best sequence exactly;
with K = 1 it is greedy search.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.errors import UserError

from ..model import Model
from .common import check_inputs, log_softmax, softmax
from .runner import Key, Runner, batch_axis


@dataclass
class Result:
    tokens: list[list[int]]          # generated tokens per example (eos included when reached; no bos)
    scores: list[float]              # sum of log-probabilities


class Decoder:
    """One model's decoding loop: the encoder's values computed once, then one step per token."""

    def __init__(self, model: Model, inputs: dict[str, np.ndarray]):
        g = model.graph
        if g.generate is None:
            raise UserError(f"'{g.name}' has no generate: section, so specc does not know how to decode it",
                            hint="add generate: {feed: INPUT, logits: NODE, bos: ID, eos: ID} (docs/use.md)")
        self.gen = gen = g.generate
        self.runner = r = Runner(model)
        self.feed: Key = (gen.feed, None)
        self.logits = r.key(gen.logits)
        self.state = {r.key(k): r.key(v) for k, v in gen.state.items()}
        self.symbol = g.inputs[gen.feed].shape[0]
        check_inputs(model, inputs, [*gen.encoder, gen.feed])
        missing = [k for k in gen.encoder if k not in inputs]
        if missing:
            t = g.inputs[missing[0]]
            raise UserError(f"missing input '{missing[0]}' (shape {t}, {t.dtype})",
                            hint=f"pass --input {missing[0]}=FILE.npy (or {missing[0]}=1,5,7 for one sequence)",
                            code=2)
        self.inputs = {k: inputs[k] for k in gen.encoder}
        self.prompt = inputs.get(gen.feed)
        self.static_keys = self._static_keys()

    def _static_keys(self) -> list[Key]:
        """The values the per-step nodes read that do not depend on the feed input (computed once)."""
        r = self.runner
        wanted = [self.logits, *self.state.values()]
        dyn: set[str] = {self.feed[0]}
        for n in r.graph.nodes:
            if any(x is not None and x.node in dyn for x in n.inputs):
                dyn.add(n.name)
        stop = frozenset(self.state)
        need = set().union(*(r.upstream(k, stop) for k in wanted))
        keys: list[Key] = list(self.state)
        for n in r.graph.nodes:
            if n.name in dyn and n.name in need:
                for x in n.inputs:
                    if x is not None and x.node not in dyn:
                        k = r.norm(x.node, x.port)
                        if k not in keys:
                            keys.append(k)
        return keys

    def batch_size(self) -> int:
        for k, v in self.inputs.items():
            ax = batch_axis(self.runner.graph.inputs[k], self.symbol)
            if ax is not None:
                return v.shape[ax]
        return 1 if self.prompt is None else len(self.prompt)

    def start(self, n: int) -> np.ndarray:
        if self.prompt is None:
            return np.full((n, 1), self.gen.bos, dtype=np.int64)
        p = np.asarray(self.prompt, dtype=np.int64)
        if p.ndim == 1:
            p = p[None]
        if len(p) == 1 and n > 1:
            p = np.repeat(p, n, axis=0)
        if len(p) != n:
            raise UserError(f"the prompt '{self.gen.feed}' has {len(p)} rows but the other inputs {n}", code=2)
        return p

    def encode(self, rows: slice) -> dict[Key, np.ndarray]:
        """The static values for the examples in `rows` (each batch axis cut to them)."""
        ins = {}
        for k, v in self.inputs.items():
            ax = batch_axis(self.runner.graph.inputs[k], self.symbol)
            ins[k] = v if ax is None else np.take(v, np.arange(v.shape[ax])[rows], axis=ax)
        return self.runner.run(self.static_keys, ins)

    def take(self, values: dict[Key, np.ndarray], idx: np.ndarray) -> dict[Key, np.ndarray]:
        """Rows `idx` of every value along its batch axis (beams: repeat, reorder)."""
        out = {}
        for k, v in values.items():
            ax = batch_axis(self.runner.type_of(k), self.symbol)
            out[k] = v if ax is None else np.take(v, idx, axis=ax)
        return out

    def step(self, tokens: np.ndarray, static: dict[Key, np.ndarray], state: dict[Key, np.ndarray] | None,
             first: bool) -> tuple[np.ndarray, dict[Key, np.ndarray]]:
        """Log-probabilities of the next token [B, V] and the next state."""
        feed = tokens if (first or not self.state) else tokens[:, -1:]
        fixed = dict(static)
        if self.state and state is not None:
            fixed.update(state)
        out = self.runner.run([self.logits, *self.state.values()], {self.feed[0]: feed}, fixed)
        z = out[self.logits]
        z = z[:, -1, :] if z.ndim == 3 else z
        nxt = {k: out[v] for k, v in self.state.items()}
        return z.astype(np.float64), nxt


def greedy_or_sample(dec: Decoder, max_len: int, strategy: str = "greedy", temperature: float = 1.0,
                     top_k: int | None = None, seed: int = 0) -> Result:
    """All examples at once; each stops at its eos (later tokens are dropped)."""
    n = dec.batch_size()
    tokens = dec.start(n)
    static = dec.encode(slice(None))
    state = {k: static[k] for k in dec.state}
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(n)]
    scores = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    for t in range(max_len):
        z, state = dec.step(tokens, static, state, t == 0)
        logp = log_softmax(z)
        if strategy == "sample":
            zz = z / temperature
            if top_k is not None and top_k < zz.shape[1]:
                kth = np.sort(zz, axis=1)[:, -top_k][:, None]
                zz = np.where(zz >= kth, zz, -np.inf)
            p = softmax(zz)
            nxt = np.array([rng.choice(len(row), p=row) for row in p])
        else:
            nxt = np.argmax(logp, axis=1)
        for i in np.flatnonzero(~done):
            out[i].append(int(nxt[i]))
            scores[i] += logp[i, nxt[i]]
        if dec.gen.eos is not None:
            done |= nxt == dec.gen.eos
        if done.all():
            break
        tokens = np.concatenate([tokens, nxt[:, None].astype(np.int64)], axis=1)
    return Result(out, scores.tolist())


def beam_search(dec: Decoder, max_len: int, beam: int) -> Result:
    """Beam search, one example at a time (its beams are the batch)."""
    n = dec.batch_size()
    starts = dec.start(n)
    res = Result([], [])
    for i in range(n):
        seq, score = _beam_one(dec, dec.encode(slice(i, i + 1)), starts[i:i + 1], max_len, beam)
        res.tokens.append(seq)
        res.scores.append(score)
    return res


def _beam_one(dec: Decoder, static1: dict[Key, np.ndarray], start: np.ndarray, max_len: int,
              beam: int) -> tuple[list[int], float]:
    eos = dec.gen.eos
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    state = {k: static1[k] for k in dec.state}
    for t in range(max_len):
        b = len(live)
        static = dec.take(static1, np.zeros(b, dtype=np.int64))
        tokens = np.concatenate([np.repeat(start, b, axis=0),
                                 np.array([s for s, _ in live], dtype=np.int64).reshape(b, t)], axis=1)
        z, state = dec.step(tokens, static, state, t == 0)
        cand = np.array([sc for _, sc in live])[:, None] + log_softmax(z)
        order = np.argsort(-cand, axis=None, kind="stable")[:beam]
        rows, new = [], []
        for idx in order:
            row, tok = divmod(int(idx), cand.shape[1])
            item = (live[row][0] + [tok], float(cand[row, tok]))
            if eos is not None and tok == eos:
                finished.append(item)
            else:
                rows.append(row)
                new.append(item)
        if not new:
            break
        live = new
        state = dec.take(state, np.array(rows, dtype=np.int64))
        if finished and max(s for _, s in finished) >= max(s for _, s in live):
            break                                    # log-probabilities are <= 0: no live prefix can win
    else:
        finished.extend(live)                        # max_len reached: the unfinished beams compete too
    return max(finished, key=lambda x: x[1])


def decode(model: Model, inputs: dict[str, np.ndarray], strategy: str = "greedy", beam: int = 4,
           temperature: float = 1.0, top_k: int | None = None, max_len: int | None = None, seed: int = 0) -> Result:
    """What `specc generate` computes, as a function."""
    dec = Decoder(model, inputs)
    length = max_len or dec.gen.max_len
    if strategy == "beam":
        return beam_search(dec, length, beam)
    return greedy_or_sample(dec, length, strategy, temperature, top_k, seed)


def as_array(res: Result, pad: int) -> np.ndarray:
    width = max((len(t) for t in res.tokens), default=0)
    arr = np.full((len(res.tokens), width), pad, dtype=np.int64)
    for i, t in enumerate(res.tokens):
        arr[i, :len(t)] = t
    return arr


def read_vocab(path: str) -> list[str]:
    """One word per line; line i (from 0) is token id i."""
    from pathlib import Path
    p = Path(path)
    if not p.is_file():
        raise UserError(f"vocabulary file '{path}' not found", hint="one word per line: line i is token id i")
    try:
        return p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read vocabulary file '{path}': {e}") from None
