"""`specc export-torch SPEC -o model.py [--output NAME]...`: write the spec as a standalone PyTorch file
(torch is not needed to write it). forward returns the spec's outputs, or the --output names (a loss node
too: forward then also takes the target)."""
from __future__ import annotations

import argparse

from compiler.errors import UserError


def cmd_export_torch(args: argparse.Namespace) -> int:
    from compiler.files import atomic_write_text, guard_output
    from compiler.overrides import load_graph

    from runtime.torch_backend.codegen import generate, resolve
    from runtime.torch_backend.layers import Unsupported

    guard_output(args.out, ".py", (args.spec,))
    g = load_graph(args.spec, args.set)
    try:
        outputs = {k: resolve(g, k) for k in args.output} if args.output else None
        exp = generate(g, args.spec, outputs)
    except Unsupported as e:
        raise UserError(f"cannot write '{g.name}' as PyTorch code: {e}") from None
    atomic_write_text(args.out, exp.source)
    ins = ", ".join(exp.inputs)
    print(f"wrote {args.out}: class {exp.class_name}, forward({ins}) -> {', '.join(exp.outputs)}")
    return 0
