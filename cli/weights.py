"""`specc weights convert IN --spec SPEC -o OUT.npz`: rename a weights file's arrays into a spec's state_dict
names (compiler/weights_convert.py), print every key's fate, write a checkpoint."""
from __future__ import annotations

import argparse

from compiler.errors import UserError
from compiler.files import guard_output
from compiler.overrides import load_graph
from compiler.weights_convert import (Plan, build_state, parse_maps, plan_mapping, positional_hint, read_source, render,
                                      write_checkpoint)


def cmd_convert(args: argparse.Namespace) -> int:
    graph = load_graph(args.spec, args.set)
    maps = parse_maps(args.map)
    if not args.dry_run:
        if not args.out:
            raise UserError("give -o OUT.npz (or --dry-run to only print the table)", code=2)
        guard_output(args.out, ".npz", reads=(args.input, args.spec))
    source, order = read_source(args.input)
    if not source:
        raise UserError(f"weights file '{args.input}' holds no arrays")
    plan = plan_mapping(graph, source, args.map_by, maps)
    params = {k: tuple(s.shape) for k, (s, _) in graph.params().items()}
    print(f"{args.input} -> spec '{graph.name}' by {args.map_by}"
          + (f" ({order})" if args.map_by == "order" else "") + ":")
    print(render(plan, params))
    n_ok = len(plan.state_keys)
    print(f"{n_ok} of {len(params)} spec parameters filled from {len(source)} source arrays")
    _refuse(plan, args)
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    state = build_state(graph, plan, source)
    write_checkpoint(args.out, graph, state, {"converted_from": str(args.input), "map_by": args.map_by})
    print(f"wrote {args.out}" + (f" (without {len(plan.missing)} spec parameters: load it with "
                                 "runtime.load(model, path, strict=False))" if plan.missing else ""))
    return 0


def _refuse(plan: Plan, args: argparse.Namespace) -> None:
    if plan.problems:
        raise UserError("--map-by shape is ambiguous:\n  " + "\n  ".join(plan.problems),
                        hint="name those arrays with --map OLD=NEW, or use --map-by order")
    bad = [f for f in plan.fates if f.status == "shape mismatch"]
    if bad:
        raise UserError(f"{len(bad)} array{'s' if len(bad) != 1 else ''} would land on a parameter of another "
                        f"shape: " + ", ".join(f"{f.key} {list(f.shape)} -> {f.target} ({f.note})" for f in bad[:5]),
                        hint="the spec's layers differ from the source model's, or the order differs: "
                             "try --map-by shape, or --map OLD=NEW for those keys")
    if plan.missing and not args.allow_missing:
        more = f" and {len(plan.missing) - 8} more" if len(plan.missing) > 8 else ""
        skipped = [f.key for f in plan.fates if f.target is None]
        hint = ("these keys look like an nn.Sequential state_dict: try --map-by order (or --map-by shape)"
                if args.map_by == "name" and positional_hint(skipped) else
                "try --map-by order or --map-by shape, or --map OLD=NEW" if args.map_by == "name"
                else "name them with --map OLD=NEW")
        raise UserError(f"{len(plan.missing)} spec parameter{'s' if len(plan.missing) != 1 else ''} would get no "
                        f"weights: {', '.join(plan.missing[:8])}{more}",
                        hint=hint + "; or --allow-missing to write a partial checkpoint")
