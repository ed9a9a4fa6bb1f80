"""`specc check --depth K --columns ...`: the layer table with block instances deeper than K collapsed into
one row each (subtotals of parameters and MACs, the output shape of the instance's last node), and optional
attribute columns (kernel_size, stride, padding, ...)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import UserError
from .ir import Graph, Node
from .summary import render_table, rows as node_rows

ALIASES = {"kernel": "kernel_size", "channels": "out_channels", "features": "out_features"}


@dataclass
class Row:
    name: str
    op: str
    shape: str
    params: int = 0
    macs: int = 0
    shared: bool = False
    nodes: list[Node] = field(default_factory=list)


def group_key(name: str, depth: int | None) -> str:
    """The name shown for a node at `depth`: its first `depth` dotted parts (`layer1.0.conv1` at depth 1
    is `layer1`, at depth 2 `layer1.0`)."""
    if depth is None:
        return name
    parts = name.split(".")
    return ".".join(parts[:depth]) if len(parts) > depth else name


def collapsed_rows(g: Graph, depth: int | None) -> list[Row]:
    """One row per node, or per collapsed block instance, in the order of first appearance."""
    per_node = {r["name"]: r for r in node_rows(g)}
    out: dict[str, Row] = {}
    for n in g.nodes:
        key = group_key(n.name, depth)
        r = per_node[n.name]
        if key not in out:
            out[key] = Row(key, r["op"], r["shape"], shared=r["shared"])
        row = out[key]
        row.params += r["params"]
        row.macs += r["macs"]
        row.nodes.append(n)
        if key != n.name:                      # a collapsed instance: its last node's output
            row.shape, row.shared = r["shape"], row.shared or r["shared"]
    for row in out.values():
        if len(row.nodes) > 1 or row.name != row.nodes[0].name:
            row.op = f"[{len(row.nodes)} nodes]"
    return list(out.values())


def resolve_columns(g: Graph, columns: Sequence[str]) -> list[str]:
    """Attribute names for --columns (`kernel` means kernel_size); unknown ones are a usage error."""
    known = {f for n in g.nodes if n.attrs is not None for f in type(n.attrs).model_fields}
    out = []
    for c in columns:
        c = ALIASES.get(c.strip(), c.strip())
        if c and c not in known:
            from .errors import did_you_mean
            raise UserError(f"--columns: no node of '{g.name}' has an attribute '{c}'",
                            hint=did_you_mean(c, sorted(known)) or f"attributes here: {', '.join(sorted(known))}",
                            code=2)
        if c:
            out.append(c)
    return out


def _attr(row: Row, col: str) -> str:
    if len(row.nodes) != 1 or row.nodes[0].attrs is None:
        return ""
    v = getattr(row.nodes[0].attrs, col, None)
    if v is None:
        return ""
    return "×".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def render(g: Graph, depth: int | None = None, columns: Sequence[str] = (), batch: int = 1,
           frozen: list[str] | None = None) -> str:
    """The check table at `depth`, with extra attribute columns, and the usual totals below it."""
    cols = resolve_columns(g, columns)
    rs = collapsed_rows(g, depth)
    head = ("name", "op", "output shape", *cols, "params", "MACs")
    body = [(r.name, r.op, r.shape, *(_attr(r, c) for c in cols),
             f"{r.params:,}" + (" (shared)" if r.shared else ""), f"{r.macs:,}") for r in rs]
    widths = [min(max(len(h), *(len(b[i]) for b in body)) if body else len(h), 60) for i, h in enumerate(head)]
    numeric = len(head) - 2

    def line(cells: tuple) -> str:
        return "  ".join(c.ljust(w) if i < numeric else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    n_coll = sum(1 for r in rs if r.op.startswith("["))
    title = f"{g.name}: {len(g.nodes)} nodes" + (f" in {len(rs)} rows (depth {depth}: {n_coll} group"
                                                 f"{'s' if n_coll != 1 else ''} of block nodes collapsed)"
                                                 if depth is not None else "")
    out = [title, line(head), "  ".join("-" * w for w in widths)] + [line(b) for b in body]
    footer = render_table(g, batch, frozen).split("\n\n", 1)
    return "\n".join(out) + ("\n\n" + footer[1] if len(footer) == 2 else "")


def as_json_rows(g: Graph, depth: int | None) -> list[dict[str, Any]]:
    return [{"name": r.name, "op": r.op, "shape": r.shape, "params": r.params, "macs": r.macs,
             "shared": r.shared, "nodes": len(r.nodes)} for r in collapsed_rows(g, depth)]
