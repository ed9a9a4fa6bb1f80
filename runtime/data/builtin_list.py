"""What `specc data list [NAME]` (cli/data.py) prints: the built-in data sets with their parts, arrays (shape,
dtype) and options."""
from __future__ import annotations

from .builtin import BUILTIN, BUILTINS, Builtin, registry


def format_set(b: Builtin) -> list[str]:
    """The lines that describe one built-in set (shapes with its default options)."""
    opts = b.defaults()
    sizes = b.sizes(opts)
    lines = [f"{BUILTIN}{b.name} — {b.summary}"]
    lines.append("  parts    " + " · ".join(f"{p} {n:,}" for p, n in sizes.items())
                 + (" (the whole graph in each)" if b.static else ""))
    arrays = b.arrays(opts)
    shapes = ["[" + ", ".join(map(str, a.shape if b.static else ("N", *a.shape))) + "]" for a in arrays]
    wn = max(len(a.name) for a in arrays)
    ws = max(len(s) for s in shapes)
    for i, (a, s) in enumerate(zip(arrays, shapes)):
        head = "  arrays   " if i == 0 else " " * 11
        lines.append(f"{head}{a.name:<{wn}}  {a.dtype:<7}  {s:<{ws}}  {a.what}")
    for i, o in enumerate(b.options):
        lines.append(("  options  " if i == 0 else " " * 11) + o.show())
    if not b.options:
        lines.append("  options  none")
    for note in b.notes:
        lines.append(f"  note     {note}")
    return lines


def format_list(names: list[str] | None = None) -> str:
    reg = registry()
    chosen = names or list(BUILTINS)
    out: list[str] = []
    group = None
    for name in chosen:
        b = reg[name]
        if names is None and b.group != group:
            group = b.group
            out += ([""] if out else []) + [f"== {group} =="]
        out += ([""] if out and out[-1] != f"== {group} ==" else []) + format_set(b)
    if names is None:
        out += ["", "Use one as train.data (builtin:NAME, builtin:NAME/test, builtin:NAME?option=value,...) or "
                    "--data; docs/builtin-data.md describes each."]
    return "\n".join(out)
