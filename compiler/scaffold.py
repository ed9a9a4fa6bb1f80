"""`specc init KIND NAME`: a commented starter spec that checks and trains as written on built-in data.

The templates are the YAML files in compiler/init_templates/; `NAME` and `FILE` in them are replaced by
the model's name and the written file's path (for the commands quoted in the description)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from .errors import UserError

TEMPLATES = Path(__file__).parent / "init_templates"
KINDS = ("classifier", "cnn", "autoencoder", "seq2seq", "gnn")
WHAT = {"classifier": "a multilayer perceptron classifier (digits)",
        "cnn": "a small convolutional image classifier (digits)",
        "autoencoder": "a fully connected autoencoder (digits images)",
        "seq2seq": "a GRU encoder-decoder with teacher forcing (digits rows as sequences)",
        "gnn": "a graph convolutional graph classifier (digits rows as nodes, learned edges)"}
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def render(kind: str, name: str, file: str) -> str:
    """The template of `kind` with its placeholders filled in."""
    text = (TEMPLATES / f"{kind}.yaml").read_text(encoding="utf-8")
    return re.sub(r"\bFILE\b", file, re.sub(r"\bNAME\b", name, text))


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
