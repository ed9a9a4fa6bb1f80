"""Generate docs/ops.md from the op records (compiler/ops/<family>.py): attributes, defaults, inputs, ports,
what each op computes. Run `python tools/gen_op_docs.py` or `python -m tools.gen_op_docs` after changing an
op; tests/test_op_records.py fails while docs/ops.md is stale."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compiler.catalogue import CATALOGUE  # noqa: E402
from compiler.ops import OPS  # noqa: E402


def _attrs(opdef) -> str:
    parts = []
    for name, f in opdef.attrs.model_fields.items():
        text = f"**{name}**" if name == opdef.primary else name
        if not f.is_required():
            default = f.default
            text += f"={default!r}" if not isinstance(default, str) else f"={default}"
        parts.append(text)
    return ", ".join(parts) or "—"


def render() -> str:
    out = ["# Operator catalogue", "",
           "Generated from the op records (compiler/ops/<family>.py) by `python tools/gen_op_docs.py`; do not edit "
           "by hand.",
           "Primary attribute in **bold** (the value of the `{op: value}` shorthand). Inputs in brackets are "
           "optional. Every op has a shape rule, a NumPy kernel with its gradient, and an ONNX lowering "
           "(losses are pruned from exported graphs).", ""]
    for family, names in CATALOGUE.items():
        out += [f"## {family}", "", "| op | attributes | inputs | outputs | what it computes |", "|---|---|---|---|---|"]
        for name in names:
            opdef = OPS.get(name)
            if opdef is None:
                out.append(f"| `{name}` | (not registered) | | | |")
                continue
            ins = ", ".join(f"[{i}]" if i in opdef.optional else i for i in opdef.inputs) or "—"
            if opdef.variadic:
                ins += ", …"
            ports = ", ".join(opdef.ports) if len(opdef.ports) > 1 else "out"
            doc = " ".join(opdef.doc.split()).replace("|", "\\|")
            out.append(f"| `{name}` | {_attrs(opdef)} | {ins} | {ports} | {doc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "ops.md"
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
