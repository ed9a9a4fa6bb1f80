"""Spec files as modules: loading one, and its `imports:` (std: libraries, relative paths kept inside the
spec's folder, cycles refused)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Loc, SpecError, did_you_mean
from ..load import SMap, load_file
from ..spec import BlockSpec, Library, Spec
from .diagnose import Compiler

STD_LIB = Path(__file__).resolve().parent.parent.parent / "specs" / "lib"
SYMBOL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}\Z")     # at most limits.NAME_CHARS characters
BLOCK_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*\Z")        # use: conv-bn needs no expression


@dataclass
class Module:
    path: str
    tree: SMap
    spec: Spec | Library
    root: Path
    imports: dict[str, "Module"] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)      # imports that failed (already reported)
    env: dict[str, Any] | None = None                   # the top spec's params as evaluated, --set applied

    def block(self, name: str) -> tuple[BlockSpec, "Module", SMap] | None:
        if "." in name:
            alias, rest = name.split(".", 1)
            mod = self.imports.get(alias)
            return mod.block(rest) if mod else None
        if name in self.spec.blocks:
            return self.spec.blocks[name], self, self.tree["blocks"][name]
        return None

    def block_names(self) -> list[str]:
        names = list(self.spec.blocks)
        for alias, mod in self.imports.items():
            names += [f"{alias}.{b}" for b in mod.block_names()]
        return names


def load_module(c: Compiler, tree: Any, path: str, root: Path, model: type,
                stack: tuple[str, ...]) -> Module | None:
    """The validated file with its imports loaded (recursively), or None after reporting why not."""
    if not isinstance(tree, SMap):
        c.error("a spec must be a mapping of top-level keys (name, inputs, layers, ...)",
                getattr(tree, "loc", Loc(path, 1, 1)))
        return None
    spec = c.validate_model(model, tree, path)
    if spec is None:
        return None
    mod = Module(path, tree, spec, root)
    _check_symbols(c, tree, spec)
    for alias, target in spec.imports.items():
        loc = tree["imports"].loc_of(alias)
        if not SYMBOL_RE.match(alias):        # `use: a.b.block` could never reach it: it splits at the first dot
            c.error(f"invalid import name {alias!r}", tree["imports"].key_locs.get(alias, loc),
                    "an import name is ASCII letters, digits and _, not starting with a digit, as in imports: {res: \"std:resnet\"}")
            mod.failed.add(alias)
            continue
        sub = import_file(c, alias, target, mod, loc, stack)
        if sub is not None:
            mod.imports[alias] = sub
        else:
            mod.failed.add(alias)
    return mod


def _check_symbols(c: Compiler, tree: SMap, spec: Any) -> None:
    """Block and param names are written bare in `use:` and in expressions: one that cannot be written there
    ('x.y', 'a b', 'n\\n') is an error at its key, not an 'unknown block'/'unknown name' at every use."""
    def check(where: Any, names: Any, what: str) -> None:
        for name in names or ():
            if not (SYMBOL_RE if what == "param" else BLOCK_RE).match(str(name)):
                loc = where.key_locs.get(name, where.loc) if isinstance(where, SMap) else tree.loc
                c.error(f"invalid {what} name {name!r}", loc, f"a {what} name is ASCII letters, digits"
                        + (" and _" if what == "param" else ", _ and -") + ", not starting with a digit: it is written "
                        "bare in " + ("use:" if what == "block" else "${...}"))
    check(tree.get("params"), spec.params, "param")
    blocks = tree.get("blocks")
    check(blocks, spec.blocks, "block")
    for bname, block in (spec.blocks or {}).items():
        btree = blocks.get(bname) if isinstance(blocks, SMap) else None
        check(btree.get("params") if isinstance(btree, SMap) else None, block.params, "param")


def import_file(c: Compiler, alias: str, target: str, mod: Module, loc: Loc,
                stack: tuple[str, ...]) -> Module | None:
    found = _import_target(c, alias, target, mod, loc)
    if found is None:
        return None
    file, root = found
    if str(file) in stack:
        chain = " -> ".join(Path(s).name for s in stack + (str(file),))
        c.error(f"import cycle: {chain}", loc)
        return None
    try:
        tree, text = load_file(file)
    except SpecError as e:
        c.diags += e.diagnostics
        return None
    c.sources[str(file)] = text
    return load_module(c, tree, str(file), root, Library, stack + (str(file),))


def _import_target(c: Compiler, alias: str, target: str, mod: Module, loc: Loc) -> tuple[Path, Path] | None:
    """(file, root folder) that `imports: {alias: target}` names, or None after reporting why not."""
    shown = target.replace("\0", "\\0")
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    if "\0" in target or len(target) > 1024:
        c.error(f"import '{alias}': '{shown}' is not a usable path", loc,
                "a path has no NUL character and at most 1024 characters")
        return None
    if target.startswith("std:"):
        if not SYMBOL_RE.match(target[4:]):
            c.error(f"import '{alias}': '{target}' is not a standard library name", loc,
                    "std: takes a plain library name, e.g. std:resnet")
            return None
        file = (STD_LIB / f"{target[4:]}.yaml").resolve()
        if not file.is_file():
            avail = sorted(p.stem for p in STD_LIB.glob("*.yaml"))
            c.error(f"no standard library file '{target[4:]}'", loc,
                    did_you_mean(target[4:], avail) or f"available: {', '.join(avail)}")
            return None
        return file, STD_LIB.resolve()
    if Path(target).is_absolute() or target.startswith("~"):
        c.error(f"import '{alias}': absolute paths are not allowed ('{target}')", loc,
                "give a path relative to the importing file, or std:NAME")
        return None
    try:
        file = (Path(mod.path).resolve().parent / target).resolve()
        if not file.is_relative_to(mod.root):
            c.error(f"import '{alias}': '{target}' is outside the spec's folder ({mod.root})", loc,
                    "imports may not escape the folder of the top-level spec")
            return None
        if not file.is_file():
            c.error(f"import '{alias}': file '{target}' not found", loc)
            return None
    except (OSError, ValueError) as e:
        c.error(f"import '{alias}': cannot use '{shown}': {getattr(e, 'strerror', None) or e}", loc)
        return None
    return file, mod.root
