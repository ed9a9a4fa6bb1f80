"""`specc graph SPEC -o FILE`: draw the graph (compiler/graphviz.py) as .dot, .mmd, .svg, .png or .pdf."""
from __future__ import annotations

import argparse
from pathlib import Path

from compiler.errors import UserError
from compiler.files import atomic_write_text
from compiler.graphviz import FORMATS, default_depth, render_dot, to_dot, to_mermaid
from compiler.overrides import load_graph
from compiler.summary_depth import collapsed_rows


def cmd_graph(args: argparse.Namespace) -> int:
    g = load_graph(args.spec, args.set)
    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    kinds = ".dot, .mmd, .svg, .png or .pdf"
    if out.is_dir():
        raise UserError(f"cannot write '{out}': it is a folder",
                        hint=f"give a file with a {kinds} suffix, e.g. {out / (g.name + '.svg')}")
    if fmt not in FORMATS:
        what = f"unknown picture format '.{fmt}'" if fmt else f"'{out}' has no suffix to tell the picture format"
        raise UserError(what, hint=f"give the file a {kinds} suffix", code=2)
    depth = args.depth
    if depth is None and not args.full and (depth := default_depth(g)) is not None:
        print(f"note: {len(g.nodes)} nodes, so blocks are collapsed at --depth {depth} "
              f"({len(collapsed_rows(g, depth))} boxes); --full draws every node, --depth K chooses the level")
    if args.full:
        depth = None
    if fmt == "mmd":
        atomic_write_text(out, to_mermaid(g, depth, args.rankdir))
    elif fmt == "dot":
        atomic_write_text(out, to_dot(g, depth, args.rankdir))
    else:
        render_dot(to_dot(g, depth, args.rankdir), fmt, out)
    shown = len(collapsed_rows(g, depth)) if depth is not None else len(g.nodes)
    print(f"wrote {out} ({len(g.nodes)} nodes" + (f", {shown} boxes" if shown != len(g.nodes) else "") + ")")
    return 0
