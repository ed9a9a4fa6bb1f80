"""A run's folder (`specc train --out`, each run of `specc sweep`): what may be replaced there."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from compiler.errors import UserError

RUN_FILES = ("best.npz", "last.npz")


def check_previous_run(out: Path, graph: Any, resume: str | None) -> bool:
    """Refuse to replace a run of a different spec; True when a run of this spec will be replaced.
    Resuming a run in its own folder replaces nothing (fit checks that the checkpoint fits the spec)."""
    from .checkpoint import read_meta
    found = [out / f for f in RUN_FILES if (out / f).is_file()]
    if not found or resume is not None and Path(resume).resolve().parent == out.resolve():
        return False
    for f in found:
        meta = read_meta(f)
        if meta is None:
            raise UserError(f"'{f}' is not a specc checkpoint; specc will not overwrite it",
                            hint="use --out DIR for a new run, or delete the old one")
        old = meta.get("spec_hash")
        if old and graph.spec_hash and old != graph.spec_hash:
            name = meta.get("spec_name", "?")
            what = (f"a run of {name} made with other --set params or an earlier version of the spec"
                    if name == graph.name else f"a run of a different spec, {name}")
            raise UserError(f"'{out}' holds {what} ('{f}'); specc will not replace it",
                            hint="use --out DIR for this run, or delete the old one")
    return True
