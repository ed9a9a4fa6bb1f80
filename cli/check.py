"""`specc check` (validate, expand and shape-check specs; the layer table) and `specc schema`."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from compiler.errors import SpecError, UserError
from compiler.overrides import load_graph


def cmd_check(args: argparse.Namespace) -> int:
    from compiler.lints import as_json as warnings_json
    from compiler.summary import as_json
    status, reports = 0, []
    for path in args.spec:
        try:
            g = load_graph(path, args.set, args.werror)
        except SpecError as e:
            print(e.render(), file=sys.stderr)
            n = len(e.diagnostics)
            print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
            status = 1
            if args.json:
                reports.append({"file": path, "status": "error", "errors": [
                    {"file": d.loc.file if d.loc else path, "line": d.loc.line if d.loc else None,
                     "col": d.loc.col if d.loc else None, "message": d.message, "hint": d.hint}
                    for d in e.diagnostics]})
            continue
        except UserError as e:
            if e.code != 1:                 # a usage error (a malformed --set) is the same for every spec
                raise
            print(e.render(), file=sys.stderr)     # a missing file: the other specs are still checked
            status = 1
            if args.json:
                reports.append({"file": path, "status": "error", "errors": [
                    {"file": path, "line": None, "col": None, "message": e.message, "hint": e.hint}]})
            continue
        if args.json:
            reports.append(as_json(g, args.batch) | {"file": path, "status": "ok", "errors": []}
                           | _depth_json(g, args) | {"warnings": warnings_json(g)})
        elif args.explain:
            from compiler.explain import explain
            print(explain(g, args.explain))
        elif args.depth is not None or args.columns:
            from compiler.summary_depth import render
            print(render(g, args.depth, (args.columns or "").split(","), batch=args.batch))
        else:
            print(g.summary(batch=args.batch))
            if len(args.spec) > 1:
                print()
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    return status


def _depth_json(g: Any, args: argparse.Namespace) -> dict[str, Any]:
    """check --json --depth K: the collapsed rows too."""
    if args.depth is None:
        return {}
    from compiler.summary_depth import as_json_rows
    return {"depth": args.depth, "rows": as_json_rows(g, args.depth)}


def cmd_schema(args: argparse.Namespace) -> int:
    from compiler.schema import json_schema
    text = json.dumps(json_schema(), indent=2)
    if args.output:
        from compiler.files import atomic_write_text, guard_output
        guard_output(args.output, ".json")
        atomic_write_text(args.output, text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0
