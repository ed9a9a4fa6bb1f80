"""`specc import MODEL.onnx -o SPEC.yaml [--weights OUT.npz] [--name NAME]`."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from compiler.errors import UserError
from compiler.files import atomic_write, guard_output


def cmd_import(args: argparse.Namespace) -> int:
    from compiler.onnx_import import import_model
    out = Path(args.out)
    guard_output(out, ".yaml", (args.model,))
    weights = Path(args.weights) if args.weights else None
    if weights is not None:
        guard_output(weights, ".npz", (args.model, args.out))
        if weights.resolve() == out.resolve():
            raise UserError("-o and --weights name the same file", code=2)
    imported = import_model(args.model, name=args.name)
    atomic_write(out, lambda tmp: Path(tmp).write_text(imported.text, encoding="utf-8"))
    n_params = sum(int(np.prod(s.shape)) for s, _ in imported.graph.params().values() if not s.buffer)
    print(f"wrote {out}: {len(imported.graph.nodes)} layers, {n_params:,} parameters")
    if weights is not None:
        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **imported.weights)
        atomic_write(weights, save)
        print(f"wrote {weights}: {len(imported.weights)} tensors (load with --weights {weights})")
    elif imported.weights:
        print("note: the model's weights were not saved; add --weights OUT.npz to keep them")
    return 0
