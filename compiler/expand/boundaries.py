"""The spec around its layers: params and their overrides, `inputs:`, `outputs:`, and the `train:` section's
references (objectives, globs, masks, noise) checked against the expanded graph."""
from __future__ import annotations

import fnmatch
from typing import Any

from .. import limits
from ..errors import did_you_mean
from ..expr import FAILED, ExprError, is_template, render
from ..ir import Ref, TensorType
from ..load import SMap, locate
from ..spec import Spec
from ..train_section import is_train_key
from ..values import POISON, Poisoned, Value
from .diagnose import Compiler
from .expander import Expander
from .modules import SYMBOL_RE
from .scope import NAME_RE, Scope


def apply_overrides(c: Compiler, spec: Spec, tree: SMap, params: dict[str, Any]) -> dict[str, Any]:
    env = dict(spec.params)
    for k, v in params.items():
        if is_train_key(k):                  # --set train.KEY: applied to the train section (train_section.py)
            continue
        if k not in env:
            c.error(f"--set/params: the spec has no param '{k}'", tree.loc_of("params") if "params" in tree else None,
                    did_you_mean(k, list(env)) or (f"its params are: {', '.join(env)}" if env else
                                                   "this spec declares no params"))
            continue
        env[k] = v
    # params may refer to earlier params
    for k, v in list(env.items()):
        if is_template(v):
            try:
                env[k] = render(v, env, budget=c.budget)
            except ExprError as e:
                env[k] = FAILED                  # reading it later fails quietly: one error, not a cascade
                if not e.quiet and k in params:  # the value came from --set, not from the spec's line
                    c.error(f"--set {k}={v}: {e.message}", None, e.hint)
                elif not e.quiet:
                    c.error(e.message, locate(tree, ("params", k)), e.hint)
    return env


def build_inputs(c: Compiler, ex: Expander, tree: SMap, spec: Spec, top: Scope) -> dict[str, TensorType]:
    out: dict[str, TensorType] = {}
    itree = tree["inputs"]
    for name, decl in spec.inputs.items():
        t = _input_type(c, ex, itree, name, decl, top)
        if t is None:
            top.names[str(name)] = POISON
            top.first_input = top.first_input or POISON
            continue
        out[name] = t
        v = Value({"out": (Ref(name), t)}, kind="input", owner=name)
        top.names[name] = v
        ex.all[name] = v
        if top.first_input is None:
            top.first_input = v
    return out


def _input_type(c: Compiler, ex: Expander, itree: SMap, name: str, decl: Any, top: Scope) -> TensorType | None:
    loc = itree.loc_of(name)
    if not NAME_RE.match(str(name)):
        c.error(f"invalid input name {name!r}", itree.key_locs.get(name, loc))
        return None
    shape, dtype = decl, "float32"
    if isinstance(decl, dict):
        extra = [k for k in decl if k not in ("shape", "dtype")]
        if extra or "shape" not in decl:
            c.error(f"input '{name}' must be a shape list or {{shape, dtype}}" +
                    (f"; unknown key '{extra[0]}'" if extra else ""), loc,
                    did_you_mean(extra[0], ["shape", "dtype"]) if extra else None)
            return None
        shape, dtype = decl["shape"], decl.get("dtype", "float32")
        if dtype not in ("float32", "int64", "bool"):
            c.error(f"input '{name}': dtype must be float32, int64 or bool, found {dtype!r}", decl.loc_of("dtype"),
                    did_you_mean(str(dtype), ["float32", "int64", "bool"]))
            return None
    try:
        shape = ex.evaluate(shape, top, loc)
    except Poisoned:
        return None
    if not isinstance(shape, list):
        c.error(f"input '{name}': a shape is a list of sizes and symbols, found {shape!r}", loc)
        return None
    dims, ok = [], True
    for d in shape:
        if isinstance(d, bool) or not (isinstance(d, int) and d > 0 or isinstance(d, str) and SYMBOL_RE.match(d)):
            if isinstance(d, str) and len(d) > limits.NAME_CHARS:
                c.error(f"input '{name}': the symbol '{d[:40]}...' has {len(d):,} characters, more than the limit "
                        f"of {limits.NAME_CHARS}", loc)
            else:
                c.error(f"input '{name}': dimension {d!r} must be a positive integer or a symbol such as N", loc)
            ok = False
        dims.append(d)
    if not ok:
        return None
    return TensorType(tuple(dims), dtype)


def build_outputs(c: Compiler, ex: Expander, tree: SMap, spec: Spec, top: Scope) -> dict[str, Ref]:
    outs: dict[str, Ref] = {}
    if spec.outputs is None:                 # default: the last top-level layer that is not a loss
        for name, value, is_loss in reversed(top.built):
            if not is_loss and value.kind != "alias":
                return {name: value.default[0]}
        return outs
    otree = tree["outputs"]
    if not spec.outputs:
        c.error("the spec's outputs are empty", getattr(otree, "loc", tree.loc_of("outputs")),
                "list the nodes the model returns, or leave `outputs` out to return the last layer")
        return outs
    items = list(spec.outputs.items()) if isinstance(spec.outputs, dict) else [(r, r) for r in spec.outputs]
    for i, (public, ref) in enumerate(items):
        loc = otree.loc_of(public) if isinstance(otree, SMap) else otree.loc_of(i)
        if isinstance(spec.outputs, dict) and not str(public).strip():     # ONNX needs a name for every output
            c.error("an output name must not be empty", otree.key_locs.get(public, loc),
                    f"name it, e.g. outputs: {{out: {ref}}}")
            continue
        try:
            v = ex.resolve(ref, top, loc)
        except Poisoned:
            continue
        outs[str(public)] = v.default[0]
    return outs


def check_train(c: Compiler, ex: Expander, tree: SMap, train: Any, top: Scope,
                inputs: dict[str, TensorType]) -> None:
    ttree = tree["train"]

    def scalar_ref(ref: str, path: tuple) -> None:
        loc = locate(ttree, path)
        try:
            v = ex.resolve(ref, top, loc)
        except Poisoned:
            return
        t = v.default[1]
        if t.rank != 0:
            c.error(f"the objective '{ref}' must be a scalar, but it has shape {t}", loc,
                    "use a loss with reduction mean or sum, or a sum/mean node")

    def objectives(obj: Any, path: tuple) -> None:
        if isinstance(obj, str):
            scalar_ref(obj, path)
        elif isinstance(obj, dict):
            for k in obj:
                scalar_ref(k, path + (k,))

    if train.phases:
        for i, ph in enumerate(train.phases):
            objectives(ph.objective, ("phases", i, "objective"))
    elif train.objective is not None:
        objectives(train.objective, ("objective",))
    for key in ("predict", "target"):
        ref = getattr(train, key)
        if ref is not None:
            try:
                ex.resolve(ref, top, locate(ttree, (key,)))
            except Poisoned:
                pass
    names = list(dict.fromkeys(n.param_name(p) for n in ex.nodes for p in n.params if not p.buffer))

    def globs(patterns: list[str], path: tuple) -> None:
        for i, pat in enumerate(patterns):
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                c.error(f"the glob '{pat}' matches no parameter", locate(ttree, path + (i,)),
                        did_you_mean(pat, names) or f"parameters look like: {', '.join(names[:4])}")

    globs(train.freeze, ("freeze",))
    globs(list(train.lr_scale), ("lr_scale",))
    if train.phases:
        for i, ph in enumerate(train.phases):
            globs(ph.update, ("phases", i, "update"))
    if train.augment is not None and train.augment.input not in top.names:
        c.error(f"augment: unknown input '{train.augment.input}'", locate(ttree, ("augment", "input")),
                did_you_mean(train.augment.input, list(top.names)))
    for split_, name in train.mask.items():
        if name not in inputs:
            c.error(f"mask: '{name}' (the {split_} mask) is not an input of the spec",
                    locate(ttree, ("mask", split_)),
                    did_you_mean(name, list(inputs)) or f"its inputs are: {', '.join(inputs)}")
    ntree = ttree.get("noise")
    for name in train.noise:
        loc = ntree.key_locs.get(name, ntree.loc) if isinstance(ntree, SMap) else locate(ttree, ("noise",))
        t = inputs.get(name)
        if t is None:
            c.error(f"noise: '{name}' is not an input of the spec", loc,
                    did_you_mean(name, list(inputs)) or f"its inputs are: {', '.join(inputs)}")
        elif not t.dtype.startswith("float"):
            c.error(f"noise: input '{name}' is {t.dtype}; noise is drawn for float inputs only", loc)
        elif not (t.rank and isinstance(t.shape[0], str) and all(isinstance(d, int) for d in t.shape[1:])):
            c.error(f"noise: input '{name}' has shape {t}; a noise input needs a symbolic batch size first "
                    "and fixed sizes after it", loc, f"declare it as [N, ...], e.g. {name}: [N, 100]")


