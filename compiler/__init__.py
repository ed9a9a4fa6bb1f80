"""specc's compiler: YAML spec -> validated, expanded, shape-inferred IR (and ONNX)."""
from __future__ import annotations

import sys as _sys

if _sys.argv[:1] == ["-m"] or _sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1].startswith("specc"):
    def _interrupted(kind, value, tb, _hook=_sys.excepthook):
        """The `specc` command interrupted (Ctrl-C) while still starting up, before cli.main.main can
        catch it: one word and exit 130, no traceback. A program that imports compiler keeps Python's way."""
        if issubclass(kind, KeyboardInterrupt):
            import os
            _sys.stderr.write("interrupted\n")
            _sys.stderr.flush()
            os._exit(130)
        _hook(kind, value, tb)
    _sys.excepthook = _interrupted

import gc
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import Loc, ShapeError, SpecError
from .ir import Graph, Node, ParamSpec, Ref, TensorType

__version__ = "0.1.0"
__all__ = ["compile_file", "compile_text", "to_onnx", "Graph", "Node", "TensorType", "ParamSpec", "Ref",
           "SpecError", "ShapeError", "Loc", "__version__"]


@contextmanager
def _no_gc():
    """Compilation allocates many long-lived small objects; cyclic GC passes over them make it quadratic."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compile_file(path: str | Path, params: dict[str, Any] | None = None) -> Graph:
    """Load, validate, expand and shape-check a spec file. Raises SpecError with every problem found."""
    from .expand import compile_tree
    from .load import load_file
    with _no_gc():
        tree, text = load_file(path)
        return compile_tree(tree, str(path), params, text, Path(path).parent)


def compile_text(text: str, base_dir: str | Path = ".", params: dict[str, Any] | None = None,
                 filename: str = "<string>") -> Graph:
    """Compile a spec given as a string; imports are resolved relative to `base_dir`."""
    from .expand import compile_tree
    from .load import load_text
    with _no_gc():
        tree = load_text(text, filename)
        return compile_tree(tree, str(Path(base_dir) / filename) if filename == "<string>" else filename,
                            params, text, Path(base_dir), sources={filename: text,
                                                                    str(Path(base_dir) / filename): text})


def to_onnx(graph: Graph, weights: Any = None, opset: int = 18, outputs: list[str] | None = None,
            optimize: bool = True):
    """Export the inference graph to an onnx.ModelProto (imports onnx on first use). optimize=False keeps
    every parameter as its state_dict tensor (docs/onnx.md)."""
    from .onnx.export import to_onnx as _to_onnx
    return _to_onnx(graph, weights=weights, opset=opset, outputs=outputs, optimize=optimize)
