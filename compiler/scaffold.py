"""`specc init KIND NAME`: a commented starter spec that checks and trains as written on built-in data.

The templates are the YAML files in compiler/init_templates/; `NAME` and `FILE` in them are replaced by
the model's name and the written file's path (for the commands quoted in the description)."""
from __future__ import annotations

import re
from pathlib import Path


TEMPLATES = Path(__file__).parent / "init_templates"
KINDS = ("classifier", "cnn", "autoencoder", "seq2seq", "gnn")
WHAT = {"classifier": "a multilayer perceptron classifier (digits)",
        "cnn": "a small convolutional image classifier (digits)",
        "autoencoder": "a fully connected autoencoder (digits images)",
        "seq2seq": "a GRU encoder-decoder with teacher forcing (digits rows as sequences)",
        "gnn": "a graph convolutional graph classifier (digits rows as nodes, learned edges)"}
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")


def render(kind: str, name: str, file: str) -> str:
    """The template of `kind` with its placeholders filled in."""
    text = (TEMPLATES / f"{kind}.yaml").read_text(encoding="utf-8")
    return re.sub(r"\bFILE\b", file, re.sub(r"\bNAME\b", name, text))
