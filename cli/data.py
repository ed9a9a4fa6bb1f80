"""`specc data inspect SPEC [--data SOURCE]` (what specc will feed each input, without training; read and
checked exactly as `specc train` does: runtime/data/inspect.py) and `specc data list [NAME]` (the built-in
data sets: runtime/data/builtin_list.py)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from compiler.errors import UserError, did_you_mean
from compiler.overrides import load_graph
from runtime.data.builtin import BUILTIN, BUILTINS
from runtime.data.builtin_list import format_list
from runtime.data.check import needed_inputs
from runtime.data.inspect import describe_derived, describe_split
from runtime.data.sources import describe, load_splits


def _refs(cfg: Any) -> list[str]:
    refs: list[str] = []
    for obj in [cfg.objective] + [p.objective for p in cfg.phases or []]:
        if obj is not None:
            refs += [obj] if isinstance(obj, str) else list(obj)
    return refs + [r for r in (cfg.predict, cfg.target) if r]


def cmd_inspect(args: argparse.Namespace) -> int:
    from compiler.spec import Train
    g = load_graph(args.spec, args.set)
    cfg = g.train or Train()
    refs = _refs(cfg)
    needed = [k for k in (needed_inputs(g, refs) if refs else list(g.inputs)) if k not in cfg.noise]
    if args.data is None and cfg.data.train is None:
        raise UserError(f"'{args.spec}' names no training data (train.data.train)",
                        hint="give one: specc data inspect SPEC --data SOURCE", code=2)
    splits = load_splits(g, cfg.data, Path(args.spec).parent, needed, train=args.data, seed=cfg.seed)
    derived = splits.train.meta.get("derived", {}) if splits.train is not None else {}
    src = args.data if args.data is not None else describe(cfg.data.train)
    print(f"{g.name}: data {src}; inputs fed: {', '.join(needed)}")
    sizes = [f"{k} {len(v) if v is not None else '-'}" for k, v in
             (("train", splits.train), ("val", splits.val), ("test", splits.test))]
    print("split sizes: " + ", ".join(sizes))
    for what in ("train", "val", "test"):
        ds = getattr(splits, what)
        if ds is not None:
            print()
            print("\n".join(describe_split(what, ds, derived)))
    lines = describe_derived(derived)
    if lines:
        print()
        print("derived from the training data (saved with the checkpoint):")
        for ln in lines:
            print("  " + ln)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    names = getattr(args, "name", None) or None
    if names:
        names = [n[len(BUILTIN):] if n.startswith(BUILTIN) else n for n in names]
        for n in names:
            if n not in BUILTINS:
                raise UserError(f"unknown built-in data set '{n}'",
                                hint=did_you_mean(n, BUILTINS) or f"built-in data sets: {', '.join(BUILTINS)}",
                                code=2)
    print(format_list(names))
    return 0
