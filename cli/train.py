"""`specc train` and `specc eval`.

    specc train SPEC [--data PATH] [--epochs E] [--out DIR] [--resume CKPT] [--init CKPT [--init-map OLD=NEW]...]
                     [--set k=v]... [--backend numpy|torch [--device cpu|cuda|auto] [--precision fp32|bf16|fp16]]
    specc eval  SPEC --weights CKPT [--data PATH] [--set k=v]...

`--data` replaces `train.data.train` (train) or the test set (eval); it is a path relative to the current
directory (an .npz, a folder, a table, text, a graph: docs/data.md) or a built-in source such as
`builtin:digits`. eval (and a resumed run) reuse what training derived from its data (category names,
class folders, vocabulary), saved in the checkpoint. Paths inside the spec are relative to the spec's
folder. `--out` defaults to `runs/<spec name>`; the run's own files there (best.npz, last.npz,
history.csv, curves.png, data.json) are replaced, nothing else is touched, and an `--out` naming an existing file
that is not a folder is refused; a resumed run without `--out` continues in its checkpoint's folder.
`--init` loads the matching weights of another run first (runtime/transfer.py). Without a test set in the
spec, `specc eval` needs `--data`.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from compiler.errors import UserError
from compiler.overrides import load_graph

from runtime import data as D
from runtime.checkpoint import load as load_checkpoint
from runtime.memory import ensure_inputs_fit
from runtime.model import Model
from runtime.runs import check_previous_run
from runtime.train import evaluate, fit, make_plan, summary_lines


def _out_dir(args: argparse.Namespace, name: str) -> Path:
    if args.out:
        out = Path(args.out)
    elif getattr(args, "resume", None):
        out = Path(args.resume).parent          # a resumed run continues in its own folder
    else:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"
        out = Path("runs") / safe
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is an existing file, not a folder; specc will not overwrite it",
                        hint="choose another --out folder")
    p = out.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and not p.is_dir():
        raise UserError(f"--out '{out}' cannot be a folder: '{p}' is a file", hint="choose another --out folder")
    return out


def _finished(resume: str, epochs: int | None, graph: Any) -> str | None:
    """The note to print when a resumed run has nothing left to train, else None (fit then checks the
    checkpoint: kind, spec)."""
    from runtime.checkpoint import read_meta
    from runtime.train import STATE_KIND
    meta = read_meta(resume) or {}
    if meta.get("kind") != STATE_KIND or meta.get("spec_hash") != graph.spec_hash:
        return None
    done, goal = meta.get("epoch"), epochs if epochs is not None else meta.get("epochs")
    if isinstance(done, int) and isinstance(goal, int) and done >= goal:
        return (f"nothing to do: '{resume}' has already trained {done} epoch{'s' if done != 1 else ''}"
                f"{f' of {goal}' if goal != done else ''}; nothing was written "
                f"(pass --epochs {done + 10}, say, to train further)")
    return None


def _resume_command(args: argparse.Namespace, last: Path) -> str:
    """The command that continues an interrupted run: same spec, data, --set and --epochs, its --out."""
    words = ["specc", "train", args.spec]
    if args.data:
        words += ["--data", args.data]
    if args.epochs is not None:
        words += ["--epochs", str(args.epochs)]
    for item in args.set or []:
        words += ["--set", item]
    words += ["--resume", str(last)]
    if getattr(args, "backend", "numpy") == "torch":
        words += ["--backend", "torch"] + (["--device", args.device] if args.device != "cpu" else []) + \
                 (["--precision", args.precision] if args.precision != "fp32" else [])
    if args.out:
        words += ["--out", args.out]
    return " ".join(shlex.quote(w) for w in words)


def _init_flags(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """--init CKPT and its --init-map renames, checked against --resume."""
    init, init_map = getattr(args, "init", None), getattr(args, "init_map", None) or []
    if init is not None and args.resume is not None:
        raise UserError("--init starts a new run from other weights; --resume continues one: give only one",
                        code=2)
    if init_map and init is None:
        raise UserError("--init-map renames the weights of --init CKPT, which is missing", code=2)
    return init, init_map


def _check_backend_flags(args: argparse.Namespace) -> None:
    if getattr(args, "backend", "numpy") == "torch":
        from runtime.torch_backend import require_torch
        require_torch()
    elif getattr(args, "nproc", 1) > 1 or _distributed():
        raise UserError("--nproc (and torchrun) train with PyTorch's DistributedDataParallel: add --backend torch",
                        code=2)
    elif getattr(args, "precision", "fp32") != "fp32":
        raise UserError(f"--precision {args.precision} needs --backend torch (the NumPy runtime trains in the "
                        "spec's dtypes)", code=2)


def _train_backend(args: argparse.Namespace, model: Model) -> Any:
    """None for the NumPy runtime (runtime.fit), else the torch backend over `model`'s initial weights (one
    process of a data-parallel run when torch's distributed environment says so)."""
    if getattr(args, "backend", "numpy") != "torch":
        return None
    from runtime.torch_backend.trainer import TorchBackend
    if _distributed():
        from runtime.torch_backend import distributed
        rank, world, device = distributed.init(args.device)
        return TorchBackend(model, device, args.precision, rank=rank, world=world)
    return TorchBackend(model, args.device, args.precision)


def _distributed() -> bool:
    """One of several processes (spawned by --nproc, or by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _train_argv(args: argparse.Namespace) -> list[str]:
    """This train command's arguments for each process of --nproc (the environment tells it its rank)."""
    words = ["train", args.spec]
    for flag, value in (("--data", args.data), ("--epochs", args.epochs), ("--out", args.out),
                        ("--resume", args.resume), ("--init", getattr(args, "init", None)),
                        ("--backend", "torch"), ("--device", args.device), ("--precision", args.precision)):
        if value is not None:
            words += [flag, str(value)]
    for item in getattr(args, "init_map", None) or []:
        words += ["--init-map", item]
    for item in args.set or []:
        words += ["--set", item]
    return words


def _specc(argv: list[str]) -> int:
    """`specc <argv>` in a process of --nproc (spawned: it finds this function by name and imports cli.main)."""
    from .main import main
    return main(argv)


def cmd_train(args: argparse.Namespace) -> int:
    _check_backend_flags(args)
    nproc = getattr(args, "nproc", 1)
    if nproc > 1 and not _distributed():
        load_graph(args.spec, args.set)                 # a bad spec or --set fails here, once
        from runtime.torch_backend import distributed
        return distributed.launch(_specc, _train_argv(args), nproc)
    ok = False
    try:
        code = _train(args)
        ok = code == 0
        return code
    finally:
        if _distributed() and getattr(args, "backend", "numpy") == "torch":
            from runtime.torch_backend import distributed
            distributed.finish(ok)


def _train(args: argparse.Namespace) -> int:
    g = load_graph(args.spec, args.set)
    cfg = g.train
    if cfg is None:
        raise UserError(f"'{args.spec}' has no train section",
                        hint="add train: {objective: <loss node>, optimizer: {type: adam}, data: {train: ...}}")
    if args.epochs is not None and args.epochs < 0:
        raise UserError("--epochs must be 0 or more", code=2)
    if args.resume is not None and not Path(args.resume).is_file():
        raise UserError(f"checkpoint '{args.resume}' not found", hint="resume from a run's last.npz", code=1)
    init, init_map = _init_flags(args)
    out = _out_dir(args, g.name)
    replacing = check_previous_run(out, g, args.resume)
    model = Model(g, seed=cfg.seed)
    quiet = _distributed() and os.environ.get("RANK", "0") != "0"     # data parallel: rank 0 speaks
    if init is not None:
        from runtime.transfer import init_from
        table = init_from(model, init, init_map).table()
        if not quiet:
            print(table)
    ensure_inputs_fit(g, cfg.batch_size)
    plan = make_plan(model, cfg)
    base = Path(args.spec).parent
    if args.data is None and cfg.data.train is None:
        raise UserError("no training data: give --data PATH.npz or train.data.train in the spec",
                        hint="a data set is an .npz with arrays named after the inputs "
                             f"({', '.join(plan.needed)})"
                             + D.builtin_hint(g, plan.needed), code=2)
    derived = None
    if args.resume is not None:                 # the resumed run's categories and vocabulary, unchanged
        from runtime.checkpoint import read_meta
        derived = (read_meta(args.resume) or {}).get("data")
    splits = D.load_splits(g, cfg.data, base, plan.needed, train=args.data, seed=cfg.seed, derived=derived)
    if args.resume is not None and (note := _finished(args.resume, args.epochs, g)) is not None:
        if not quiet:
            print(note)
        return 0
    if replacing and not quiet:
        print(f"replacing the previous run in {out}", file=sys.stderr)
    backend = _train_backend(args, model)
    t0 = time.perf_counter()
    try:
        if backend is None:
            fit(model, splits.train, splits.val, epochs=args.epochs, out_dir=out, resume=args.resume)
        elif backend.rank != 0:               # data parallel: rank 0 writes the files and the log
            from runtime.loop import run
            run(backend, splits.train, splits.val, epochs=args.epochs, out_dir=None, resume=args.resume, log=None,
                progress=False)
            return 0
        else:
            from runtime.loop import run
            run(backend, splits.train, splits.val, epochs=args.epochs, out_dir=out, resume=args.resume)
    except KeyboardInterrupt:
        last = out / "last.npz"
        print("\ninterrupted" + (f"; continue with: {_resume_command(args, last)}" if last.exists() else ""),
              file=sys.stderr)
        return 130
    wall = time.perf_counter() - t0
    if getattr(model, "data_meta", None):       # categories, classes, vocabulary, readable beside the checkpoints
        import json
        from compiler.files import atomic_write_text
        atomic_write_text(out / "data.json", json.dumps(model.data_meta, indent=1) + "\n")
    print(f"done in {wall:.1f}s; wrote {out / 'best.npz'}, {out / 'last.npz'}, {out / 'history.csv'}"
          + (f", {out / 'curves.png'}" if (out / "curves.png").exists() else "")
          + (f", {out / 'data.json'}" if getattr(model, "data_meta", None) else "")
          + "".join(f", {out / f}" for f in ("steps.csv", "steps.jsonl", "tb/") if (out / f).exists()))
    if splits.test is not None:
        res = evaluate(model if backend is None else backend.model, splits.test, config=cfg, plan=plan)
        print(f"test set {splits.test.source} ({res['samples']} samples), "
              f"{'best' if cfg.early_stopping and cfg.early_stopping.restore_best else 'final'} weights:")
        lines = summary_lines(res)
        if "confusion_matrix" not in cfg.metrics:
            lines = [ln for ln in lines if not ln.startswith("confusion")]
        for line in lines:
            print("  " + line.replace("\n", "\n  "))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    g = load_graph(args.spec, args.set)
    torch_backend = getattr(args, "backend", "numpy") == "torch"
    model = Model(g, seed=g.train.seed if g.train else 0) if not torch_backend else None
    if not Path(args.weights).is_file():
        raise UserError(f"checkpoint '{args.weights}' not found", code=1)
    if torch_backend:
        from runtime.torch_backend import load_torch_model
        model, meta = load_torch_model(g, args.weights, args.device)
    else:
        meta = load_checkpoint(model, args.weights)
    from runtime.checkpoint import warn_nonfinite
    warn_nonfinite(model.state_dict(), args.weights)
    if meta.get("spec_hash") and meta["spec_hash"] != g.spec_hash:
        print(f"warning: '{args.weights}' was made from a different version of this spec (or other --set "
              "params); its weights fit, but results may differ", file=sys.stderr)
    from compiler.spec import Train
    cfg = g.train or Train()
    ensure_inputs_fit(g, cfg.batch_size)
    plan = make_plan(model, cfg)
    derived = meta.get("data")                  # what training derived: categories, classes, vocabulary
    if args.data is not None:
        like = cfg.data.test if not isinstance(cfg.data.test, (str, float, type(None))) else cfg.data.train
        ds = D.load(g, args.data, plan.needed, role="test", derived=derived, like=like,
                    like_base=Path(args.spec).parent)
    else:
        splits = D.load_splits(g, cfg.data, Path(args.spec).parent, plan.needed, seed=cfg.seed, want=("test",),
                               derived=derived)
        ds = splits.test
        if ds is None:
            raise UserError("no evaluation data: give --data PATH.npz"
                            + D.builtin_hint(g, plan.needed)
                            + ", or train.data.test in the spec", code=2)
    res = evaluate(model, ds, config=cfg, plan=plan)
    epoch = meta.get("epoch")
    print(f"{g.name}: weights {args.weights}" + (f" (epoch {epoch})" if epoch else "") +
          f", data {ds.source} ({res['samples']} samples)")
    for line in summary_lines(res):
        print(line)
    return 0
