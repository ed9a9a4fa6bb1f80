"""Built-in data sets: `builtin:NAME[/PART][?OPTION=VALUE,...]`, made or shipped by an installed package.

Nothing is downloaded. Every set is deterministic (generated sets take a `seed` option) and has two fixed
parts, `train` and `test` (`all` is both). Without a part, a set named as training data means its train
part and as test data its test part. Options follow a `?`, separated by commas:

    builtin:digits?size=28            builtin:moons/test?n_test=500,noise=0.2

Each set declares its arrays (name, dtype, per-sample shape); they are mapped onto the spec's inputs by
name first, then by dtype and shape (a unique match is renamed, and reshaped when only the layout
differs: 64 values to an input of [N, 64]). Some options follow the spec when not given (the digits'
image size, the CBOW window): a note says so once.

The sets themselves live in builtin_images.py, builtin_toy.py, builtin_seq.py, builtin_graph.py and
builtin_text.py; `specc data list` prints them (builtin_list.py).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.ir import Graph

BUILTIN = "builtin:"
BUILTINS = ("digits", "moons", "circles", "blobs", "spirals", "copy", "reverse", "sort", "sum", "parity",
            "memory", "digit_sum", "digit_max", "karate", "skipgram", "cbow")
PARTS = ("train", "test", "all")


@dataclass(frozen=True)
class Option:
    """One option of a built-in set: its type (int, float, str with choices, bool), default and range."""

    name: str
    default: Any
    help: str
    kind: type = int
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    follows_spec: bool = False                  # when not given, taken from the spec's inputs (a note says so)

    def parse(self, text: str, where: str) -> Any:
        bad = f"option {self.name}={text!r} of {where}"
        if self.kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise UserError(f"{bad}: expected true or false")
            return text.lower() in ("true", "1", "yes")
        if self.choices:
            if text not in self.choices:
                raise UserError(f"{bad}: expected one of {', '.join(self.choices)}",
                                hint=did_you_mean(text, self.choices))
            return self.kind(text)
        try:
            value = self.kind(text)
        except ValueError:
            raise UserError(f"{bad}: expected {'an integer' if self.kind is int else 'a number'}") from None
        return self.check(value, where)

    def check(self, value: Any, where: str) -> Any:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            lo, hi = _num(self.low), _num(self.high)
            raise UserError(f"option {self.name}={value} of {where} is out of range: "
                            + (f"{lo}..{hi}" if lo and hi else f"at least {lo}" if lo else f"at most {hi}"))
        return value

    def show(self) -> str:
        kind = "|".join(self.choices) if self.choices else self.kind.__name__
        rng = "" if self.low is None and self.high is None else f", {_num(self.low)}..{_num(self.high)}"
        auto = "; follows the spec's input when not given" if self.follows_spec else ""
        return f"{self.name}={self.default}  ({kind}{rng}) {self.help}{auto}"


def _num(v: float | None) -> str:
    return "" if v is None else f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


@dataclass(frozen=True)
class Array:
    """An array a built-in set provides: per-sample shape (the whole shape for a static set)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    what: str


@dataclass(frozen=True)
class Builtin:
    """A built-in data set: its options, arrays and part sizes (all functions of the options), its maker."""

    name: str
    summary: str
    group: str
    options: tuple[Option, ...]
    arrays: Callable[[dict], list[Array]]
    sizes: Callable[[dict], dict[str, int]]
    make: Callable[[dict, str], dict[str, np.ndarray]]
    static: bool = False                                # one sample: a whole graph, the same in every part
    auto: Callable[[Graph, list[str], dict], dict] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}


_REGISTRY: dict[str, Builtin] = {}


def registry() -> dict[str, Builtin]:
    """Every built-in set by name (imported on first use: each module builds its own sets)."""
    if not _REGISTRY:
        from . import builtin_graph, builtin_images, builtin_seq, builtin_text, builtin_toy
        sets: dict[str, Builtin] = {}
        for mod in (builtin_images, builtin_toy, builtin_seq, builtin_graph, builtin_text):
            sets.update({b.name: b for b in mod.SETS})
        _REGISTRY.update({k: sets[k] for k in BUILTINS})
    return _REGISTRY


def with_all(make: Callable[[dict, str], dict[str, np.ndarray]]) -> Callable[[dict, str], dict[str, np.ndarray]]:
    """A maker of train and test parts that also gives 'all': the train part followed by the test part."""
    def wrapped(opts: dict, part: str) -> dict[str, np.ndarray]:
        if part == "all":
            a, b = make(opts, "train"), make(opts, "test")
            return {k: np.concatenate([a[k], b[k]]) for k in a}
        return make(opts, part)
    return wrapped


# -- parsing a source -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    name: str
    part: str | None
    given: dict[str, Any]                       # options written in the source, parsed and checked


def parse(source: str) -> Ref:
    """`builtin:NAME[/PART][?OPT=VALUE,...]` checked: a known name, part and options of the right types."""
    rest = source[len(BUILTIN):] if source.startswith(BUILTIN) else source
    head, _, query = rest.partition("?")
    name, _, part = head.partition("/")
    if name not in BUILTINS:
        raise UserError(f"unknown built-in data set '{source}'",
                        hint=did_you_mean(name, BUILTINS) or f"built-in data sets: {', '.join(BUILTINS)} "
                        "(specc data list describes them)")
    if part and part not in PARTS:
        raise UserError(f"the built-in data sets have parts train, test and all, not '{part}' ({source})",
                        hint=did_you_mean(part, PARTS))
    b = registry()[name]
    opts = {o.name: o for o in b.options}
    given: dict[str, Any] = {}
    for item in filter(None, query.split(",")) if query else ():
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key or not value.strip():
            raise UserError(f"bad option '{item}' in '{source}': expected NAME=VALUE",
                            hint="separate options with commas: builtin:moons?n=500,noise=0.2")
        if key not in opts:
            raise UserError(f"built-in data set '{name}' has no option '{key}'",
                            hint=did_you_mean(key, opts) or (f"its options: {', '.join(opts)}" if opts
                                                             else f"'{name}' takes no options"))
        if key in given:
            raise UserError(f"option '{key}' is given twice in '{source}'")
        if "&" in value:
            raise UserError(f"bad option value '{value}' in '{source}'",
                            hint="separate options with commas, not &: builtin:moons?n=500,noise=0.2")
        given[key] = opts[key].parse(value.strip(), f"builtin:{name}")
    return Ref(name, part or None, given)


def describe(name: str, part: str, opts: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The source as it is used: builtin:NAME/PART plus the options that differ from the defaults."""
    changed = ",".join(f"{k}={v}" for k, v in opts.items() if v != defaults.get(k))
    return f"{BUILTIN}{name}/{part}" + (f"?{changed}" if changed else "")


_noted: set[str] = set()


def note_once(text: str) -> None:
    """A note on stderr, once per process (train and test parts resized alike say it once)."""
    if text not in _noted:
        _noted.add(text)
        print(f"note: {text}", file=sys.stderr)


def options_for(b: Builtin, given: dict[str, Any], graph: Graph | None, needed: list[str] | None,
                quiet: bool = False) -> dict[str, Any]:
    """Defaults, then what the spec implies (for options not given), then the options given.

    `auto` may return a "note" (why an option follows the spec), printed once unless quiet."""
    opts = b.defaults()
    if graph is not None and b.auto is not None:
        implied = dict(b.auto(graph, list(graph.inputs) if needed is None else needed, given))
        note = implied.pop("note", None)
        if note and not quiet:
            note_once(note)
        opts.update({k: v for k, v in implied.items() if k not in given})
    opts.update(given)
    return opts


# -- reading ----------------------------------------------------------------------------------------
def read(source: str, role: str = "train", graph: Graph | None = None,
         needed: list[str] | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a built-in source and a description of it; with a graph, options the spec implies
    are applied and the arrays are mapped onto its inputs."""
    ref = parse(source)
    b = registry()[ref.name]
    part = ref.part
    if part is None:
        if role == "val":
            raise UserError(f"'{source}' as validation data would overlap the training or test data",
                            hint="use a fraction of the training data instead, e.g. val: 0.1")
        part = "test" if role in ("test", "eval") else "train"
    opts = options_for(b, ref.given, graph, needed)
    _check_size(b, opts, part)
    arrays = b.make(opts, part)
    if graph is not None:
        arrays = fit_arrays(graph, arrays, list(graph.inputs) if needed is None else needed, b.static)
    return arrays, describe(ref.name, part, opts, b.defaults())


MAX_BYTES = 2 << 30


def _check_size(b: Builtin, opts: dict[str, Any], part: str) -> None:
    """Refuse options that would make arrays larger than MAX_BYTES (rather than run out of memory)."""
    sizes = b.sizes(opts)
    n = 1 if b.static else sum(sizes.values()) if part == "all" else sizes[part]
    total = sum(n * int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in b.arrays(opts))
    if total > MAX_BYTES:
        raise UserError(f"builtin:{b.name} with these options would take {total / 2 ** 30:.1f} GB of arrays "
                        f"(at most {MAX_BYTES >> 30} GB)", hint="ask for fewer or smaller samples")


def fit_arrays(graph: Graph, arrays: dict[str, np.ndarray], needed: list[str],
               static: bool = False) -> dict[str, np.ndarray]:
    """Map arrays onto the inputs `needed`: same name first; else the one array of a fitting dtype and shape
    (renamed); arrays of the input's size but another layout are reshaped."""
    out = dict(arrays)
    for k in needed:
        if k in out:
            continue
        t = graph.inputs[k]
        cands = [a for a in out if a not in needed and _dtype_fits(out[a], t.dtype) and
                 _layout(out[a], t, static) is not None]
        if len(cands) == 1:
            out[k] = out.pop(cands[0])
    for k in needed:
        if k in out:
            shape = _layout(out[k], graph.inputs[k], static)
            if shape is not None and shape != out[k].shape:
                out[k] = out[k].reshape(shape)
    return out


def _dtype_fits(arr: np.ndarray, dtype: str) -> bool:
    kind = arr.dtype.kind
    return kind == "f" if dtype == "float32" else kind in "iu" if dtype == "int64" else kind == "b"


def _layout(arr: np.ndarray, t: Any, static: bool) -> tuple[int, ...] | None:
    """The shape `arr` takes to fit input type `t` (a reshape when only the layout differs), or None."""
    lead = () if static else arr.shape[:1]
    have = arr.shape if static else arr.shape[1:]
    want = tuple(t.shape) if static else tuple(t.shape[1:])
    if not static and not t.rank:
        return None
    if len(want) == len(have) and all(isinstance(d, str) or d == s for d, s in zip(want, have)):
        return arr.shape
    if want and all(isinstance(d, int) for d in want) and int(np.prod(want)) == int(np.prod(have)):
        return lead + want
    return None


# -- what fits a spec (for hints and `specc data list`) --------------------------------------------
def fits(name: str, graph: Graph, needed: list[str]) -> str | None:
    """None when builtin:NAME (with the options the spec implies) gives every input `needed`; else why not.

    Decided on the declared arrays (zeros of their shapes), so nothing is generated or imported."""
    b = registry()[name]
    opts = options_for(b, {}, graph, needed, quiet=True)
    fake = {a.name: np.zeros(a.shape if b.static else (2, *a.shape), dtype=a.dtype) for a in b.arrays(opts)}
    got = fit_arrays(graph, fake, needed, b.static)
    for k in needed:
        t = graph.inputs[k]
        if k not in got:
            return f"builtin:{name} has no array for input '{k}' ({t}, {t.dtype})"
        arr = got[k]
        if not _dtype_fits(arr, t.dtype) and not (t.dtype == "float32" and arr.dtype.kind in "iu"):
            return f"builtin:{name}'s array for input '{k}' is {arr.dtype}; the input is {t.dtype}"
        if arr.ndim != t.rank or any(isinstance(d, int) and d != s
                                     for d, s in zip(t.shape[int(not b.static):], arr.shape[int(not b.static):])):
            return f"builtin:{name}'s array for input '{k}' has shape {list(arr.shape[1:])} per sample; " \
                   f"the input is {t}"
    return None


def suggest(graph: Graph, needed: list[str]) -> list[str]:
    """The built-in sets that fit the inputs `needed`, by name."""
    return [n for n in BUILTINS if fits(n, graph, needed) is None]


def hint(graph: Graph, needed: list[str]) -> str:
    """', or builtin:NAME' naming up to three built-in sets that fit (for "no data" messages), or ''."""
    names = suggest(graph, needed)
    if not names:
        return ""
    more = f" (and {len(names) - 3} more: specc data list)" if len(names) > 3 else ""
    return ", or " + ", ".join(BUILTIN + n for n in names[:3]) + more


def digits_fit(graph: Graph, needed: list[str]) -> str | None:
    """None when builtin:digits fits the inputs `needed` (resized where the spec's image size asks)."""
    return fits("digits", graph, needed)


def _fit_builtin(graph: Graph, arrays: dict[str, np.ndarray], needed: list[str]) -> dict[str, np.ndarray]:
    """The name/layout mapping of `fit_arrays` (what check() applies to a built-in set's arrays)."""
    return fit_arrays(graph, arrays, needed)
