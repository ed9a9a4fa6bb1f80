"""The `specc` command line. Commands that need the runtime or onnx import it when they run,
so `specc check` stays light (no onnx, no onnxruntime)."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import SpecError, UserError


def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs; each value is YAML read with the spec's limits (text that is not YAML
    stays a string). A malformed or oversized value is a usage error (exit 2)."""
    from .expr import ExprError, check_value
    from .load import load_value
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got '{_clip(item)}'", code=2)
        key = key.strip()
        try:
            out[key] = load_value(value, f"--set {key}") if value.strip() else ""
            check_value(out[key])
        except SpecError as e:
            d = e.diagnostics[0]
            raise UserError(f"--set {_clip(key)}: {d.message.removeprefix(f'--set {key}: ')}", d.hint,
                            code=2) from None
        except ExprError as e:
            raise UserError(f"--set {_clip(key)}: {e.message}", e.hint, code=2) from None
    return out


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def load_graph(path: str, sets: Sequence[str] | None = None):
    from . import compile_file
    params = parse_set(sets)                # a malformed --set is a usage error (2), whatever the file
    if not Path(path).exists():
        raise UserError(f"no such spec file: '{path}'")
    if Path(path).is_dir():
        raise UserError(f"'{path}' is a folder, not a spec file",
                        hint=f"check every spec in it with: python tools/shape_check.py {path}")
    return compile_file(path, params=params)


# -- commands implemented here ----------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from .summary import as_json
    status, reports = 0, []
    for path in args.spec:
        try:
            g = load_graph(path, args.set)
        except SpecError as e:
            print(e.render(), file=sys.stderr)
            n = len(e.diagnostics)
            print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
            status = 1
            if args.json:
                reports.append({"file": path, "status": "error", "errors": [
                    {"file": d.loc.file if d.loc else path, "line": d.loc.line if d.loc else None,
                     "col": d.loc.col if d.loc else None, "message": d.message, "hint": d.hint}
                    for d in e.diagnostics]})
            continue
        except UserError as e:
            if e.code != 1:                 # a usage error (a malformed --set) is the same for every spec
                raise
            print(e.render(), file=sys.stderr)     # a missing file: the other specs are still checked
            status = 1
            if args.json:
                reports.append({"file": path, "status": "error", "errors": [
                    {"file": path, "line": None, "col": None, "message": e.message, "hint": e.hint}]})
            continue
        if args.json:
            reports.append(as_json(g, args.batch) | {"file": path, "status": "ok", "errors": []})
        else:
            print(g.summary(batch=args.batch))
            if len(args.spec) > 1:
                print()
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    from .schema import json_schema
    text = json.dumps(json_schema(), indent=2)
    if args.output:
        from .files import atomic_write_text, guard_output
        guard_output(args.output, ".json")
        atomic_write_text(args.output, text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A command implemented elsewhere ('module:function'), imported only when it runs."""
    def run(args: argparse.Namespace) -> int:
        module, func = target.split(":")
        return getattr(importlib.import_module(module), func)(args)
    return run


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="specc", description="Declarative neural-network specs: check, compile, "
                                "train, run.")
    p.add_argument("--version", action="version", version=f"specc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, handler: Callable, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(handler=handler)
        return sp

    def sets(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec param")

    sp = add("check", cmd_check, "validate, expand and shape-check specs; print the layer table and totals")
    sp.add_argument("spec", nargs="+")
    sets(sp)
    sp.add_argument("--batch", type=positive_int, default=1, help="batch size for the training-memory estimate")
    sp.add_argument("--json", action="store_true",
                    help="machine-readable output: an object per spec (a list when several are given)")

    sp = add("compile", lazy("compiler.onnx.commands:cmd_compile"), "export the inference graph to ONNX")
    sp.add_argument("spec")
    sp.add_argument("-o", "--out", required=True, metavar="OUT.onnx")
    sp.add_argument("--weights", metavar="CKPT.npz")
    sp.add_argument("--opset", type=int, default=18)
    sp.add_argument("--output", action="append", metavar="NAME", help="export only these outputs (repeatable)")
    sp.add_argument("--verify", action="store_true", help="compare onnxruntime with the NumPy runtime")
    sp.add_argument("--no-optimize", dest="optimize", action="store_false",
                    help="keep every parameter as its state_dict tensor: no folding of weight transforms, "
                    "no batch-norm fusion (by default they are folded, as torch.onnx.export does)")
    sets(sp)

    sp = add("train", lazy("runtime.commands:cmd_train"), "train with the NumPy runtime as the spec's train section says")
    sp.add_argument("spec")
    sp.add_argument("--data", metavar="PATH")
    sp.add_argument("--epochs", type=positive_int)
    sp.add_argument("--out", default=None, metavar="DIR")
    sp.add_argument("--resume", metavar="CKPT")
    sets(sp)

    sp = add("eval", lazy("runtime.commands:cmd_eval"), "loss and metrics of a checkpoint on a data set")
    sp.add_argument("spec")
    sp.add_argument("--weights", required=True, metavar="CKPT")
    sp.add_argument("--data", metavar="PATH")
    sets(sp)

    sp = add("run", lazy("runtime.inference:cmd_run"), "inference with the NumPy runtime or onnxruntime")
    sp.add_argument("model", metavar="SPEC|MODEL.onnx")
    sp.add_argument("--weights", metavar="CKPT")
    sp.add_argument("--input", action="append", metavar="NAME=FILE.npy", default=[])
    sp.add_argument("-o", "--out", metavar="OUT.npz")
    sp.add_argument("--backend", choices=["numpy", "onnxruntime"])
    sets(sp)

    sp = add("graph", lazy("compiler.graphviz:cmd_graph"), "draw the graph (dot, mmd, svg, png)")
    sp.add_argument("spec")
    sp.add_argument("-o", "--out", required=True, metavar="FILE")
    sets(sp)

    sp = add("schema", cmd_schema, "print the JSON Schema of the spec language")
    sp.add_argument("-o", "--output", metavar="FILE")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except SpecError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except UserError as e:
        print(e.render(), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
