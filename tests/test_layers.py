"""The layers point one way (docs/architecture.md): `compiler` imports only itself, `runtime` imports `compiler`
and itself, the command line (`cli`) imports anything. Every module's source is parsed, so an import inside a
function counts, and so does a module named in a string for importlib or the command line's
lazy("module:function") dispatch."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("compiler", "runtime", "cli")
ALLOWED = {"compiler": {"compiler"}, "runtime": {"compiler", "runtime"}, "cli": set(LAYERS)}
LAZY_TARGET = re.compile(r"^([A-Za-z_]\w*)(\.\w+)*:")            # "runtime.use.sample:cmd_" (also an f-string's head)
DOTTED = re.compile(r"^(compiler|runtime|cli)(\.\w+)+$")          # a whole string naming a module: "runtime.train"
MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import of `module`'s source, at any depth, and every module named in a string
    given to importlib.import_module / __import__, written as a lazy "module:function" target, or a whole string
    that is a dotted module path of a layer (a table of lazy imports: {"fit": ("runtime.train", "fit")})."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and MODULE_NAME.match(arg.value):
                found.append((node.lineno, arg.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY_TARGET.match(node.value):
            found.append((node.lineno, node.value.partition(":")[0]))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
            found.append((node.lineno, node.value))
    return found


def _is_import_call(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


def back_edges(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of `module` that point up or sideways against the layers."""
    layer = module.split(".")[0]
    return [f"{module}:{line} imports {target}" for line, target in imported_modules(source, module, is_package)
            if target.split(".")[0] in LAYERS and target.split(".")[0] not in ALLOWED[layer]]


def modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


def test_every_package_is_a_layer():
    assert all((ROOT / layer / "__init__.py").is_file() for layer in LAYERS)
    assert len(modules()) > 100


def test_imports_point_down_only():
    bad = [edge for p in modules()
           for edge in back_edges(p.read_text(encoding="utf-8"), module_name(p), p.name == "__init__.py")]
    assert not bad, "imports against the layers (compiler <- runtime <- cli):\n" + "\n".join(bad)


@pytest.mark.parametrize("module, source", [
    ("compiler.onnx.export", "def f():\n    from runtime.model import Model\n"),
    ("compiler.onnx.export", "def f():\n    import runtime.memory as m\n"),
    ("compiler.ops.registry", "def f():\n    from ...runtime import Model\n"),
    ("compiler.x", "import importlib\ndef f():\n    return importlib.import_module('runtime.model')\n"),
    ("runtime.use.common", "def f():\n    from cli.main import main\n"),
    ("runtime.sweep", "HANDLER = 'cli.sweep:cmd_sweep'\n"),
    ("runtime.sweep", "def f(name):\n    return lazy(f'cli.use:cmd_{name}')\n"),
    ("compiler.onnx", "_LAZY = {'Model': ('runtime.model', 'Model')}\n"),
    ("compiler", "import runtime\n"),
])
def test_a_back_edge_is_found(module, source):
    is_package = module == "compiler"
    assert back_edges(source, module, is_package), source


@pytest.mark.parametrize("module, source", [
    ("runtime.model", "from compiler.ir import Graph\nfrom .tensor import Tensor\n"),
    ("cli.train", "from runtime.train import fit\nfrom compiler.overrides import load_graph\n"),
    ("compiler.onnx.export", "from ..ir import Graph\nfrom . import LOWERINGS\nimport onnx\n"),
    ("runtime.sweep", "NOTE = 'specc sweep: runtime.sweep does the work'\n"),
])
def test_an_allowed_import_is_not(module, source):
    assert not back_edges(source, module)


def test_every_command_the_parser_names_exists():
    """Each lazy("module:function") of the dispatch names a function that is there (a moved command would
    otherwise fail only when a user runs it)."""
    import importlib
    tree = ast.parse((ROOT / "cli" / "main.py").read_text(encoding="utf-8"))
    targets = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and re.match(r"^cli(\.\w+)+:\w+$", n.value)}
    targets.discard("cli.use:cmd_")                                                 # an f-string's head: its
    targets |= {f"cli.use:cmd_{name}" for name in ("sample", "interpolate")}     # two commands
    assert len(targets) > 20
    missing = [t for t in sorted(targets) if not callable(getattr(importlib.import_module(t.split(":")[0]),
                                                                  t.split(":")[1], None))]
    assert not missing
