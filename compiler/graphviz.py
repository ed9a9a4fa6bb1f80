"""`specc graph`: the IR as a picture — Graphviz dot or Mermaid, blocks as clusters, edges labelled with shapes,
key attributes in each box. `--depth K` draws block groups deeper than K as one box each (the names'
first K dotted parts, as `specc check --depth`); a graph of more than MAX_BOXES nodes is collapsed by
default to the deepest level that fits, so ResNet-18's picture stays readable."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .files import atomic_write_bytes
from .ir import Graph, Node
from .summary_depth import collapsed_rows, group_key

MAX_BOXES = 60
FORMATS = ("dot", "mmd", "svg", "png", "pdf")
SHORT = {"out_channels": "out", "out_features": "out", "kernel_size": "k", "stride": "s", "padding": "pad",
         "dilation": "dil", "hidden_size": "hidden", "num_heads": "heads", "num_layers": "layers",
         "embedding_dim": "dim", "num_embeddings": "vocab", "scale_factor": "scale"}
SKIP = {"in_channels", "in_features", "bias", "init"}
NL = "\\n"                                # a line break inside a dot label


@dataclass
class Box:
    id: str
    lines: list[str]
    cluster: str = ""                       # the enclosing block group ('' at top level)
    collapsed: bool = False


def _id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def key_attrs(node: Node, limit: int = 4) -> str:
    """The attributes the spec set on a node, short: `out=6 k=5 pad=2`."""
    a = node.attrs
    if a is None:
        return ""
    given = [f for f in type(a).model_fields if f in getattr(a, "model_fields_set", ()) and f not in SKIP]
    parts = []
    for f in given[:limit]:
        v = getattr(a, f)
        v = "×".join(map(str, v)) if isinstance(v, (list, tuple)) and len(v) <= 4 else v
        if isinstance(v, list) and len(str(v)) > 40:          # a buffer's table: its size, not its items
            v = f"[{len(v)} items]"
        parts.append(f"{SHORT.get(f, f)}={v}")
    return " ".join(parts)


def default_depth(g: Graph) -> int | None:
    """None (every node) for a small graph, else the deepest level drawing at most MAX_BOXES boxes."""
    if len(g.nodes) <= MAX_BOXES:
        return None
    best = 1
    for d in range(1, max(n.name.count(".") for n in g.nodes) + 1):
        if len(collapsed_rows(g, d)) <= MAX_BOXES:
            best = d
    return best


def layout(g: Graph, depth: int | None) -> tuple[list[Box], list[tuple[str, str, str]]]:
    """The boxes (one per node or collapsed group) and the edges between them, labelled with shapes."""
    boxes: list[Box] = []
    for r in collapsed_rows(g, depth):
        if r.op.startswith("["):
            lines = [r.name, f"{r.op[1:-1]}", r.shape] + ([f"{r.params:,} params"] if r.params else [])
            parent = ".".join(r.name.split(".")[:-1])
            boxes.append(Box(_id(r.name), lines, parent, collapsed=True))
        else:
            n = r.nodes[0]
            attrs = key_attrs(n)
            boxes.append(Box(_id(n.name), [n.name, n.op] + ([attrs] if attrs else []),
                             ".".join(n.name.split(".")[:-1]) if n.block else ""))
    edges: dict[tuple[str, str], str] = {}
    for n in g.nodes:
        dst = _id(group_key(n.name, depth))
        for ref in n.inputs:
            if ref is None:
                continue
            src = _id(group_key(ref.node, depth)) if g.has_node(ref.node) else _id(ref.node)
            if src != dst:
                edges.setdefault((src, dst), str(g.type_of(ref)))
    return boxes, [(s, d, lab) for (s, d), lab in edges.items()]


def _clustered(boxes: list[Box]) -> dict[str, list[Box]]:
    out: dict[str, list[Box]] = {}
    for b in boxes:
        out.setdefault(b.cluster, []).append(b)
    return out


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(g: Graph, depth: int | None = None, rankdir: str = "TB") -> str:
    lines = [f'digraph "{_esc(g.name)}" {{', f"  rankdir={rankdir};",
             '  graph [fontname="Helvetica", fontsize=11];', '  node [shape=box, fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']
    for name, t in g.inputs.items():
        lines.append(f'  {_id(name)} [label="{_esc(name)}\\n{t}", shape=ellipse];')
    boxes, edges = layout(g, depth)
    for key, group in _clustered(boxes).items():
        stmts = [f'{b.id} [label="{NL.join(map(_esc, b.lines))}"'
                 + (', style="rounded,filled", fillcolor="#e8eef7"' if b.collapsed else "") + "];" for b in group]
        if key:
            lines.append(f'  subgraph "cluster_{_esc(key)}" {{ label="{_esc(key)}"; style=rounded; color=gray;')
            lines += [f"    {s}" for s in stmts]
            lines.append("  }")
        else:
            lines += [f"  {s}" for s in stmts]
    for public, r in g.output_refs.items():
        lines.append(f'  {_id("out_" + public)} [label="{_esc(public)}\\n{g.type_of(r)}", shape=ellipse];')
        lines.append(f'  {_id(group_key(r.node, depth))} -> {_id("out_" + public)};')
    for src, dst, label in edges:
        lines.append(f'  {src} -> {dst} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(g: Graph, depth: int | None = None, rankdir: str = "TB") -> str:
    lines = [f"flowchart {'TD' if rankdir == 'TB' else rankdir}"]
    for name, t in g.inputs.items():
        lines.append(f'  {_id(name)}(["{name} {t}"])')
    boxes, edges = layout(g, depth)
    for key, group in _clustered(boxes).items():
        stmts = [f'{b.id}["' + f'{b.lines[0]}: {" · ".join(b.lines[1:])}'.replace('"', "'") + '"]' for b in group]
        if key:
            lines.append(f'  subgraph {_id("cluster_" + key)}["{key}"]')
            lines += [f"    {s}" for s in stmts]
            lines.append("  end")
        else:
            lines += [f"  {s}" for s in stmts]
    for public, r in g.output_refs.items():
        lines.append(f'  {_id("out_" + public)}(["{public} {g.type_of(r)}"])')
        lines.append(f'  {_id(group_key(r.node, depth))} --> {_id("out_" + public)}')
    for src, dst, label in edges:
        lines.append(f'  {src} -->|"{label}"| {dst}')
    return "\n".join(lines) + "\n"


def render_dot(dot_text: str, fmt: str, out: Path) -> None:
    dot = shutil.which("dot")
    if dot is None:
        raise UserError(f"writing .{fmt} needs Graphviz's `dot` program, which is not installed",
                        hint="install graphviz (apt-get install graphviz, brew install graphviz), or write "
                             ".dot / .mmd and render it elsewhere")
    res = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120)
    if res.returncode != 0:
        raise UserError(f"dot failed: {res.stderr.decode(errors='replace').strip()}")
    atomic_write_bytes(out, res.stdout)
