"""Hypothesis strategies for spec fuzzing, shared by tests/test_fuzz.py and tools/fuzz.py.

Three families of cases, each a `Case` (the spec text, `--set` values, where it came from):

- `generated()`: chains of 1-6 catalogue ops on 1-3 small inputs of each dtype. Attributes are drawn
  from each op's pydantic attribute model, with ranges that fit the input (dims within the rank, a
  permutation for `permute`, small sizes...) so that many specs check clean, and now and then a wild
  value (huge, negative, NaN, a string) for the error paths. Each op's shape rule is consulted while
  building, so a rejected op is usually drawn again.
- `mutated()`: a shipped `specs/*.yaml` with 1-3 mutations (deleted keys, wrong types, huge and
  negative numbers, unicode, long strings, deep nesting, YAML reference cycles, graph cycles, swapped
  layers, nasty expressions) and sometimes bad `--set` values.
- `corrupted()`: the raw text of a shipped spec with bytes deleted, inserted, duplicated or replaced
  by YAML syntax, tags, bad scalars, NUL bytes or invalid UTF-8.

`EXCLUDED` lists the values the in-suite tests leave out for now because another change fixes them
(the campaign in tools/fuzz.py draws everything: `exclude=False`).
"""
from __future__ import annotations

import copy
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from compiler.catalogue import ALL_OPS
from compiler.errors import ShapeError
from compiler.ir import TensorType
from compiler.ops import OPS

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml"))
DTYPES = ("float32", "float32", "float32", "int64", "bool")
DIMS = (1, 2, 3, 4, "N")


@dataclass
class Case:
    family: str                              # generated | mutated | corrupted
    text: str | bytes
    sets: list[str] = field(default_factory=list)
    source: str = ""                          # the shipped spec it came from, or the ops of a chain
    clean_expected: bool = False              # a generated spec: run it when it checks clean

    def describe(self) -> str:
        sets = "".join(f" --set={s!r}" for s in self.sets)
        return f"[{self.family} {self.source}]{sets}\n" + (self.text if isinstance(self.text, str)
                                                              else self.text.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------------------------------
# values the in-suite tests leave out while another helper fixes them: {what: (owner, the values)}
# ---------------------------------------------------------------------------------------------------------------
R1_BAD_SCALARS = ("2001-13-45", "!!int abc", "!!bool maybe", "!!float x", "!!timestamp 99", "9" * 5000)
EXCLUDED: dict[str, tuple[str, tuple[Any, ...]]] = {}     # R1's YAML scalar fixes have landed

NASTY_EXPRESSIONS = (
    "${2**64}", "${-2**63}", "${10**400}", "${1/0}", "${1e308*10}", "${int(1e308)}", "${int(float('inf'))}",
    "${round(1e400)}", "${'a'*100000}", "${[0]*100000}", "${[[0]*1000]*1000}", "${__import__('os')}",
    "${x.__class__}", "${shape(nope)}", "${None}", "${[1, [2, [3]]]}", "${-1}", "${0}", "${1 if", "${}",
    "${${1}}", "${'%0999999999d' % 1}", "${len(5)}", "${max()}", "${abs('a')}", "${2**0.5}", "${(-8)**(1/3)}",
    "${True + True}", "${'x' < 1}", "${[1][5]}", "${{}}", "${lambda: 1}", "${[i for i in range(9)]}",
)
HUGE = (2**31, 2**63, 2**64, 10**30, 10**400, 1e308, -1e308, float("inf"), float("-inf"), float("nan"))
NEGATIVE = (-1, -2, -7, -2**31, -0.5)
UNICODE = ("ñandú", "名前", "\u202eevil", "😀", "a\u0301", "\ufeffbom", "Ω≈ç√", "e\u0000x", "tab\there")
WEIRD = (None, True, False, "", "abc", [], {}, [[]], {"a": 1}, 0, 1.5, "1e400", "${", "N", "-1")


ACTIVATIONS_0D = {"sigmoid", "silu", "softplus", "gelu", "elu", "leaky_relu", "tanh", "reparameterize"}
NO_BOOL = {"add", "sub", "mul", "div", "linear", "gcn_conv", "gat_conv", "scaled_dot_product_attention",
           "multi_head_attention"}
# nodes the in-suite generator leaves out while another helper fixes them: (owner, what, predicate)
EXCLUDED_NODES: list[tuple[str, str, Any]] = [
    # R2's fixes have landed (0-d activations, bool/int dtype rules, scalars): what stays is a run-time
    # matter by design — symbols are bound by the data, and a clash is a clear run-time error, not a check one
    # (an adjacency that is square only if the data makes it so, [N, F], is a check error now)
    ("R2", "a symbolic dimension taken for a fixed one (a graph op's x [N, F] with adj [4, 4]): a clear error "
           "at run time",
     lambda op, ins: op in ("gcn_conv", "gat_conv", "graph_aggregate") and len(ins) > 1 and ins[1] is not None
     and ins[0].rank >= 2 and ins[1].rank >= 2 and ins[1].shape[-1] == ins[1].shape[-2]
     and ins[0].shape[-2] != ins[1].shape[-1]),
]


def excluded_node(op: str, ins: list[TensorType | None]) -> str | None:
    if not ins or ins[0] is None:
        return None
    return next((what for _, what, pred in EXCLUDED_NODES if pred(op, ins)), None)


# ---------------------------------------------------------------------------------------------------------------
# generated chains
# ---------------------------------------------------------------------------------------------------------------
def _plain(t: Any) -> tuple[Any, tuple]:
    return typing.get_origin(t), typing.get_args(t)


def generic_value(draw, annotation: Any, depth: int = 0) -> Any:
    """A value of (roughly) the attribute's declared type, small; nested types handled recursively."""
    origin, args = _plain(annotation)
    if annotation is bool:
        return draw(st.booleans())
    if annotation is int:
        return draw(st.integers(-2, 5))
    if annotation is float:
        return draw(st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, -1.0, 1e-5]))
    if annotation is str:
        return draw(st.sampled_from(["a", "x", "none", ""]))
    if origin is typing.Literal:
        return draw(st.sampled_from(args))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return generic_value(draw, draw(st.sampled_from(args)), depth)
    if origin in (list, tuple) and depth < 3:
        item = args[0] if args else int
        n = len(args) if origin is tuple and args and args[-1] is not Ellipsis else draw(st.integers(1, 3))
        items = args if origin is tuple and len(args) == n else (item,) * n
        return [generic_value(draw, a, depth + 1) for a in items]
    if annotation is type(None):
        return None
    return draw(st.sampled_from([0, 1, 2, "x"]))


def wild_value(draw) -> Any:
    return draw(st.sampled_from(HUGE + NEGATIVE + UNICODE + WEIRD + ("x" * 5000,)))


def _rank_dim(draw, x: TensorType | None) -> int:
    r = x.rank if x is not None else 2
    return draw(st.integers(-max(r, 1), max(r - 1, 0)))


def _last(x: TensorType | None, default: int = 2) -> int:
    if x is None or not x.rank or not isinstance(x.shape[-1], int):
        return default
    return x.shape[-1]


def _channels(x: TensorType | None) -> int:
    if x is None or x.rank < 2 or not isinstance(x.shape[1], int):
        return 1
    return x.shape[1]


def hinted_value(draw, op: str, name: str, annotation: Any, x: TensorType | None) -> Any:
    """A value for attribute `name` of `op` that fits the op's first input `x` (when the name is known)."""
    r = x.rank if x is not None else 2
    if name in ("dim", "dim0", "dim1", "start_dim", "end_dim"):
        if op in ("sum", "mean", "max", "squeeze") and draw(st.booleans()):
            return None if "None" in str(annotation) and draw(st.booleans()) else [_rank_dim(draw, x)]
        return _rank_dim(draw, x)
    if name == "dims":
        return draw(st.permutations(list(range(r))))
    if name == "shape" and op == "param":
        return draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    if name == "shape" and x is not None:
        shape = list(x.shape)
        if op == "reshape":
            return draw(st.sampled_from([[-1], shape[:1] + [-1], shape[::-1], shape + [1], [1] + shape]))
        return draw(st.sampled_from([[-1] * len(shape), [2] + shape, [d if d != 1 else 3 for d in shape]]))
    if name in ("out_features", "out_channels", "hidden_size", "embedding_dim", "num_embeddings", "num_classes"):
        return draw(st.integers(1, 5))
    if name == "num_heads":
        return draw(st.sampled_from([1, _last(x)]))
    if name in ("kernel_size", "stride", "dilation", "scale_factor"):
        return draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 2), st.integers(1, 2)).map(list)))
    if name in ("padding", "output_padding"):
        return draw(st.sampled_from([0, 1, "same", "valid", [0, 1]] if "same" in str(annotation) else [0, 1, [1, 0]]))
    if name == "output_size":
        return draw(st.sampled_from([None, 1, 2, [2, 3]] if op != "adaptive_avg_pool2d" else [1, 2, [2, None]]))
    if name == "groups":
        return draw(st.sampled_from([1, _channels(x)]))
    if name in ("in_features", "in_channels", "input_size", "num_features", "embed_dim", "padding_idx"):
        return draw(st.sampled_from([None, None, _last(x), _channels(x)]))
    if name == "normalized_shape":
        return draw(st.sampled_from([None, _last(x), [_last(x)]]))
    if name in ("mean", "std"):
        return draw(st.sampled_from([None, 0.5, 2.0, [0.5] * _channels(x)]))
    if name in ("p", "dropout", "label_smoothing", "momentum"):
        return draw(st.sampled_from([0.0, 0.1, 0.5] + ([2.0] if name == "p" and op == "pairwise_distance" else [])))
    if name in ("sections",):
        return draw(st.sampled_from([1, 2, [1, 1], [1, _last(x) - 1 if _last(x) > 1 else 1]]))
    if name in ("index", "start", "end", "step"):
        return draw(st.integers(0 if name == "step" else -2, 2)) if name != "step" else draw(st.integers(1, 2))
    if name == "num_layers":
        return draw(st.integers(1, 2))
    if name == "max_len":
        return draw(st.sampled_from([8, 50]))
    if name == "value":
        return draw(st.sampled_from([2.0, -1, 0.5, 3] if op != "constant" else [1.5, [1.0, 2.0], [[1, 2], [3, 4]]]))
    if name == "init_value":
        return 0.25
    return generic_value(draw, annotation)


def draw_attrs(draw, op: str, x: TensorType | None, wild: float) -> dict[str, Any]:
    """Attributes for `op`: required ones always, optional ones now and then; rarely a wild value."""
    out: dict[str, Any] = {}
    for name, f in OPS[op].attrs.model_fields.items():
        if not f.is_required() and not draw(st.integers(0, 2)) == 0:
            continue
        if wild and draw(st.floats(0, 1)) < wild:
            out[name] = wild_value(draw)
        else:
            out[name] = hinted_value(draw, op, name, f.annotation, x)
    return out


def _accepted(op: str, attrs: dict, ins: list[TensorType | None]) -> dict[str, TensorType] | None:
    """{port: type} when the op's shape rule accepts these attributes and inputs, else None."""
    opdef = OPS[op]
    try:
        inf = opdef.infer(opdef.attrs.model_validate(attrs), ins)
    except (ShapeError, ValueError, TypeError, IndexError, KeyError, ArithmeticError):
        return None
    return dict(zip(inf.ports or opdef.ports, inf.outputs))


@st.composite
def input_types(draw) -> dict[str, TensorType]:
    out = {}
    for i in range(draw(st.integers(1, 3))):
        rank = draw(st.integers(0, 4))
        dims = [draw(st.sampled_from(DIMS[:4])) for _ in range(rank)]
        if dims and draw(st.booleans()):
            dims[0] = "N"
        out[f"in{i}"] = TensorType(tuple(dims), draw(st.sampled_from(DTYPES)))
    return out


def _yaml_type(t: TensorType) -> Any:
    return list(t.shape) if t.dtype == "float32" else {"shape": list(t.shape), "dtype": t.dtype}


def _pick_inputs(draw, op: str, values: dict[str, TensorType], last: str) -> list[str]:
    opdef = OPS[op]
    if not opdef.inputs:
        return []
    names = list(values)
    first = last if draw(st.integers(0, 3)) else draw(st.sampled_from(names))
    refs = [first]
    wanted = len(opdef.inputs) - len(opdef.optional) + draw(st.integers(0, len(opdef.optional)))
    if opdef.variadic:
        wanted = draw(st.integers(1, 3))
    for _ in range(1, wanted):
        same = [n for n in names if values[n] == values[first]]
        refs.append(draw(st.sampled_from(same if same and draw(st.integers(0, 2)) else names)))
    return refs


@st.composite
def generated(draw, max_ops: int = 6, wild: float = 0.03, exclude: bool = True) -> Case:
    """A chain of 1..max_ops catalogue ops on small inputs, as a spec."""
    inputs = draw(input_types())
    values: dict[str, TensorType] = dict(inputs)
    layers, last, ops = [], next(iter(inputs)), []
    for k in range(draw(st.integers(1, max_ops))):
        for attempt in range(6):
            op = draw(st.sampled_from(ALL_OPS))
            refs = _pick_inputs(draw, op, values, last)
            x = values[refs[0]] if refs else None
            attrs = draw_attrs(draw, op, x, wild)
            ins = [values[r] for r in refs] + [None] * (len(OPS[op].inputs) - len(refs))
            ins = ins if not OPS[op].variadic else [values[r] for r in refs]
            outs = _accepted(op, attrs, ins)
            if exclude and excluded_node(op, ins):
                op = None
                continue
            if outs is not None or attempt >= 3 or draw(st.integers(0, 9)) == 0:
                break
        if op is None:                                       # every draw excluded: pass the value on
            op, refs, attrs, outs = "identity", [last], {}, {"out": values[last]}
        name = f"n{k}"
        layers.append({"op": op, "name": name, **({"in": refs} if refs else {}), **attrs})
        ops.append(op)
        for i, (port, t) in enumerate((outs or {}).items()):
            values[name if i == 0 else f"{name}:{port}"] = t
        last = name if outs else last
    outputs = [n["name"] for n in layers if not (OPS[n["op"]].loss or OPS[n["op"]].training_only)][-2:]
    spec = {"specc": 1, "name": "fuzz", "inputs": {k: _yaml_type(t) for k, t in inputs.items()},
            "layers": layers, "outputs": outputs or [layers[-1]["name"]]}
    form = draw(st.sampled_from(["plain", "plain", "params", "block"]))
    sets = _as_params(draw, spec) if form == "params" else []
    if form == "block":
        _as_block(spec)
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=10**6)
    return Case("generated", text, sets, f"{form}: " + " ".join(ops), clean_expected=True)


def _as_params(draw, spec: dict) -> list[str]:
    """Up to three numeric attributes become params read by `${p<k>}`; some are overridden by `--set`
    with the same value, so a clean spec stays clean."""
    slots = [(n, k) for n in spec["layers"] for k, v in n.items()
             if k not in ("name", "op", "in") and isinstance(v, (int, float)) and not isinstance(v, bool)]
    params, sets = {}, []
    for i, (node, key) in enumerate(slots[:3]):
        params[f"p{i}"] = node[key]
        node[key] = f"${{p{i}}}"
        if draw(st.booleans()):
            sets.append(f"p{i}={params[f'p{i}']!r}")
    if params:
        spec["params"] = params
    return sets


def _as_block(spec: dict) -> None:
    """The chain becomes block `chain`, used once on the inputs; the outputs are the block's ports."""
    names = list(spec["inputs"])
    spec["blocks"] = {"chain": {"inputs": list(names), "layers": spec["layers"],
                                "outputs": {o: o for o in spec["outputs"]}}}
    spec["layers"] = [{"use": "chain", "name": "c", "in": names}]
    spec["outputs"] = {o: f"c:{o}" for o in spec["outputs"]}


# ---------------------------------------------------------------------------------------------------------------
# mutations of the shipped specs
# ---------------------------------------------------------------------------------------------------------------
def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) into a loaded YAML tree, the root excluded."""
    out = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out += _paths(v, prefix + (k,))
    return out


def _parent(tree: Any, path: tuple) -> Any:
    for k in path[:-1]:
        tree = tree[k]
    return tree


def _nest(depth: int) -> str:
    """A placeholder that `_dump` replaces by a list nested `depth` deep (too deep for yaml.safe_dump)."""
    return f"__NEST_{depth}__"


def _dump(tree: Any) -> str:
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=10**6)
    return re.sub(r"__NEST_(\d+)__", lambda m: "[" * int(m.group(1)) + "1" + "]" * int(m.group(1)), text)


def _mutate(draw, tree: Any, exclude: bool) -> str:
    """Apply one mutation to `tree` in place; returns what it did."""
    paths = _paths(tree)
    path = draw(st.sampled_from(paths))
    parent, key = _parent(tree, path), path[-1]
    kind = draw(st.sampled_from(["delete", "wrong_type", "huge", "negative", "unicode", "long", "nest",
                                 "expression", "self_ref", "swap", "duplicate"]))
    if kind == "delete":
        del parent[key]
    elif kind == "wrong_type":
        parent[key] = draw(st.sampled_from(WEIRD))
    elif kind == "huge":
        parent[key] = draw(st.sampled_from(_allowed("huge", HUGE, exclude)))
    elif kind == "negative":
        parent[key] = draw(st.sampled_from(NEGATIVE))
    elif kind == "unicode":
        parent[key] = draw(st.sampled_from(UNICODE))
    elif kind == "long":
        parent[key] = "a" * draw(st.sampled_from([300, 5000, 200_000]))
    elif kind == "nest":
        parent[key] = _nest(draw(st.sampled_from([20, 99, 150, 1000])))
    elif kind == "expression":
        parent[key] = draw(st.sampled_from(_allowed("expression", NASTY_EXPRESSIONS, exclude)))
    elif kind == "self_ref" and isinstance(tree.get("layers"), list) and tree["layers"]:
        layers = tree["layers"]
        i = draw(st.integers(0, len(layers) - 1))
        if isinstance(layers[i], dict):
            target = draw(st.sampled_from([layers[j].get("name", "x") if isinstance(layers[j], dict) else "x"
                                           for j in range(i, len(layers))]))
            layers[i]["in"] = target                       # itself or a later node: a graph cycle
    elif kind == "swap" and isinstance(tree.get("layers"), list) and len(tree["layers"]) > 1:
        layers = tree["layers"]
        i, j = draw(st.integers(0, len(layers) - 1)), draw(st.integers(0, len(layers) - 1))
        layers[i], layers[j] = layers[j], layers[i]
    elif kind == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    return f"{kind}@{'/'.join(map(str, path))}"


def _allowed(what: str, values: tuple, exclude: bool) -> tuple:
    if not exclude:
        return values
    skip = [v for name, (_, vs) in EXCLUDED.items() if name.startswith(what) for v in vs]
    return tuple(v for v in values if not any(v == s and type(v) is type(s) for s in skip)) or values[:1]


YAML_CYCLES = (
    "params: &p {a: *p}\n", "x: &a [*a]\n", "inputs: &i {x: *i}\n",
    "params: {a: '${b}', b: '${a}'}\n", "params: {a: '${a}'}\n",
    "params: {p1: ab, p2: '${p1 + p1}', p3: '${p2 + p2}', p4: '${p3 + p3}'}\n",
)


def bad_set_value(draw, params: list[str], exclude: bool) -> str:
    key = draw(st.sampled_from(params + ["nope", "", "a.b", "=", "classes"]))
    value = draw(st.sampled_from(_allowed("set", (
        "", "[", "]]", "{a: 1", "1e400", "99999999999999999999999999", "-5", "0", "nan", ".inf", "~", "null",
        "!!python/object:os.system", "!!int abc", "!!bool maybe", "2001-13-45", "&a [*a]", "[[[[[[[[[[]]]]]]]]]]",
        "${2**64}", "${'a'*10**6}", "ñ", "\u202e", "a\tb", "'unterminated", "{a: [1, {b: 2}]}", "yes", "0x10",
        "[" * 200 + "]" * 200, "a: b: c", "- 1\n- 2", "@", "`", "%TAG", "---\n---",
    ), exclude)))
    return f"{key}={value}"


@st.composite
def mutated(draw, exclude: bool = True) -> Case:
    """A shipped spec with 1-3 structural mutations, sometimes a YAML cycle or bad --set values."""
    path = draw(st.sampled_from(SPECS))
    tree = yaml.safe_load(path.read_text())
    done = [_mutate(draw, tree, exclude) for _ in range(draw(st.integers(1, 3)))]
    text = _dump(tree)
    if draw(st.integers(0, 7)) == 0:
        text = draw(st.sampled_from(YAML_CYCLES)) + text          # a duplicate key or a cycle up front
        done.append("cycle")
    params = list(tree.get("params") or {}) if isinstance(tree, dict) and isinstance(tree.get("params"), dict) else []
    sets = [bad_set_value(draw, params, exclude) for _ in range(draw(st.integers(0, 2)) // 2 * draw(st.integers(1, 2)))]
    return Case("mutated", text, sets, f"{path.name} {' '.join(done)}")


# ---------------------------------------------------------------------------------------------------------------
# corrupted YAML text
# ---------------------------------------------------------------------------------------------------------------
SNIPPETS = (":", "{", "}", "[", "]", "&a", "*a", "*nope", "!", "!!", "|", ">", "- ", "'", '"', "#", "%", "@", "`",
            "\t", "\n", "  ", ": :", "? ", "---", "...", "!!python/object/apply:os.system ['ls']", "!!binary xyz",
            "2001-13-45", "!!int abc", "!!bool maybe", "!!float x", "!!timestamp 99", "!!set {a}", "!!omap [a]",
            "<<: *a", "\x00", "\ufeff", "\u2028", "ñ", "9" * 5000, "0x" + "f" * 40, "1e99999", "${", "}}", "$$")


@st.composite
def corrupted(draw, exclude: bool = True) -> Case:
    """A shipped spec's bytes with 1-4 random edits (delete, insert YAML syntax, duplicate, truncate)."""
    path = draw(st.sampled_from(SPECS))
    data = bytearray(path.read_bytes())
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["delete", "insert", "insert", "duplicate", "truncate", "bytes"]))
        if kind == "delete":
            del data[i:i + draw(st.integers(1, 40))]
        elif kind == "insert":
            data[i:i] = draw(st.sampled_from(_allowed("snippet", SNIPPETS, exclude))).encode()
        elif kind == "duplicate":
            j = draw(st.integers(0, len(data)))
            data[i:i] = data[min(i, j):max(i, j)][:2000]
        elif kind == "truncate":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        edits.append(f"{kind}@{i}")
    return Case("corrupted", bytes(data), [], f"{path.name} {' '.join(edits)}")
