"""Built-in graph: Zachary's karate club (shipped with networkx), for node classification.

34 members, 78 friendships, two clubs after the split ('Mr. Hi' = 0, 'Officer' = 1). One labelled node
per club — the two leaders, nodes 0 and 33 — make the training mask; the other 32 nodes are the test mask.
The set is one sample, the whole graph, in every part: the masks say which nodes a loss or a metric
counts (train.mask: {train: train_mask, test: test_mask}).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from compiler.errors import UserError

from .builtin import Array, Builtin, Option

NODES = 34
LEADERS = (0, 33)


def karate(features: str = "identity") -> dict[str, np.ndarray]:
    """x, adj (0/1, symmetric, no self loops), label, train_mask and test_mask (float32 0/1)."""
    try:
        import networkx as nx
    except ImportError:
        raise UserError("the built-in karate club needs networkx, which is not installed",
                        hint="pip install networkx") from None
    g = nx.karate_club_graph()
    order = sorted(g.nodes)
    adj = (nx.to_numpy_array(g, nodelist=order, weight=None) > 0).astype(np.float32)
    label = np.array([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in order], dtype=np.int64)
    deg = adj.sum(axis=1, keepdims=True)
    x = np.eye(NODES, dtype=np.float32) if features == "identity" else deg.astype(np.float32)
    train = np.zeros(NODES, dtype=np.float32)
    train[list(LEADERS)] = 1.0
    return {"x": x, "adj": adj, "label": label, "train_mask": train, "test_mask": 1.0 - train}


def _arrays(o: dict[str, Any]) -> list[Array]:
    f = NODES if o["features"] == "identity" else 1
    return [Array("x", "float32", (NODES, f), "node features: one-hot identity or the degree"),
            Array("adj", "float32", (NODES, NODES), "adjacency, 0/1, symmetric, no self loops"),
            Array("label", "int64", (NODES,), "club: 0 = Mr. Hi, 1 = Officer"),
            Array("train_mask", "float32", (NODES,), "1.0 at the two labelled nodes (0 and 33)"),
            Array("test_mask", "float32", (NODES,), "1.0 at the other 32 nodes")]


SETS = (Builtin(
    "karate", "Zachary's karate club: 34 nodes, 78 edges, 2 clubs; one labelled node per club", "graphs",
    (Option("features", "identity", "node features", str, choices=("identity", "degree")),),
    _arrays, lambda o: {"train": 1, "test": 1}, lambda o, part: karate(o["features"]), static=True,
    notes=("one sample (the whole graph) in every part; for specs/gcn.yaml and gat.yaml: "
           "--set nodes=34 --set features=34 --set classes=2 --set labelled=2",)),)
