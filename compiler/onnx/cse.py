"""Common-subexpression elimination on an exported graph.

Two nodes of the same op, domain and attributes that read the same values compute the same values: the
later one goes and its readers read the earlier one's outputs. One pass in topological order catches
chains (gcn_conv's degree normalisation D^-1/2, recomputed by every layer from the same adjacency, is
computed once). Nodes with random outputs or subgraphs, and nodes that produce a graph output, are kept.
"""
from __future__ import annotations

import onnx

RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial",
          "Dropout"}


def _key(nd: onnx.NodeProto) -> tuple | None:
    if nd.op_type in RANDOM or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                   for a in nd.attribute):
        return None
    attrs = tuple(sorted((a.name, a.SerializeToString()) for a in nd.attribute))
    return (nd.domain or "", nd.op_type, tuple(nd.input), attrs, tuple(bool(o) for o in nd.output))


def eliminate_common_subexpressions(model: onnx.ModelProto) -> int:
    """Merge duplicate nodes in place; returns how many nodes were removed."""
    g = model.graph
    graph_outputs = {o.name for o in g.output}
    alias: dict[str, str] = {}
    seen: dict[tuple, onnx.NodeProto] = {}
    kept: list[onnx.NodeProto] = []
    for nd in g.node:
        if any(i in alias for i in nd.input):
            ins = [alias.get(i, i) for i in nd.input]
            del nd.input[:]
            nd.input.extend(ins)
        key = _key(nd)
        first = seen.get(key) if key is not None else None
        if first is not None and not any(o in graph_outputs for o in nd.output):
            alias.update({o: p for o, p in zip(nd.output, first.output) if o})
            continue
        if key is not None:
            seen.setdefault(key, nd)
        kept.append(nd)
    removed = len(g.node) - len(kept)
    if removed:
        del g.node[:]
        g.node.extend(kept)
        vi = [v for v in g.value_info if v.name not in alias]
        del g.value_info[:]
        g.value_info.extend(vi)
    return removed
