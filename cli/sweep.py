"""`specc sweep SPEC --grid KEY=V1,V2 ...`: train once per combination (runtime/sweep.py), print the ranked table."""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from compiler.errors import UserError
from compiler.overrides import load_graph
from runtime.sweep import RESULTS, parse_grid, sweep, table


def cmd_sweep(args: argparse.Namespace) -> int:
    grid = parse_grid(args.grid or [])
    g = load_graph(args.spec, args.set)            # the spec itself must compile before anything runs
    if g.train is None:
        raise UserError(f"'{args.spec}' has no train section", hint="add train: {objective: ..., data: ...}")
    out = Path(args.out) if args.out else Path("runs") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', g.name)}-sweep"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is an existing file, not a folder", hint="choose another --out folder")
    results = out / RESULTS
    if results.exists() and (not results.is_file() or not results.read_text(errors="replace").startswith("rank,")):
        raise UserError(f"'{results}' exists and is not a specc sweep's table; specc will not overwrite it",
                        hint="choose another --out folder")
    n = math.prod(len(v) for v in grid.values())
    print(f"sweep of {g.name}: {n} run{'s' if n != 1 else ''} in {out}")
    try:
        rows = sweep(args.spec, grid, out, epochs=args.epochs, data=args.data, sets=args.set or [])
    except KeyboardInterrupt:
        print(f"\ninterrupted; the finished runs are in {out / RESULTS}", file=sys.stderr)
        return 130
    print(table(rows))
    print(f"wrote {out / RESULTS}")
    return 0 if any(r["status"] == "ok" for r in rows) else 1
