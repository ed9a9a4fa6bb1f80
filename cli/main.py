"""The `specc` command line: the parser and the dispatch. Each command lives in the module of its family
(cli/check.py, cli/train.py, ...), imported only when it runs, so `specc check` stays light (no onnx, no
onnxruntime, no runtime)."""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import Any, Callable, Sequence

from compiler.errors import SpecError, UserError
from compiler.overrides import clip


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{clip(text)}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {MAX_COUNT:,}, got '{clip(text)}'")
    return value


MAX_COUNT = 10 ** 12           # --batch, --epochs: far beyond any real run, small enough for every estimate


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A command implemented elsewhere ('module:function'), imported only when it runs."""
    def run(args: argparse.Namespace) -> int:
        module, func = target.split(":")
        return getattr(importlib.import_module(module), func)(args)
    return run


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from compiler import __version__
    p = argparse.ArgumentParser(prog="specc", description="Declarative neural-network specs: check, compile, "
                                "train, run.")
    p.add_argument("--version", action="version", version=f"specc {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error (also accepted "
                   "after the command; or set SPECC_DEBUG=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for family in (_spec_commands, _training_commands, _model_commands, _picture_commands, _analysis_commands,
                   _tool_commands):
        family(sub)
    return p


def add(sub: Any, name: str, handler: Callable | None, help_: str) -> argparse.ArgumentParser:
    sp = sub.add_parser(name, help=help_, description=help_)
    sp.set_defaults(handler=handler)
    return sp


def trained(sp: argparse.ArgumentParser) -> None:
    """The spec and its trained weights: what every command that uses a trained model takes first."""
    sp.add_argument("spec")
    sp.add_argument("--weights", required=True, metavar="CKPT", help="trained weights (a run's best.npz)")


def scores(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--output", metavar="NAME",
                    help="the class scores (default train.predict, else the first output)")


def sets(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec param, or any train key "
                    "as train.KEY (dotted: train.optimizer.lr=3e-4)")


def _spec_commands(sub: Any) -> None:
    """check, compile, import: a spec on its own"""
    sp = add(sub, "check", lazy("cli.check:cmd_check"), "validate, expand and shape-check specs; print the layer table and totals")
    sp.add_argument("spec", nargs="+")
    sets(sp)
    sp.add_argument("--batch", type=positive_int, default=1, help="batch size for the training-memory estimate")
    sp.add_argument("--json", action="store_true",
                    help="machine-readable output: an object per spec (a list when several are given)")
    sp.add_argument("--depth", type=positive_int, metavar="K", help="collapse the nodes of block instances "
                    "nested deeper than K (names with more than K dotted parts) into one row with subtotals")
    sp.add_argument("--columns", metavar="ATTR,...", help="extra attribute columns, e.g. kernel,stride,padding")
    sp.add_argument("--werror", action="store_true", help="treat warnings as errors (exit 1)")
    sp.add_argument("--explain", metavar="NODE", help="print the formula behind NODE's output shape, with the "
                    "numbers and where each came from")

    sp = add(sub, "compile", lazy("cli.compile:cmd_compile"), "export the inference graph to ONNX")
    sp.add_argument("spec")
    sp.add_argument("-o", "--out", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    sp.add_argument("--weights", metavar="CKPT.npz", help="trained weights to embed (default: the spec's initial "
                    "values, seed from train.seed)")
    sp.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    sp.add_argument("--output", action="append", metavar="NAME", help="export only these outputs (repeatable)")
    sp.add_argument("--verify", action="store_true", help="compare onnxruntime with the NumPy runtime")
    sp.add_argument("--no-optimize", dest="optimize", action="store_false",
                    help="keep every parameter as its state_dict tensor: no folding of weight transforms, "
                    "no batch-norm fusion (by default they are folded, as torch.onnx.export does)")
    sets(sp)

    sp = add(sub, "import", lazy("cli.onnx_import:cmd_import"),
             "turn an ONNX model into a spec (and its weights into a checkpoint)")
    sp.add_argument("model", metavar="MODEL.onnx")
    sp.add_argument("-o", "--out", required=True, metavar="SPEC.yaml", help="the spec to write")
    sp.add_argument("--weights", metavar="OUT.npz", help="also write the model's weights as a checkpoint")
    sp.add_argument("--name", help="the spec's name (default: the model file's name)")


def _training_commands(sub: Any) -> None:
    """train, sweep, eval"""
    sp = add(sub, "train", lazy("cli.train:cmd_train"), "train with the NumPy runtime (or --backend torch) as the spec's train section says")
    sp.add_argument("spec")
    sp.add_argument("--data", metavar="PATH", help="training data: an .npz, a folder of .npy, a CSV table, an image "
                    "folder, text (docs/data.md) or builtin:NAME (default: train.data.train in the spec)")
    sp.add_argument("--epochs", type=positive_int, help="train this many epochs in all (default: train.epochs)")
    sp.add_argument("--out", default=None, metavar="DIR", help="the run folder for best.npz, last.npz, history.csv, "
                    "curves.png and train.log's steps files (default runs/NAME)")
    sp.add_argument("--resume", metavar="CKPT", help="continue an interrupted run from its last.npz")
    sp.add_argument("--init", metavar="CKPT", help="start from the matching weights of another run (any spec)")
    sp.add_argument("--init-map", action="append", default=[], metavar="OLD=NEW",
                    help="rename checkpoint weights for --init (globs: backbone.*=features.*; repeatable)")
    sets(sp)
    sp.add_argument("--backend", choices=["numpy", "torch"], default="numpy", help="torch: needs specc[torch]")
    sp.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu", help="with --backend torch")
    sp.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="with --backend torch: autocast the forward pass (fp16 adds a gradient scaler)")
    sp.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                    help="with --backend torch: N data-parallel processes on this machine (torch.distributed)")

    sp = add(sub, "sweep", lazy("cli.sweep:cmd_sweep"), "train once per combination of --grid values; a table "
             "of results sorted by the monitored metric")
    sp.add_argument("spec")
    sp.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="a spec param or train.KEY and its "
                    "values (repeatable: every combination is trained)")
    sp.add_argument("--out", default=None, metavar="DIR", help="default runs/<spec name>-sweep")
    sp.add_argument("--epochs", type=positive_int, help="epochs of every run (default: train.epochs)")
    sp.add_argument("--data", metavar="PATH", help="training data of every run (default: train.data.train)")
    sets(sp)

    sp = add(sub, "eval", lazy("cli.train:cmd_eval"), "loss and metrics of a checkpoint on a data set")
    sp.add_argument("spec")
    sp.add_argument("--weights", required=True, metavar="CKPT", help="the weights to score (a run's best.npz)")
    sp.add_argument("--data", metavar="PATH", help="a data source (docs/data.md) or builtin:NAME (default: train.data.test "
                    "in the spec)")
    sets(sp)
    sp.add_argument("--backend", choices=["numpy", "torch"], default="numpy", help="torch: needs specc[torch]")
    sp.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu", help="with --backend torch")


def _model_commands(sub: Any) -> None:
    """run, export-torch, data"""
    sp = add(sub, "run", lazy("cli.run:cmd_run"),
             "inference with the NumPy runtime, onnxruntime or PyTorch, on given inputs or a data source")
    sp.add_argument("model", metavar="SPEC|MODEL.onnx")
    sp.add_argument("--weights", metavar="CKPT", help="a spec's trained weights (a run's best.npz; needed with a spec)")
    sp.add_argument("--input", action="append", metavar="NAME=FILE.npy", default=[],
                    help="an input's values from a .npy file (one per input the outputs need; repeatable)")
    sp.add_argument("--data", metavar="SOURCE", help="run over a data source (docs/data.md) instead of --input")
    sp.add_argument("-o", "--out", metavar="OUT.npz", help="save the outputs (default: print a preview of them)")
    sp.add_argument("--backend", choices=["numpy", "onnxruntime", "torch"], help="numpy (the runtime), onnxruntime or torch "
                    "(default: numpy for a spec, onnxruntime for an .onnx file)")
    sp.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu", help="with --backend torch")
    sets(sp)

    sp = add(sub, "export-torch", lazy("cli.export_torch:cmd_export_torch"),
             "write the spec as a standalone, readable PyTorch file (nn.Module classes, specc's state_dict names)")
    sp.add_argument("spec")
    sp.add_argument("-o", "--out", required=True, metavar="MODEL.py", help="the Python file to write")
    sp.add_argument("--output", action="append", metavar="NAME",
                    help="forward returns these (a spec output, node, node:port or loss; repeatable)")
    sets(sp)

    data = add(sub, "data", lambda a: a.data_handler(a), "data sets: the built-in ones, what specc feeds a spec "
               "(docs/data.md, docs/builtin-data.md)")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data_sub.required = True

    about = "what specc will feed each input: shapes, dtypes, ranges, class balance, split sizes (no training)"
    sp = data_sub.add_parser("inspect", help=about, description=about)
    sp.set_defaults(data_handler=lazy("cli.data:cmd_inspect"))
    sp.add_argument("spec")
    sp.add_argument("--data", metavar="SOURCE", help="the training data instead of train.data.train")
    sets(sp)
    about = "the built-in data sets: parts, arrays (shape, dtype), options"
    sp = data_sub.add_parser("list", help=about, description=about)
    sp.set_defaults(data_handler=lazy("cli.data:cmd_list"))
    sp.add_argument("name", nargs="*", metavar="NAME", help="only these sets")


def _picture_commands(sub: Any) -> None:
    """graph, generate, sample, interpolate, saliency"""
    sp = add(sub, "graph", lazy("cli.graph:cmd_graph"), "draw the graph (dot, mmd, svg, png, pdf)")
    sp.add_argument("spec")
    sp.add_argument("-o", "--out", required=True, metavar="FILE", help="the picture: .dot, .mmd (Mermaid), .svg, "
                    ".png or .pdf (the last three need Graphviz's dot)")
    sp.add_argument("--depth", type=positive_int, metavar="K", help="draw the nodes of block groups deeper than K "
                    "(names with more than K dotted parts) as one box each (default: every node up to 60, else "
                    "the deepest level that fits)")
    sp.add_argument("--full", action="store_true", help="draw every node, however many")
    sp.add_argument("--rankdir", choices=["TB", "LR", "BT", "RL"], default="TB",
                    help="layout direction: top to bottom (default) or left to right, ...")
    sets(sp)

    sp = add(sub, "generate", lazy("cli.use:cmd_generate"),
             "decode token sequences from a trained seq2seq or decoder-only model (the spec's generate: section)")
    trained(sp)
    sp.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy|NAME=1,5,7",
                    help="an encoder input as an array file, or one sequence of token ids; the feed input given "
                    "this way is a prompt to continue (repeatable)")
    sp.add_argument("--strategy", choices=["greedy", "beam", "sample"], default="greedy",
                    help="greedy: the most likely token each step; beam: beam search; sample: draw from the "
                    "softmax (default greedy)")
    sp.add_argument("--beam", type=positive_int, default=4, metavar="K", help="beam width (default 4)")
    sp.add_argument("--temperature", type=float, default=1.0, metavar="T",
                    help="sample: divide the logits by T (below 1: surer, above 1: more varied)")
    sp.add_argument("--top-k", type=positive_int, metavar="K", help="sample: only from the K most likely tokens")
    sp.add_argument("--max-len", type=positive_int, metavar="L",
                    help="at most L generated tokens (default generate.max_len)")
    sp.add_argument("--seed", type=int, default=0, metavar="S", help="random seed for sampling (default 0)")
    sp.add_argument("--vocab", metavar="FILE", help="print words: a file with one word per line (line i = id i)")
    sp.add_argument("-o", "--out", metavar="OUT.npz", help="save tokens [N, L] (padded), lengths, scores")
    sets(sp)

    for name, what in (("sample", "decode latent codes drawn from N(0, I): a VAE's decoder, a GAN's generator "
                                  "(class-conditional with --class); a PNG grid and the arrays"),
                       ("interpolate", "decode the codes on the line between two inputs' codes; a PNG grid and "
                                       "the arrays")):
        sp = add(sub, name, lazy(f"cli.use:cmd_{name}"), what)
        trained(sp)
        if name == "sample":
            sp.add_argument("--n", type=positive_int, default=16, help="how many samples (default 16)")
            sp.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the codes (default 0)")
        else:
            sp.add_argument("--input", action="append", required=True, metavar="NAME=a.npy",
                            help="one end: the input(s) encoded to the first code (a batch gives one row each)")
            sp.add_argument("--input2", action="append", required=True, metavar="NAME=b.npy",
                            help="the other end, the same inputs")
            sp.add_argument("--steps", type=positive_int, default=8, help="codes per row, ends included (default 8)")
        sp.add_argument("--class", dest="cls", type=int, metavar="K",
                        help="a class-conditional generator's class (default: " + (
                            "every class in turn)" if name == "sample" else "the class input given with --input)"))
        sp.add_argument("--latent", metavar="NODE|INPUT", help="the latent code (default: the only train.noise "
                        "input, or the only reparameterize node)")
        sp.add_argument("--output", metavar="NAME", help="what to draw (default: the first output that depends "
                        "on the code)")
        sp.add_argument("-o", "--out", required=True, metavar="OUT.png", help="the grid; OUT.npz is written beside it")
        sets(sp)

    sp = add(sub, "saliency", lazy("cli.use:cmd_saliency"),
             "saliency map: max over channels of |d class score / d input|, a heat map over each image")
    trained(sp)
    sp.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                    help="the image(s) [N, C, H, W], and any other input the scores need (repeatable)")
    sp.add_argument("--class", dest="cls", type=int, metavar="K", help="the class whose score is explained "
                    "(default: each image's predicted class)")
    scores(sp)
    sp.add_argument("--input-name", metavar="NAME", help="the input to explain (default: the only float input)")
    sp.add_argument("-o", "--out", required=True, metavar="OUT.png", help="the heat maps; OUT.npy beside it holds "
                    "the maps [N, H, W]")
    sets(sp)


def _analysis_commands(sub: Any) -> None:
    """attack, neighbors, attention, boundary"""
    sp = add(sub, "attack", lazy("cli.use:cmd_attack"),
             "FGSM/PGD adversarial examples: accuracy and success rate per epsilon, a before/after picture")
    trained(sp)
    sp.add_argument("--data", metavar="SRC", help="the examples to attack: a data source (docs/data.md) or builtin:NAME "
                    "(default: the spec's test set, else its training data)")
    sp.add_argument("--method", choices=["fgsm", "pgd"], default="fgsm", help="one signed-gradient step (fgsm) or "
                    "--steps projected steps (pgd); default fgsm")
    sp.add_argument("--eps", default="0.05,0.1,0.2", metavar="E1,E2,...",
                    help="L-infinity bounds, comma separated (default 0.05,0.1,0.2)")
    sp.add_argument("--steps", type=positive_int, default=10, help="pgd: steps (default 10)")
    sp.add_argument("--alpha", type=float, metavar="A", help="pgd: step size (default 2.5 * eps / steps)")
    sp.add_argument("--target", type=int, metavar="K", help="targeted: push every input towards class K")
    sp.add_argument("--clip", metavar="LO,HI", help="valid input range (default: the data's min and max)")
    sp.add_argument("--limit", type=positive_int, default=500, metavar="N", help="attack the first N examples "
                    "(default 500)")
    scores(sp)
    sp.add_argument("--input-name", metavar="NAME", help="the input to perturb (default: the only float input)")
    sp.add_argument("-o", "--out", metavar="OUT.png", help="before/after picture; OUT.npz beside it holds the table "
                    "and the attacked examples")
    sets(sp)

    sp = add(sub, "neighbors", lazy("cli.use:cmd_neighbors"),
             "nearest neighbours and analogies (a - b + c) in a trained embedding table")
    trained(sp)
    sp.add_argument("--table", metavar="NODE", help="the embedding node (default: the spec's only one) or a "
                    "parameter name")
    sp.add_argument("--vocab", metavar="FILE", help="one word per line: line i names token i")
    sp.add_argument("--word", metavar="W", help="the query word (needs --vocab) or token id")
    sp.add_argument("--index", type=int, metavar="I", help="the query token id")
    sp.add_argument("--analogy", metavar="A,B,C", help="the words nearest to A - B + C (king,man,woman)")
    sp.add_argument("--k", type=positive_int, default=10, help="how many neighbours (default 10)")
    sp.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine",
                    help="cosine similarity or Euclidean distance (default cosine)")
    sets(sp)

    sp = add(sub, "attention", lazy("cli.use:cmd_attention"),
             "heat map of a transformer/ViT attention layer's weights (query x key positions)")
    trained(sp)
    sp.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy|NAME=1,5,7",
                    help="the model's inputs (repeatable)")
    sp.add_argument("--node", metavar="NAME", help="a multi_head_attention node or a block holding one "
                    "(default: the first)")
    sp.add_argument("--vocab", metavar="FILE", help="label the axes with words (one per line)")
    sp.add_argument("-o", "--out", required=True, metavar="OUT.png", help="the heat map; OUT.npy beside it holds "
                    "the weights [N, Tq, Tk]")
    sets(sp)

    sp = add(sub, "boundary", lazy("cli.use:cmd_boundary"),
             "decision regions of a classifier of 2-D points, with the data on top")
    trained(sp)
    sp.add_argument("--data", metavar="SRC", help="the points to draw: a data source (docs/data.md) or builtin:NAME "
                    "(default: the spec's test set, else its training data)")
    sp.add_argument("--resolution", type=positive_int, default=200, help="grid points per axis (default 200)")
    scores(sp)
    sp.add_argument("--input-name", metavar="NAME", help="the 2-D input (default: the only float input)")
    sp.add_argument("-o", "--out", required=True, metavar="OUT.png", help="the picture; OUT.npz beside it holds "
                    "the grid and the points")
    sets(sp)


def _tool_commands(sub: Any) -> None:
    """weights, init, completion, schema"""
    sp = add(sub, "weights", None, "weights from elsewhere: convert a PyTorch/NumPy/safetensors state_dict into a "
             "checkpoint of a spec")
    wsub = sp.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True
    sp = wsub.add_parser("convert", help="rename a weights file's arrays into the spec's state_dict names",
                         description="rename a weights file's arrays (.npz, .safetensors, .pt/.pth state_dict) into "
                         "the spec's state_dict names and write a specc checkpoint; prints every key's fate")
    sp.set_defaults(handler=lazy("cli.weights:cmd_convert"))
    sp.add_argument("input", metavar="IN", help="the weights: .npz, .safetensors, or .pt/.pth (needs torch)")
    sp.add_argument("--spec", required=True, metavar="SPEC", help="the spec whose parameter names to fill")
    sp.add_argument("-o", "--out", metavar="OUT.npz", help="the checkpoint to write (for specc eval/compile "
                    "--weights, runtime.load)")
    sp.add_argument("--map-by", choices=["name", "order", "shape"], default="name",
                    help="name: keys equal to the spec's names; order: the i-th array to the i-th parameter (an "
                    "nn.Sequential state_dict); shape: the one array of each parameter's shape (default name)")
    sp.add_argument("--map", action="append", metavar="OLD=NEW", help="rename a key or a key prefix first "
                    "(features.0=conv1); repeatable")
    sp.add_argument("--dry-run", action="store_true", help="print the table of every key's fate, write nothing")
    sp.add_argument("--allow-missing", action="store_true", help="write a checkpoint even when spec parameters "
                    "get no weights (load it with strict=False)")
    sets(sp)

    sp = add(sub, "init", lazy("cli.scaffold:cmd_init"), "write a commented starter spec that checks and "
             "trains as written on built-in data")
    sp.add_argument("kind", nargs="?", default="classifier", choices=["classifier", "cnn", "autoencoder", "seq2seq",
                    "gnn"], help="what to start from (default classifier)")
    sp.add_argument("name", metavar="NAME", help="the model's name; the file is NAME.yaml")
    sp.add_argument("-o", "--out", default=".", metavar="DIR", help="the folder to write NAME.yaml in (default: "
                    "the current one); an existing file is never overwritten")

    sp = add(sub, "completion", lazy("cli.completion:cmd_completion"), "print a shell completion script "
             "(generated from this command line's parser)")
    sp.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")

    sp = add(sub, "schema", lazy("cli.check:cmd_schema"), "print the JSON Schema of the spec language")
    sp.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE (default: print it)")



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
