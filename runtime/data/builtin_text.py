"""Built-in text: word2vec training pairs from the corpus the project ships (runtime/data/corpus.txt).

The corpus (written by tools/make_corpus.py: simple sentences from a fixed grammar, about 160 KB) is read
as one stream of words. The vocabulary is id 0 = <pad>, 1 = <unk>, then the words by decreasing count
(ties alphabetical); words seen fewer than `min_count` times become <unk>. The first 90% of the sentences
are the train part, the rest the test part; pairs never cross from one part into the other.

- `skipgram`: one (center, context) pair per word and neighbour within `window` words.
- `cbow`: (context [2·window], center) at every position with `window` words on both sides; the window
  follows the spec's context input ([N, 4] gives window 2) when not given.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from compiler.ir import Graph

from .builtin import Array, Builtin, Option

CORPUS = Path(__file__).resolve().parent / "corpus.txt"
SPECIALS = ("<pad>", "<unk>")
TRAIN_FRACTION = 0.9


@lru_cache(maxsize=1)
def sentences() -> tuple[tuple[str, ...], ...]:
    """The shipped corpus, one tuple of words per sentence."""
    return tuple(tuple(line.split()) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip())


def vocabulary(min_count: int = 1) -> list[str]:
    """The words by id: <pad>, <unk>, then the corpus words seen at least min_count times, most frequent first."""
    counts = Counter(w for s in sentences() for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [*SPECIALS, *words]


def stream(part: str, min_count: int = 1, vocab: int = 0) -> np.ndarray:
    """The word ids of a part ('train', 'test' or 'all'), sentences joined into one stream; with `vocab`,
    only the `vocab` most frequent ids are kept (the rest become <unk>)."""
    words = vocabulary(min_count)
    index = {w: i for i, w in enumerate(words[:vocab] if vocab else words)}
    sents = sentences()
    cut = int(round(TRAIN_FRACTION * len(sents)))
    chosen = sents[:cut] if part == "train" else sents[cut:] if part == "test" else sents
    return np.array([index.get(w, 1) for s in chosen for w in s], dtype=np.int64)


def _parts(part: str) -> list[str]:
    return ["train", "test"] if part == "all" else [part]


def skipgram_pairs(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    centers, contexts = [], []
    for d in range(1, window + 1):
        centers += [ids[:-d], ids[d:]]
        contexts += [ids[d:], ids[:-d]]
    return np.concatenate(centers), np.concatenate(contexts)


def cbow_windows(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(ids) - 2 * window
    offsets = [d for d in range(-window, window + 1) if d != 0]
    context = np.stack([ids[window + d: window + d + n] for d in offsets], axis=1)
    return context, ids[window: window + n]


def _skipgram(o: dict[str, Any], part: str) -> dict[str, np.ndarray]:
    pairs = [skipgram_pairs(stream(p, o["min_count"], o["vocab"]), o["window"]) for p in _parts(part)]
    return {"center": np.concatenate([c for c, _ in pairs]), "context": np.concatenate([x for _, x in pairs])}


def _cbow(o: dict[str, Any], part: str) -> dict[str, np.ndarray]:
    pairs = [cbow_windows(stream(p, o["min_count"], o["vocab"]), o["window"]) for p in _parts(part)]
    return {"context": np.concatenate([c for c, _ in pairs]), "center": np.concatenate([x for _, x in pairs])}


def _vocab_auto(graph: Graph, needed: list[str], given: dict[str, Any]) -> dict[str, Any]:
    """An embedding table smaller than the corpus vocabulary keeps its most frequent words (the rest: <unk>)."""
    sizes = [n.attrs.num_embeddings for n in graph.nodes if n.op == "embedding"]
    full = len(vocabulary(given.get("min_count", 1)))
    if "vocab" in given or not sizes or not isinstance(min(sizes), int) or min(sizes) >= full:
        return {}
    v = max(2, min(sizes))
    return {"vocab": v, "note": f"builtin: the {v - 2} most frequent corpus words (the embedding table has "
                                f"{v} rows; rarer words become <unk>)"}


def _skipgram_auto(graph: Graph, needed: list[str], given: dict[str, Any]) -> dict[str, Any]:
    return _vocab_auto(graph, needed, given)


def _cbow_auto(graph: Graph, needed: list[str], given: dict[str, Any]) -> dict[str, Any]:
    found = _vocab_auto(graph, needed, given)
    note = found.pop("note", None)
    window = _cbow_window(graph, given)
    notes = [n for n in (note, window.pop("note", None)) if n]
    return {**found, **window, **({"note": "; ".join(notes)} if notes else {})}


def _cbow_window(graph: Graph, given: dict[str, Any]) -> dict[str, Any]:
    t = graph.inputs.get("context")
    if "window" in given or t is None or t.rank != 2 or not isinstance(t.shape[1], int) or t.shape[1] % 2:
        return {}
    w = t.shape[1] // 2
    if w != 2 and 1 <= w <= 10:
        return {"window": w, "note": f"builtin:cbow: window {w} (2·{w} context words) to fit input 'context' "
                                     f"[{', '.join(map(str, t.shape))}]"}
    return {}


def _sizes(kind: str):
    def sizes(o: dict[str, Any]) -> dict[str, int]:
        out = {}
        for p in ("train", "test"):
            n = len(stream(p, o["min_count"], o["vocab"]))
            out[p] = 2 * sum(n - d for d in range(1, o["window"] + 1)) if kind == "skipgram" else n - 2 * o["window"]
        return out
    return sizes


def _options(follows: bool) -> tuple[Option, ...]:
    return (Option("window", 2, "words on each side of the centre", int, 1, 10, follows_spec=follows),
            Option("min_count", 1, "rarer words become <unk>", int, 1, 1000),
            Option("vocab", 0, "keep the most frequent ids only (0: all; <pad> and <unk> count)", int, 0, 10**6,
                   follows_spec=True))


def _vocab_note() -> str:
    return f"vocabulary: {len(vocabulary())} ids (<pad>, <unk> and the corpus words); " \
           "runtime.data.builtin_text.vocabulary() lists them"


SETS = (
    Builtin("skipgram", "word2vec skip-gram pairs (center → one context word) from the shipped corpus", "text",
            _options(False),
            lambda o: [Array("center", "int64", (), "the centre word's id"),
                       Array("context", "int64", (), "one word within the window")],
            _sizes("skipgram"), _skipgram, notes=(_vocab_note(),) if CORPUS.exists() else (), auto=_skipgram_auto),
    Builtin("cbow", "word2vec CBOW windows (2·window context words → the centre word) from the shipped corpus",
            "text", _options(True),
            lambda o: [Array("context", "int64", (2 * o["window"],), "the words around the centre"),
                       Array("center", "int64", (), "the centre word's id")],
            _sizes("cbow"), _cbow, auto=_cbow_auto),
)
