"""`specc graph`: the IR as a picture — Graphviz dot or Mermaid, blocks as clusters, edges labelled with shapes."""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from .errors import UserError
from .files import atomic_write_bytes, atomic_write_text
from .ir import Graph


def _id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def _label_edges(g: Graph):
    for n in g.nodes:
        for r in n.inputs:
            if r is not None:
                yield r, n, str(g.type_of(r))


def to_dot(g: Graph) -> str:
    lines = [f'digraph "{g.name}" {{', "  rankdir=TB;", '  node [shape=box, fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for name, t in g.inputs.items():
        lines.append(f'  {_id(name)} [label="{name}\\n{t}", shape=ellipse];')
    clusters: dict[str, list[str]] = {}
    for n in g.nodes:
        stmt = f'{_id(n.name)} [label="{n.name}\\n{n.op}"];'
        parts = n.name.split(".")
        key = ".".join(parts[:-1]) if n.block else ""
        clusters.setdefault(key, []).append(stmt)
    for key, stmts in clusters.items():
        if key:
            lines.append(f'  subgraph "cluster_{key}" {{ label="{key}"; style=rounded; color=gray;')
            lines += [f"    {s}" for s in stmts]
            lines.append("  }")
        else:
            lines += [f"  {s}" for s in stmts]
    for public, r in g.output_refs.items():
        lines.append(f'  {_id("out_" + public)} [label="{public}\\n{g.type_of(r)}", shape=ellipse];')
        lines.append(f'  {_id(r.node)} -> {_id("out_" + public)};')
    for r, n, label in _label_edges(g):
        lines.append(f'  {_id(r.node)} -> {_id(n.name)} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(g: Graph) -> str:
    lines = ["flowchart TD"]
    for name, t in g.inputs.items():
        lines.append(f'  {_id(name)}(["{name} {t}"])')
    clusters: dict[str, list[str]] = {}
    for n in g.nodes:
        key = ".".join(n.name.split(".")[:-1]) if n.block else ""
        clusters.setdefault(key, []).append(f'{_id(n.name)}["{n.name}: {n.op}"]')
    for key, stmts in clusters.items():
        if key:
            lines.append(f'  subgraph {_id("cluster_" + key)}["{key}"]')
            lines += [f"    {s}" for s in stmts]
            lines.append("  end")
        else:
            lines += [f"  {s}" for s in stmts]
    for public, r in g.output_refs.items():
        lines.append(f'  {_id("out_" + public)}(["{public} {g.type_of(r)}"])')
        lines.append(f'  {_id(r.node)} --> {_id("out_" + public)}')
    for r, n, label in _label_edges(g):
        lines.append(f'  {_id(r.node)} -->|"{label}"| {_id(n.name)}')
    return "\n".join(lines) + "\n"


def cmd_graph(args: argparse.Namespace) -> int:
    from .cli import load_graph
    g = load_graph(args.spec, args.set)
    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if out.is_dir():
        raise UserError(f"cannot write '{out}': it is a folder",
                        hint=f"give a file with a .dot, .mmd, .svg or .png suffix, e.g. {out / (g.name + '.svg')}")
    if fmt not in ("dot", "mmd", "svg", "png"):
        what = f"unknown picture format '.{fmt}'" if fmt else f"'{out}' has no suffix to tell the picture format"
        raise UserError(what, hint="give the file a .dot, .mmd, .svg or .png suffix", code=2)
    if fmt == "dot":
        atomic_write_text(out, to_dot(g))
    elif fmt == "mmd":
        atomic_write_text(out, to_mermaid(g))
    elif fmt in ("svg", "png"):
        dot = shutil.which("dot")
        if dot is None:
            raise UserError(f"writing .{fmt} needs Graphviz's `dot` program, which is not installed",
                            hint="install graphviz, or write .dot / .mmd and render it elsewhere")
        res = subprocess.run([dot, f"-T{fmt}"], input=to_dot(g).encode(), capture_output=True, timeout=120)
        if res.returncode != 0:
            raise UserError(f"dot failed: {res.stderr.decode(errors='replace').strip()}")
        atomic_write_bytes(out, res.stdout)
    else:
        raise UserError(f"unknown picture format '.{fmt}'", hint="use .dot, .mmd, .svg or .png", code=2)
    print(f"wrote {out} ({len(g.nodes)} nodes)")
    return 0
