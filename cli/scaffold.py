"""`specc init [KIND] NAME [-o DIR]`: write a commented starter spec (compiler/scaffold.py's templates), never
over an existing file."""
from __future__ import annotations

import argparse
from pathlib import Path

from compiler.errors import UserError
from compiler.scaffold import NAME_RE, WHAT, render


def cmd_init(args: argparse.Namespace) -> int:
    kind, name = args.kind, args.name
    if not NAME_RE.match(name):
        raise UserError(f"'{name}' is not a usable model name",
                        hint="a letter, then letters, digits, _ or - (it names the spec and its run folder)",
                        code=2)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o '{out_dir}' is a file, not a folder", hint="give the folder to write NAME.yaml in",
                        code=2)
    path = out_dir / f"{name}.yaml"
    if path.exists() or path.is_symlink():
        raise UserError(f"'{path}' already exists; specc init never overwrites a file",
                        hint="choose another NAME or -o DIR, or remove that file first")
    _write_new(path, render(kind, name, str(path)))
    print(f"wrote {path}: {WHAT[kind]}")
    print(f"next: specc check {path}\n      specc train {path}")
    return 0


def _write_new(path: Path, text: str) -> None:
    """Create the file; mode 'x' fails rather than replace a file that appeared meanwhile."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise UserError(f"'{path}' already exists; specc init never overwrites a file") from None
    except OSError as e:
        raise UserError(f"cannot write '{path}': {e.strerror or e}") from None
