"""`specc compile`: export a spec to ONNX, optionally verifying it against the NumPy runtime.

    specc compile SPEC -o OUT.onnx [--weights CKPT.npz] [--opset N] [--output NAME]... [--verify] [--set k=v]...

onnx, onnxruntime and the runtime (weights files, the NumPy reference for --verify) are imported when the
command runs.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import UserError
from compiler.overrides import load_graph

MAX_PROTO_BYTES = 2_000_000_000         # protobuf's limit for a single ModelProto


def cmd_compile(args: argparse.Namespace) -> int:
    import onnx

    from compiler.files import atomic_write, guard_output
    from compiler.onnx.export import check_opset, export, fresh_weights
    from runtime.memory import guard_params
    from runtime.verify import load_weights, verify

    out = Path(args.out)
    guard_output(out, ".onnx", (args.spec, getattr(args, "weights", None)))
    opset = check_opset(args.opset)
    graph = load_graph(args.spec, getattr(args, "set", None))
    planned = sum(math.prod(p.shape) * 4 for p, _ in graph.params().values())
    if planned > MAX_PROTO_BYTES:                       # said before any weight is allocated or read
        raise UserError(f"the weights take {planned / 1e9:.1f} GB; a single .onnx file holds at most 2 GB", code=1)
    if not args.weights:
        guard_params(graph)                             # refused before any parameter is drawn
    state = load_weights(args.weights, graph) if args.weights else fresh_weights(graph)
    size = sum(a.nbytes for a in state.values())
    if size > MAX_PROTO_BYTES:
        raise UserError(f"the weights take {size / 1e9:.1f} GB; a single .onnx file holds at most 2 GB", code=1)
    optimize = bool(getattr(args, "optimize", True))
    exp = export(graph, state, opset, args.output or None, optimize=optimize)
    left_out = [k for k in graph.output_refs if not args.output and k not in exp.outputs]
    if left_out:
        print(f"note: left out output{'s' if len(left_out) > 1 else ''} {', '.join(repr(k) for k in left_out)}: "
              "losses and training-only nodes are not exported", file=sys.stderr)

    if args.verify:
        result = verify(graph, state, opset, args.output or None, exported=exp, optimize=optimize)
        if not result.ok:
            raise UserError("--verify failed: " + result.message,
                            hint=f"'{args.out}' was not written", code=1)
        print(result.message)

    atomic_write(out, lambda tmp: onnx.save_model(exp.model, tmp))
    g = exp.model.graph
    used = {n.param_name(p): p for n in exp.nodes for p in n.params if not p.buffer}
    n_params = sum(int(np.prod(p.shape)) for p in used.values())
    ins = ", ".join(f"{i.name}[{_dims(i)}]" for i in g.input)
    outs = ", ".join(f"{o.name}[{_dims(o)}]" for o in g.output)
    print(f"wrote {out}: opset {opset}, {len(g.node)} nodes, {n_params:,} parameters; inputs {ins}; outputs {outs}")
    return 0


def _dims(v: Any) -> str:
    return "×".join(d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim) or "scalar"
