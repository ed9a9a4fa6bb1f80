"""Graphs for node classification: an edge list (.csv) plus a node table, or a file networkx reads.

Fields, for the whole graph (V nodes): `x` float32 [V, F] node features (the node table's `features`
columns, a categorical one one-hot; the identity matrix when there are none), `adj` float32 [V, V] dense
adjacency (1 per edge, symmetric unless `directed: true`; no self loops: gcn_conv adds them), `label`
int64 [V] (class indices; category names saved with the checkpoint; 0 for unlabelled nodes, which no mask
selects), `train_mask`, `val_mask`, `test_mask` (0/1 per node, from the `split` column: train, val or
test; without one, every labelled node trains; columns named `label` and `split` are used when the
options do not name others), and `mask`: the mask of the split being fed. The spec's
one node-mask input (specs/gcn.yaml's `train_mask`) receives `mask`: the training nodes while training,
the validation nodes for val, the test nodes for eval/test."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.ir import Graph

from .fields import Read
from .table import categories, numbers, read_rows

NX_SUFFIXES = (".graphml", ".gml", ".edgelist", ".adjlist", ".gexf")
ROLE_MASK = {"train": "train_mask", "val": "val_mask", "test": "test_mask", "eval": "test_mask"}


def _natural(ids: list[str]) -> list[str]:
    try:
        return sorted(ids, key=lambda s: float(s))
    except ValueError:
        return sorted(ids)


def _edges_csv(path: str, directed: bool) -> tuple[list[tuple[str, str]], list[str]]:
    header, cols, lines = read_rows(path, "\t" if path.lower().endswith(".tsv") else ",")
    if len(header) < 2:
        raise UserError(f"edge list '{path}' needs two columns (source, target); its header: {', '.join(header)}")
    edges = [(a.strip(), b.strip()) for a, b in zip(cols[0], cols[1])]
    return edges, _natural(list(dict.fromkeys(n for e in edges for n in e)))


def _nx_graph(path: str) -> tuple[list[tuple[str, str]], list[str], dict[str, dict[str, Any]]]:
    import networkx as nx
    suffix = Path(path).suffix.lower()
    reader = {".graphml": nx.read_graphml, ".gml": nx.read_gml, ".gexf": nx.read_gexf,
              ".edgelist": nx.read_edgelist, ".adjlist": nx.read_adjlist}[suffix]
    try:
        g = reader(path)
    except Exception as e:                                  # noqa: BLE001 - any malformed graph file
        raise UserError(f"networkx cannot read graph '{path}': {e}") from None
    nodes = [str(n) for n in g.nodes]
    attrs = {str(n): {k: str(v) for k, v in d.items()} for n, d in g.nodes(data=True)}
    return [(str(a), str(b)) for a, b in g.edges], nodes, attrs


def _node_table(path: str, id_col: str) -> tuple[list[str], dict[str, list[str]], list[int]]:
    header, cols, lines = read_rows(path, "\t" if path.lower().endswith(".tsv") else ",")
    by = dict(zip(header, cols))
    if id_col not in by:
        raise UserError(f"node table '{path}' has no id column '{id_col}' (its columns: {', '.join(header)})",
                        hint=did_you_mean(id_col, header) or "name it with id: COLUMN")
    return [v.strip() for v in by[id_col]], by, lines


def read_graph(path: str, src: Any, graph: Graph, needed: list[str], role: str,
               derived: dict[str, Any] | None = None, base: Path | None = None) -> Read:
    if Path(path).suffix.lower() in NX_SUFFIXES:
        edges, nodes, attrs = _nx_graph(path)
        cols = {k: [attrs[n].get(k, "") for n in nodes] for k in dict.fromkeys(k for a in attrs.values() for k in a)}
        lines = list(range(1, len(nodes) + 1))
        where = path
    else:
        edges, nodes = _edges_csv(path, src.directed)
        cols, lines, where = {}, [], path
    if src.nodes:
        table = str(base / src.nodes) if base is not None and not Path(src.nodes).is_absolute() else src.nodes
        ids, cols, lines = _node_table(table, src.id)
        extra = [n for n in nodes if n not in set(ids)]
        if extra:
            raise UserError(f"edge list '{path}' names node '{extra[0]}', which the node table '{table}' does not list")
        nodes, where = ids, table
    defaults = {k: k for k in ("label", "split") if getattr(src, k) is None and k in cols}
    if defaults:                                # columns named label / split are used without being named
        src = src.model_copy(update=defaults)
    pos = {n: i for i, n in enumerate(nodes)}
    v = len(nodes)
    adj = np.zeros((v, v), dtype=np.float32)
    for a, b in edges:
        adj[pos[a], pos[b]] = 1.0
        if not src.directed:
            adj[pos[b], pos[a]] = 1.0
    for c in list(src.features or []) + ([src.label] if src.label else []) + ([src.split] if src.split else []):
        if c not in cols:
            raise UserError(f"'{where}' has no node column '{c}' (its columns: {', '.join(cols) or 'none'})",
                            hint=did_you_mean(c, list(cols)))
    fields, out_derived = _node_fields(cols, lines, where, src, derived, v)
    fields["adj"] = adj
    mask = fields[ROLE_MASK.get(role, "train_mask")]
    fields["mask"] = mask
    masks = [k for k in needed if "mask" in k and graph.inputs[k].rank == 1]
    defaults = {masks[0]: "mask"} if len(masks) == 1 else {}
    out_derived["nodes"] = v
    out_derived["split_sizes"] = {k: int(fields[f"{k}_mask"].sum()) for k in ("train", "val", "test")}
    return Read(fields, f"{path}" + (f" + {src.nodes}" if src.nodes else "") + f" ({role} nodes)",
                out_derived, defaults, pair_by_kind=False)


def _node_fields(cols: dict[str, list[str]], lines: list[int], where: str, src: Any,
                 derived: dict[str, Any] | None, v: int) -> tuple[dict[str, Any], dict[str, Any]]:
    known = (derived or {}).get("categories", {})
    out: dict[str, Any] = {"categories": {}}
    skip = {src.id, src.label, src.split}
    feats = src.features if src.features is not None else [
        c for c in cols if c not in skip and c not in src.categorical and _numeric(cols[c])]
    blocks = []
    for c in feats:
        if c in src.categorical:
            idx, names = categories(cols[c], where, c, lines, known.get(c))
            out["categories"][c] = names
            blocks.append(np.eye(len(names), dtype=np.float32)[idx])
        else:
            blocks.append(numbers(cols[c], where, c, lines).astype(np.float32)[:, None])
    x = np.concatenate(blocks, axis=1) if blocks else np.eye(v, dtype=np.float32)
    labelled = np.ones(v, dtype=bool)
    label = np.zeros(v, dtype=np.int64)
    if src.label:
        raw = cols[src.label]
        labelled = np.array([bool(s.strip()) for s in raw])
        vals = [s for s, ok in zip(raw, labelled) if ok]
        rows = lines.only(list(labelled)) if hasattr(lines, "only") else \
            [ln for ln, ok in zip(lines, labelled) if ok]
        idx, names = categories(vals, where, src.label, rows, known.get(src.label))
        label[labelled] = idx
        out["categories"][src.label] = names
        out["classes"] = names
    fields: dict[str, Any] = {"x": x, "label": label}
    if src.split:
        s = np.array([t.strip().lower() for t in cols[src.split]])
        bad = [t for t in s if t not in ("train", "val", "test", "")]
        if bad:
            raise UserError(f"'{where}': column '{src.split}' holds '{bad[0]}'; a split is train, val, test or empty")
        for k in ("train", "val", "test"):
            fields[f"{k}_mask"] = ((s == k) & labelled).astype(np.uint8)
    else:
        fields["train_mask"] = labelled.astype(np.uint8)
        fields["val_mask"] = np.zeros(v, dtype=np.uint8)
        fields["test_mask"] = np.zeros(v, dtype=np.uint8)
    if not out["categories"]:
        del out["categories"]
    return fields, out


def _numeric(values: list[str]) -> bool:
    try:
        np.array([s for s in values if s.strip()][:1000], dtype=np.float64)
        return any(s.strip() for s in values)
    except ValueError:
        return False
