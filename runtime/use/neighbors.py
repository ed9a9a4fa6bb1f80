"""`specc neighbors`: nearest neighbours and analogies in a trained embedding table (word2vec, GloVe).

    specc neighbors SPEC --weights CKPT [--table NODE] [--vocab FILE] (--word W | --index I | --analogy a,b,c)
                    [--k 10] [--metric cosine|euclidean]

The table is an embedding node's weight [V, D] (`--table`, by default the spec's only embedding node).
Row i is token i; `--vocab` (one word per line, line i = token i) names the rows. Cosine similarity
(higher is closer) or Euclidean distance (lower is closer); the query itself is left out. `--analogy
a,b,c` looks for the words nearest to a − b + c (king − man + woman ≈ queen), leaving out a, b and c.
"""
from __future__ import annotations

import numpy as np

from compiler.errors import UserError, did_you_mean

from ..model import Model


def table_of(model: Model, name: str | None) -> tuple[str, np.ndarray]:
    g = model.graph
    state = model.state_dict()
    if name is None:
        tables = [n.name for n in g.nodes if n.op == "embedding"]
        if len(tables) != 1:
            raise UserError(f"'{g.name}' has {len(tables)} embedding nodes" +
                            (f" ({', '.join(tables)})" if tables else "") + "; say which table to search",
                            hint="pass --table NODE (an embedding node, or a parameter such as fc.weight)", code=2)
        name = tables[0]
    key = name if name in state else f"{name}.weight"
    if key not in state:
        raise UserError(f"no embedding table '{name}'", hint=did_you_mean(name, [k.rsplit('.', 1)[0] for k in state]
                                                                         + list(state)), code=2)
    w = np.asarray(state[key], dtype=np.float64)
    if w.ndim != 2:
        raise UserError(f"'{key}' has shape {list(w.shape)}; an embedding table is [tokens, dims]", code=2)
    return key, w


def neighbours(table: np.ndarray, query: np.ndarray, k: int, metric: str, exclude: list[int]) -> list[tuple[int, float]]:
    """The k rows nearest `query`: (row, cosine similarity or Euclidean distance), best first."""
    if metric == "cosine":
        norms = np.linalg.norm(table, axis=1) * max(np.linalg.norm(query), 1e-12)
        score = table @ query / np.maximum(norms, 1e-12)
        order = np.argsort(-score, kind="stable")
    else:
        score = np.linalg.norm(table - query[None], axis=1)
        order = np.argsort(score, kind="stable")
    skip = set(exclude)
    return [(int(i), float(score[i])) for i in order if int(i) not in skip][:k]


def token_id(text: str, vocab: list[str] | None, size: int) -> int:
    if vocab is not None and text in vocab:
        return vocab.index(text)
    if text.lstrip("-").isdigit():
        i = int(text)
        if not 0 <= i < size:
            raise UserError(f"token id {i} is out of range: the table has {size} rows", code=2)
        return i
    if vocab is None:
        raise UserError(f"'{text}' is not a token id; to look words up give --vocab FILE", code=2)
    raise UserError(f"'{text}' is not in the vocabulary", hint=did_you_mean(text, vocab), code=2)
