"""`specc run`: inference with the NumPy runtime, onnxruntime or torch (runtime/inference.py), the outputs
printed or saved.

    specc run SPEC --weights CKPT.npz --input image=x.npy [-o out.npz] [--backend numpy|onnxruntime|torch]
    specc run MODEL.onnx --input image=x.npy [-o out.npz]
    specc run SPEC --weights CKPT.npz --data SOURCE [-o out.npz]
"""
from __future__ import annotations

import argparse

import numpy as np

from compiler.errors import UserError
from runtime.inference import parse_inputs, preview, run_model, run_on_data


def cmd_run(args: argparse.Namespace) -> int:
    from compiler.files import atomic_write, guard_output

    data = getattr(args, "data", None)
    if data is not None and args.input:
        raise UserError("give either --data SOURCE or --input NAME=FILE.npy, not both", code=2)
    inputs, files = parse_inputs(args.input)
    if not inputs and data is None:
        raise UserError("no inputs given", hint="pass --input NAME=FILE.npy for each of the model's inputs, "
                        "or --data SOURCE (a data set, table, image folder, text file: docs/data.md)", code=2)
    if args.out:
        guard_output(args.out, ".npz", (args.model, args.weights, *files) + ((data,) if data else ()))
    if data is not None:
        outputs = run_on_data(args.model, data, args.weights, args.set)
    else:
        outputs = run_model(args.model, inputs, args.backend, args.weights, args.set, getattr(args, "device", "cpu"))
    if args.out:
        arrays = {k: np.asarray(v) for k, v in outputs.items()}

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(args.out, write)
        print(f"wrote {args.out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()))
    else:
        for k, v in outputs.items():
            print(preview(k, v))
    return 0
