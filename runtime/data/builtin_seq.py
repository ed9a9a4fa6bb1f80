"""Built-in sequence tasks: seq2seq (copy, reverse, sort) and sequence classification (sum, parity, memory).

Token ids: 0 = <pad>, 1 = <bos>, 2 = <eos>; the symbols are ids 3..vocab-1 (symbol value v is id v + 3),
so an embedding needs num_embeddings ≥ vocab. Sequences have `length` symbols; with `min_length` below
`length`, each sequence's length is drawn from min_length..length and the rest is <pad> (padding_mask True).

- seq2seq: `src` [L] the symbols; `tgt_in` [L+1] = <bos> y1..yL (the decoder's teacher-forced input);
  `tgt_out` [L+1] = y1..yL <eos> (what to predict); y is src copied, reversed or sorted (ascending).
  Padded target positions are 0: use cross_entropy's ignore_index: 0 when lengths vary.
- classification: `tokens` [L] and `label`: the sum of the symbol values modulo vocab − 3 (sum), the number
  of 1s modulo 2 (parity: symbols 0 and 1), or the value of the first symbol (memory: the answer is at the
  start, the rest is noise, so it tests how long a network remembers).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from compiler.errors import UserError

from .builtin import Array, Builtin, Option, with_all

PAD, BOS, EOS = 0, 1, 2
SPECIALS = 3
PART_SEED = {"train": 0, "test": 1}


def _symbols(o: dict[str, Any], task: str) -> int:
    return 2 if task == "parity" else o["vocab"] - SPECIALS


def _draw(o: dict[str, Any], part: str, task: str, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """(values [n, L] with -1 at padding, lengths [n])."""
    rng = np.random.default_rng([o["seed"], PART_SEED[part], salt])
    n, L = o["n"] if part == "train" else o["n_test"], o["length"]
    lo = o["min_length"] or L
    if lo > L:
        raise UserError(f"option min_length={lo} of builtin:{task} is longer than length={L}",
                        hint="min_length is the shortest sequence: at most length")
    lengths = rng.integers(min(lo, L), L + 1, size=n)
    values = rng.integers(0, _symbols(o, task), size=(n, L))
    values[np.arange(L)[None, :] >= lengths[:, None]] = -1
    return values, lengths


def _ids(values: np.ndarray) -> np.ndarray:
    return np.where(values < 0, PAD, values + SPECIALS).astype(np.int64)


def _seq2seq(task: str, salt: int):
    def make(o: dict[str, Any], part: str) -> dict[str, np.ndarray]:
        values, lengths = _draw(o, part, task, salt)
        n, L = values.shape
        y = values.copy()
        for i, m in enumerate(lengths):              # only the first m positions are symbols
            y[i, :m] = values[i, :m][::-1] if task == "reverse" else np.sort(values[i, :m]) if task == "sort" \
                else values[i, :m]
        tgt_in = np.full((n, L + 1), PAD, dtype=np.int64)
        tgt_out = np.full((n, L + 1), PAD, dtype=np.int64)
        tgt_in[:, 0] = BOS
        tgt_in[:, 1:] = _ids(y)
        tgt_out[:, :L] = _ids(y)
        tgt_out[np.arange(n), lengths] = EOS
        return {"src": _ids(values), "padding_mask": values < 0, "tgt_in": tgt_in, "tgt_out": tgt_out}
    return with_all(make)


def _classify(task: str, salt: int):
    def make(o: dict[str, Any], part: str) -> dict[str, np.ndarray]:
        values, _ = _draw(o, part, task, salt)
        v = np.where(values < 0, 0, values)
        if task == "memory":
            label = values[:, 0]
        else:
            label = v.sum(axis=1) % _symbols(o, task)
        return {"tokens": _ids(values), "padding_mask": values < 0, "label": label.astype(np.int64)}
    return with_all(make)


def _options(task: str) -> tuple[Option, ...]:
    vocab = () if task == "parity" else (
        Option("vocab", 13, "vocabulary size with the 3 special ids (symbols: vocab - 3)", int, 5, 100_000),)
    return (Option("length", 10, "symbols per sequence", int, 1, 1000),
            Option("min_length", 0, "shortest sequence (0: all have `length`; shorter ones are padded)",
                   int, 0, 1000),
            *vocab,
            Option("n", 2000, "training sequences", int, 1, 10_000_000),
            Option("n_test", 500, "test sequences", int, 1, 10_000_000),
            Option("seed", 0, "random seed", int, 0, None))


def _seq2seq_builtin(task: str, salt: int, what: str) -> Builtin:
    return Builtin(
        task, f"seq2seq: {what} a sequence of symbols (<bos>/<eos> targets)", "sequences", _options(task),
        lambda o: [Array("src", "int64", (o["length"],), "source symbols (ids 3..vocab-1, 0 = <pad>)"),
                   Array("padding_mask", "bool", (o["length"],), "True at padded source positions"),
                   Array("tgt_in", "int64", (o["length"] + 1,), "<bos> y1..yL: the decoder input"),
                   Array("tgt_out", "int64", (o["length"] + 1,), "y1..yL <eos>: the tokens to predict")],
        lambda o: {"train": o["n"], "test": o["n_test"]}, _seq2seq(task, salt))


def _classify_builtin(task: str, salt: int, what: str) -> Builtin:
    def arrays(o: dict[str, Any]) -> list[Array]:
        k = _symbols(o, task)
        return [Array("tokens", "int64", (o["length"],), "symbols (ids 3..; 0 = <pad>)"),
                Array("padding_mask", "bool", (o["length"],), "True at padded positions"),
                Array("label", "int64", (), f"class 0..{k - 1}")]
    return Builtin(task, f"sequence classification: {what}", "sequences", _options(task), arrays,
                   lambda o: {"train": o["n"], "test": o["n_test"]}, _classify(task, salt))


SETS = (
    _seq2seq_builtin("copy", 1, "copy"),
    _seq2seq_builtin("reverse", 2, "reverse"),
    _seq2seq_builtin("sort", 3, "sort (ascending)"),
    _classify_builtin("sum", 4, "the sum of the symbols modulo vocab - 3"),
    _classify_builtin("parity", 5, "the parity of the number of 1s in a 0/1 sequence"),
    _classify_builtin("memory", 6, "the first symbol (remember it to the end)"),
)
