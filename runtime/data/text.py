"""Text: a plain-text corpus (.txt, one text per line) or a TSV of text<TAB>label.

Words are lower-cased (unless `lowercase: false`) runs of letters/digits/apostrophes; each punctuation
mark is a token. The vocabulary is built on the training split only: `<pad>` 0, `<unk>` 1, `<bos>` 2,
`<eos>` 3, then the words by frequency (ties alphabetical), at most `vocab_size` entries in all (default:
the num_embeddings of the embedding that reads the tokens), words rarer than `min_count` left out (read as
`<unk>`). It is saved with the checkpoint and reused by eval/run.

Tasks (`task`, default: classify for a .tsv; skipgram/cbow when the spec has inputs `center` and
`context`; else lines):
- classify: fields `tokens` int64 [N, T], `padding_mask` bool [N, T] (True = padding), `label`.
- lines: `tokens` and `padding_mask` (each line a sequence).
- skipgram: one (center, context) pair per word and per neighbour within `window` words on the same line.
- cbow: `context` int64 [N, 2·window] (the window words on each side) and `center`, for every word with a
  full window on its line.
Sequences are padded with `<pad>` to the batch's longest, or to the spec's fixed T (longer ones cut)."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from compiler.errors import UserError
from compiler.ir import Graph

from .columns import LazyColumn
from .fields import Read
from .table import categories

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
PAD, UNK, BOS, EOS = range(4)
TOKEN = re.compile(r"[\w']+|[^\w\s]")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return TOKEN.findall(text.lower() if lowercase else text)


def build_vocab(texts: list[list[str]], size: int | None, min_count: int = 1) -> list[str]:
    counts = Counter(w for t in texts for w in t)
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
                   key=lambda w: (-counts[w], w))
    if size is not None:
        words = words[:max(0, size - len(SPECIALS))]
    return SPECIALS + words


class TokenColumn(LazyColumn):
    """Token-id sequences padded per batch (to the batch's longest, or to a fixed length)."""

    def __init__(self, seqs: list[np.ndarray], fixed: int | None, source: str):
        self.seqs, self.fixed, self.source = seqs, fixed, source
        longest = max((len(s) for s in seqs), default=0)
        self.shape = (len(seqs), fixed if fixed is not None else max(1, longest))
        self.dtype = np.dtype(np.int64)

    def take(self, rows: np.ndarray) -> np.ndarray:
        width = self.fixed if self.fixed is not None else max(1, max((len(self.seqs[int(r)]) for r in rows),
                                                                     default=1))
        out = np.full((len(rows), width), PAD, dtype=np.int64)
        for i, r in enumerate(rows):
            s = self.seqs[int(r)][:width]
            out[i, :len(s)] = s
        return out


class MaskColumn(LazyColumn):
    """True where a TokenColumn's batch is padding."""

    def __init__(self, tokens: TokenColumn):
        self.tokens, self.source, self.shape = tokens, tokens.source, tokens.shape
        self.dtype = np.dtype(bool)

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.tokens.take(rows) == PAD


def _lines(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"text file '{path}' is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"cannot read text file '{path}': {e.strerror or e}") from None
    return [ln for ln in text.splitlines() if ln.strip()]


def _embedding_size(graph: Graph, inputs: list[str]) -> int | None:
    for node in graph.nodes:
        if node.op == "embedding" and node.inputs and node.inputs[0] is not None and node.inputs[0].node in inputs:
            n = getattr(node.attrs, "num_embeddings", None)
            if isinstance(n, int):
                return n
    return None


def default_task(path: str, graph: Graph) -> str:
    if str(path).lower().endswith(".tsv"):
        return "classify"
    if "center" in graph.inputs and "context" in graph.inputs:
        return "cbow" if graph.inputs["context"].rank == 2 else "skipgram"
    return "lines"


def read_text(path: str, src: Any, graph: Graph, derived: dict[str, Any] | None = None,
              train_rows: Callable[[int], np.ndarray] | None = None) -> Read:
    """The fields of a text source (see the module docstring); `train_rows(n)` picks the training rows of
    n samples (the vocabulary is built on them only)."""
    task = src.task or default_task(path, graph)
    lines = _lines(path)
    labels: list[str] = []
    if task == "classify":
        lines, labels = _split_label(lines, path)
    texts = [tokenize(t, src.lowercase) for t in lines]
    out_derived: dict[str, Any] = {"task": task, "lowercase": src.lowercase}
    vocab = (derived or {}).get("vocab")
    if vocab is None:
        size = src.vocab_size or _embedding_size(graph, ["tokens", "center", "context", *src.inputs])
        rows = train_rows(len(texts)) if train_rows is not None and task in ("classify", "lines") else None
        vocab = build_vocab(texts if rows is None else [texts[int(i)] for i in rows], size, src.min_count)
    out_derived["vocab"] = list(vocab)
    ids = {w: i for i, w in enumerate(vocab)}
    seqs = [np.array([ids.get(w, UNK) for w in t], dtype=np.int64) for t in texts]
    if task in ("skipgram", "cbow"):
        fields = _pairs(seqs, task, src.window, graph, path)
        return Read(fields, str(path), out_derived, pair_by_kind=False)
    if src.bos or src.eos:
        seqs = [np.concatenate([[BOS]] * src.bos + [s] + [[EOS]] * src.eos).astype(np.int64) for s in seqs]
    fixed = None
    t = graph.inputs.get("tokens")
    if t is not None and t.rank == 2 and isinstance(t.shape[1], int):
        fixed = t.shape[1]
    if src.max_len is not None:
        fixed = src.max_len if fixed is None else fixed
        seqs = [s[:src.max_len] for s in seqs]
    tokens = TokenColumn(seqs, fixed, str(path))
    fields: dict[str, Any] = {"tokens": tokens, "padding_mask": MaskColumn(tokens)}
    if task == "classify":
        label_idx, names = _labels(labels, path, (derived or {}).get("classes"))
        fields["label"] = label_idx
        if names is not None:
            out_derived["classes"] = names
    return Read(fields, str(path), out_derived, pair_by_kind=True)


def _split_label(lines: list[str], path: str) -> tuple[list[str], list[str]]:
    if lines and [c.strip().lower() for c in lines[0].split("\t")] == ["text", "label"]:
        lines = lines[1:]
    texts, labels = [], []
    for i, ln in enumerate(lines, 1):
        text, sep, label = ln.rpartition("\t")
        if not sep:
            raise UserError(f"{path}: line '{ln[:40]}' has no tab: a text TSV holds text<TAB>label per line",
                            hint="for a plain corpus use a .txt file (task: lines, skipgram or cbow)")
        texts.append(text)
        labels.append(label.strip())
    return texts, labels


def _labels(labels: list[str], path: str, known: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    if known is None and all(re.fullmatch(r"\d+", v) for v in labels):
        return np.array([int(v) for v in labels], dtype=np.int64), None
    lines = list(range(1, len(labels) + 1))
    return categories(labels, path, "label", lines, known)


def _pairs(seqs: list[np.ndarray], task: str, window: int | None, graph: Graph, path: str) -> dict[str, Any]:
    ctx = graph.inputs.get("context")
    if window is None:
        window = ctx.shape[1] // 2 if task == "cbow" and ctx is not None and ctx.rank == 2 \
            and isinstance(ctx.shape[1], int) else 2
    centers, contexts = [], []
    for s in seqs:
        n = len(s)
        if task == "skipgram":
            for off in range(1, window + 1):
                if n > off:
                    centers += [s[:-off], s[off:]]
                    contexts += [s[off:], s[:-off]]
        elif n >= 2 * window + 1:
            idx = np.arange(window, n - window)
            offs = np.r_[np.arange(-window, 0), np.arange(1, window + 1)]
            centers.append(s[idx])
            contexts.append(s[idx[:, None] + offs[None, :]])
    if not centers:
        raise UserError(f"text file '{path}' gives no {task} pairs with window {window}",
                        hint="lines need at least " + ("2 words" if task == "skipgram" else f"{2 * window + 1} words"))
    center = np.concatenate(centers)
    context = np.concatenate(contexts) if task == "skipgram" else np.concatenate(contexts, axis=0)
    return {"center": center.astype(np.int64), "context": context.astype(np.int64)}
