"""Batch shape check of many specs: a linter for a folder of specs.

    python tools/shape_check.py DIR_OR_FILE... [--set KEY=VALUE]... [--json]

Folders are searched recursively for *.yaml / *.yml. A file with neither `layers` nor `inputs` (a block
library such as specs/lib/*.yaml, or a helper that is only imported) is not a model and is skipped;
named on the command line it gets a 'skipped' row. (A file with `inputs` but a misspelt `layers` is
checked, so the typo is reported rather than the file silently skipped.) Every spec is compiled as `specc check` does (expanded and
shape-inferred), and one row per spec is printed: file, name, status (ok, or FAIL with the number of
errors), parameters, multiply-adds per sample and output shapes. The errors of the failing specs
follow the table, as `specc check` prints them.

Exit status: 0 when every spec is clean, 1 when any fails or a path does not exist (as `specc check`
on a missing file), 2 for a usage error (bad flags, or no spec found).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compiler import SpecError, compile_file  # noqa: E402
from compiler.overrides import parse_set  # noqa: E402
from compiler.errors import UserError, did_you_mean  # noqa: E402
from compiler.load import SMap, load_file  # noqa: E402
from compiler.summary import human, totals  # noqa: E402

SUFFIXES = (".yaml", ".yml")


@dataclass
class Row:
    file: str
    name: str = ""
    status: str = "ok"
    errors: int = 0
    params: int | None = None
    macs: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    report: str = ""                        # the rendered errors of a failing spec

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def cells(self) -> tuple[str, ...]:
        status = f"FAIL ({self.errors} error{'s' if self.errors != 1 else ''})" if self.failed else self.status
        return (self.file, self.name, status,
                "" if self.params is None else f"{self.params:,}",
                "" if self.macs is None else human(self.macs),
                ", ".join(f"{k} {v}" for k, v in self.outputs.items()))


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def collect(args: Sequence[str]) -> tuple[list[tuple[Path, bool]], list[str]]:
    """(file, named explicitly) for every candidate spec, and the paths that do not exist."""
    files: list[tuple[Path, bool]] = []
    missing: list[str] = []
    seen: set[Path] = set()
    for a in args:
        p = Path(a)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file())
            items = [(f, False) for f in found]
        elif p.is_file():
            items = [(p, True)]
        else:
            missing.append(a)
            continue
        for f, explicit in items:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append((f, explicit))
    return files, missing


def is_library(path: Path) -> bool:
    """A file that loads as a mapping with neither `layers` nor `inputs`: blocks to import, not a model."""
    try:
        tree, _ = load_file(path)
    except SpecError:
        return False                        # unreadable YAML: checked (and reported) as a spec
    return isinstance(tree, SMap) and "layers" not in tree and "inputs" not in tree


def check_one(path: Path, params: dict[str, Any]) -> Row:
    row = Row(display(path))
    try:
        g = compile_file(path, params=_applicable(path, params))
    except SpecError as e:
        row.status, row.errors, row.report = "FAIL", len(e.diagnostics), e.render()
        row.name = _name_of(path)
        return row
    except (UserError, OSError, RecursionError, ValueError) as e:        # never a traceback
        row.status, row.errors = "FAIL", 1
        row.report = f"error: {getattr(e, 'message', None) or e}"
        return row
    t = totals(g)
    row.name, row.params, row.macs = g.name, t["params"], t["macs"]
    row.outputs = {k: str(v) for k, v in g.outputs.items()}
    return row


def _declared(path: Path) -> set[str]:
    """The params a spec declares (none when it does not load)."""
    try:
        tree, _ = load_file(path)
    except (SpecError, UserError, OSError, ValueError):
        return set()
    declared = tree.get("params") if isinstance(tree, SMap) else None
    return {str(k) for k in declared} if isinstance(declared, dict) else set()


def _applicable(path: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """--set values for the params this spec declares (a folder's specs have different params)."""
    if not params:
        return None
    try:
        tree, _ = load_file(path)
    except SpecError:
        return None
    declared = tree.get("params") if isinstance(tree, SMap) else None
    chosen = {k: v for k, v in params.items() if isinstance(declared, dict) and k in declared}
    return chosen or None


def _name_of(path: Path) -> str:
    try:
        tree, _ = load_file(path)
    except SpecError:
        return ""
    name = tree.get("name") if isinstance(tree, SMap) else None
    return name if isinstance(name, str) else ""


def render(rows: list[Row]) -> str:
    head = ("file", "name", "status", "parameters", "MACs", "outputs")
    body = [r.cells() for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]

    def line(cells: tuple[str, ...]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            out.append(c if i == len(cells) - 1 else c.rjust(w) if i in (3, 4) else c.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(head), "  ".join("-" * w for w in widths)] + [line(b) for b in body]
    checked = [r for r in rows if r.status != "skipped"]
    failed = [r for r in rows if r.failed]
    lines.append("")
    lines.append(f"{len(checked)} spec{'s' if len(checked) != 1 else ''} checked: "
                 f"{len(checked) - len(failed)} ok, {len(failed)} failed")
    for r in failed:
        lines += ["", f"== {r.file}: {r.errors} error{'s' if r.errors != 1 else ''}", r.report]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shape_check.py", description="Batch shape check of many specs: one "
                                "summary row per spec; exit 1 when any fails.")
    p.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a param in every spec that declares it")
    p.add_argument("--json", action="store_true", help="machine-readable rows")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    files, missing = collect(args.paths)
    for m in missing:                       # reported, and the other paths still checked (as specc check)
        print(f"error: no such file or folder: '{m}'", file=sys.stderr)
    if missing and not files:
        return 1
    try:
        params = parse_set(args.set)
    except UserError as e:
        print(e.render(), file=sys.stderr)
        return 2
    if params:
        declared: set[str] = set()
        for f, _ in files:
            if not is_library(f):
                declared |= _declared(f)
        unknown = [k for k in params if k not in declared]
        if unknown:
            hint = did_you_mean(unknown[0], declared) or (
                f"the checked specs declare: {', '.join(sorted(declared))}" if declared
                else "none of the checked specs declares params")
            print(f"error: --set {unknown[0]}: no checked spec declares a param '{unknown[0]}'\nhint: {hint}",
                  file=sys.stderr)
            return 2
    rows: list[Row] = []
    for f, explicit in files:
        if is_library(f):
            if explicit:
                rows.append(Row(display(f), _name_of(f), "skipped"))
            continue
        rows.append(check_one(f, params))
    if not rows:
        print(f"error: no spec found in {', '.join(args.paths)} (*.yaml or *.yml files with `layers` or `inputs`)",
              file=sys.stderr)
        return 2
    try:
        report(rows, args.json)
    except BrokenPipeError:                 # `| head`
        sys.stderr.close()
    return 1 if missing or any(r.failed for r in rows) else 0


def report(rows: list[Row], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"file": r.file, "name": r.name, "status": r.status, "errors": r.errors,
                           "parameters": r.params, "macs": r.macs, "outputs": r.outputs,
                           "report": r.report} for r in rows], indent=2))
    else:
        print(render(rows))


if __name__ == "__main__":
    sys.exit(main())
