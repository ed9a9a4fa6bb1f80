"""The `specc` command line. Commands that need the runtime or onnx import it when they run,
so `specc check` stays light (no onnx, no onnxruntime)."""
from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
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
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{_clip(text)}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {MAX_COUNT:,}, got '{_clip(text)}'")
    return value


MAX_COUNT = 10 ** 12           # --batch, --epochs: far beyond any real run, small enough for every estimate


def load_graph(path: str, sets: Sequence[str] | None = None):
    from . import compile_file
    params = parse_set(sets)                # a malformed --set is a usage error (2), whatever the file
    try:
        exists, is_dir = Path(path).exists(), Path(path).is_dir()
    except (OSError, ValueError) as e:      # a NUL character, a name too long for the file system
        raise UserError(f"cannot read '{_clip(path)}': {getattr(e, 'strerror', None) or e}") from None
    if not exists:
        raise UserError(f"no such spec file: '{path}'")
    if is_dir:
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
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error (also accepted "
                   "after the command; or set SPECC_DEBUG=1)")
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
    """Run one command; returns the exit code: 0 ok, 1 a problem with a spec, file or data, 2 usage,
    3 an internal error (a bug in specc: one line, or the traceback with --debug), 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _take_debug(argv) or os.environ.get("SPECC_DEBUG", "") not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        code = args.handler(args)
    except SpecError as e:
        return _say(e.render(), 1)
    except UserError as e:
        return _say(e.render(), e.code)
    except KeyboardInterrupt:
        return _say("interrupted", 130)
    except BrokenPipeError:                # `specc check x.yaml | head`: the reader has gone
        _drop_stdout()
        return 0
    except OSError as e:
        if e.errno in _FULL:               # printing to a full disk (`specc check x.yaml > /dev/full`)
            return _output_error(e)
        return _internal_error(e, debug)
    except Exception as e:                 # a bug: one line for the user, never a traceback unless asked
        return _internal_error(e, debug)
    try:
        sys.stdout.flush()                 # a full disk or closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        _drop_stdout()
    except (OSError, ValueError) as e:
        return _output_error(e)
    return code


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _output_error(e: Exception) -> int:
    _drop_stdout()
    return _say(f"error: cannot write the output: {getattr(e, 'strerror', None) or e}", 1)


def _take_debug(argv: list[str]) -> bool:
    """Remove the global --debug flag (before or after the command name, not after '--')."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = "--debug" in argv[:end]
    argv[:end] = [a for a in argv[:end] if a != "--debug"]
    return found


def _internal_error(e: BaseException, debug: bool) -> int:
    if debug:
        import traceback
        traceback.print_exception(e, file=sys.stderr)
    text = " ".join(str(e).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    hint = "" if debug else " (run again with --debug for the traceback)"
    return _say(f"specc: internal error: {type(e).__name__}: {text} — please report this{hint}", 3)


def _say(text: str, code: int) -> int:
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):
        pass
    return code


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
