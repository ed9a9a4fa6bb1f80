"""What a source reads (named fields) and how the fields are mapped onto the spec's inputs.

A reader (npz, table, images, text, graph) returns a `Read`: its fields (arrays or lazy columns, named
`features`, `label`, `image`, `tokens`, ... or after a table's columns), a description for messages, and
what it derived from the training data (category names, class folders, the vocabulary): that goes into
the checkpoint's metadata and is given back to the reader by `specc eval`/`run`, so indices mean the same.

Mapping, in order: the source's `inputs: {spec_input: field}`; a field with the input's name; then, for
the inputs still unmapped, the one remaining field of the same kind (float, integer, bool) when there is
exactly one of each."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compiler.errors import UserError, did_you_mean
from compiler.ir import Graph


@dataclass
class Read:
    fields: dict[str, Any]
    desc: str
    derived: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)   # spec input -> field, the reader's own choice
    pair_by_kind: bool = True


def _kind(dtype: Any) -> str:
    return {"f": "float32", "i": "int64", "u": "int64", "b": "bool"}.get(getattr(dtype, "kind", "?"), "?")


def map_fields(graph: Graph, read: Read, needed: list[str], explicit: dict[str, str] | None = None
               ) -> dict[str, Any]:
    """{spec input: column} for the inputs this source can feed (missing ones are reported by check)."""
    explicit = dict(explicit or {})
    out: dict[str, Any] = {}
    for name, fname in explicit.items():
        if name in graph.inputs and name not in needed:
            continue                        # a label at `specc run`: not read
        if name not in graph.inputs:
            raise UserError(f"data source {read.desc}: inputs maps '{name}', which is not an input of the spec "
                            f"(inputs: {', '.join(graph.inputs)})", hint=did_you_mean(name, list(graph.inputs)))
        if fname not in read.fields:
            raise UserError(f"data source {read.desc}: inputs maps '{name}' to '{fname}', which it does not "
                            f"have (it has: {', '.join(read.fields)})", hint=did_you_mean(fname, list(read.fields)))
        out[name] = read.fields[fname]
    used = set(explicit.values())
    for name, fname in read.defaults.items():
        if name in graph.inputs and name not in out and fname in read.fields and name in needed:
            out[name] = read.fields[fname]
            used.add(fname)
    for name in needed:
        if name not in out and name in read.fields:
            out[name] = read.fields[name]
            used.add(name)
    if read.pair_by_kind:
        free = [k for k in read.fields if k not in used and k not in graph.inputs]
        for kind in ("float32", "int64", "bool"):
            want = [n for n in needed if n not in out and graph.inputs[n].dtype == kind]
            have = [k for k in free if _kind(read.fields[k].dtype) == kind]
            if len(want) == 1 and len(have) == 1:
                out[want[0]] = read.fields[have[0]]
                free.remove(have[0])
    return out


def unmapped_hint(read: Read, missing: list[str]) -> str:
    fields = ", ".join(read.fields)
    return (f"the source has {fields}; map them onto the spec's inputs with inputs: "
            "{" + ", ".join(f"{m}: FIELD" for m in missing) + "}")
