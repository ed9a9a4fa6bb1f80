"""A layer's `init:` (which initialiser draws its weights, and with what arguments): parsed and checked here,
in one place."""
from __future__ import annotations

import math
from typing import Any

from ..errors import Loc, did_you_mean
from ..ir import Init
from ..values import Poisoned
from .diagnose import Compiler

USER_INITS = ("kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "normal", "trunc_normal",
              "zeros", "ones", "uniform", "constant")
# the arguments each `init:` takes (compiler/init.py's meaning): "number", "non-negative" or "nonlinearity"
INIT_ARGS: dict[str, dict[str, str]] = {
    "kaiming_uniform": {"a": "non-negative", "nonlinearity": "nonlinearity", "mode": "mode"},
    "kaiming_normal": {"a": "non-negative", "nonlinearity": "nonlinearity", "mode": "mode"},
    "trunc_normal": {"mean": "number", "std": "positive", "a": "number", "b": "number"},
    "xavier_uniform": {"gain": "non-negative"}, "xavier_normal": {"gain": "non-negative"},
    "normal": {"mean": "number", "std": "non-negative"},
    "uniform": {"bound": "non-negative", "low": "number", "high": "number"},
    "constant": {"value": "number"}, "zeros": {}, "ones": {},
}
# the argument a bare value most likely means, for the hint when `{normal: 0.02}` is written
PRIMARY_ARG = {"kaiming_uniform": "a", "kaiming_normal": "a", "trunc_normal": "std", "xavier_uniform": "gain",
               "xavier_normal": "gain", "normal": "std", "uniform": "bound", "constant": "value"}
NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv_transpose2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")
MODES = ("fan_in", "fan_out")
FAN_INITS = ("kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal")   # need a 2-D+ tensor
MAX_ARG = 1e30           # any argument: the values drawn stay well inside float32 (3.4e38)
MIN_MASS = 1e-3          # trunc_normal's [a, b] must hold this much of N(mean, std²): it draws by rejection


def parse_inits(c: Compiler, raw: Any, loc: Loc, use_sites: list[Loc]) -> Init | dict[str, Init]:
    """`init:` as evaluated: `kind`, `{kind: {args}}` (the layer's weights), or one of those per parameter
    (`{weight: {kaiming_normal: {mode: fan_out}}, bias: zeros}`); raises Poisoned after reporting a problem.
    Which parameter names exist is checked once the shape rule has declared them (check_param_inits)."""
    if isinstance(raw, dict) and raw:
        params = [k for k in raw if _looks_like_param(k)]
        if len(params) == len(raw):
            return {k: parse_init(c, v, loc, use_sites, param=k) for k, v in raw.items()}
        if params:                            # {kaiming_normal: {...}, bias: zeros}: both forms at once
            kind = next(k for k in raw if k not in params)
            c.error(f"init mixes an initialiser ({kind}) with parameter names ({', '.join(map(str, params))})",
                    loc, f"write one initialiser for the weights (init: {{{kind}: ...}}) or one per parameter "
                    f"(init: {{weight: {{{kind}: ...}}, {params[0]}: ...}})", use_sites=use_sites)
            raise Poisoned
    return parse_init(c, raw, loc, use_sites)


def _looks_like_param(key: Any) -> bool:
    """A key that names a parameter rather than an initialiser, or a misspelt one (`kaiming_normall`)."""
    return isinstance(key, str) and key not in USER_INITS and not did_you_mean(key, USER_INITS)


def init_applies(param_name: str) -> bool:
    """A node's `init: KIND` sets its weights (a parameter named "" or "*weight*"), never its biases or buffers."""
    return param_name == "" or "weight" in param_name


def check_param_inits(c: Compiler, inits: Any, params: list, op: str, loc: Loc, use_sites: list[Loc]) -> None:
    """The parameters an `init:` sets exist (buffers are not parameters: running statistics are not drawn),
    and each can take its initialiser."""
    if inits is None:
        return
    trainable = [p for p in params if not p.buffer]
    if not trainable:
        c.error(f"init: {op} has no parameters to initialise", loc, "remove init:", use_sites=use_sites)
        raise Poisoned
    if isinstance(inits, dict):
        names = [p.name for p in trainable if p.name]
        if not names:
            c.error(f"{op} has no named parameters to initialise one by one", loc,
                    "write init: KIND (it sets the layer's weights)", use_sites=use_sites)
            raise Poisoned
        for key in inits:
            if key not in names:
                buffer = any(p.buffer and p.name == key for p in params)
                c.error(f"init: {op} has no parameter '{key}'" + (" (it is a buffer, not drawn)" if buffer else ""),
                        loc, did_you_mean(key, names) or f"its parameters are: {', '.join(names)}",
                        use_sites=use_sites)
                raise Poisoned
        targets = [(p, inits[p.name]) for p in trainable if p.name in inits]
    else:
        targets = [(p, inits) for p in trainable if init_applies(p.name)]
        if not targets:
            names = ", ".join(p.name for p in trainable)
            c.error(f"init: {op} has no weights for init: {inits.kind} to set (its parameters: {names})", loc,
                    f"name the parameters: init: {{{trainable[0].name}: {inits.kind}}}", use_sites=use_sites)
            raise Poisoned
    for p, init in targets:
        if init.kind in FAN_INITS and len(p.shape) < 2:
            c.error(f"init: {init.kind} computes fan-in and fan-out, which a tensor of fewer than 2 dimensions does "
                    f"not have: {op}'s {p.name or 'tensor'} has shape {list(p.shape)}", loc,
                    "torch.nn.init refuses it too: give this parameter normal, trunc_normal, uniform, constant, "
                    "zeros or ones", use_sites=use_sites)
            raise Poisoned


def parse_init(c: Compiler, raw: Any, loc: Loc, use_sites: list[Loc], param: str | None = None) -> Init:
    """One initialiser (`kind` or `{kind: {args}}`) to an Init; raises Poisoned after reporting a problem."""
    where = f" (for '{param}')" if param else ""
    choose = f"choose one of: {', '.join(USER_INITS)}"
    if isinstance(raw, str):
        kind, args = raw, {}
    elif isinstance(raw, dict) and len(raw) == 1:
        kind, args = next(iter(raw.items()))
        args = {} if args is None else args
    else:                                     # null, a number, a list, {} or several initialisers at once
        c.error(f"init{where}: expected an initialiser, KIND or {{KIND: {{arguments}}}}, found {raw!r}", loc,
                choose, use_sites=use_sites)
        raise Poisoned
    if kind not in USER_INITS:
        c.error(f"unknown initialiser {kind!r}{where}", loc, did_you_mean(str(kind), USER_INITS) or choose,
                use_sites=use_sites)
        raise Poisoned
    if not isinstance(args, dict):            # {normal: 0.02}: the arguments are a mapping
        c.error(f"initialiser {kind}{where}: its arguments are a mapping, found {args!r}", loc,
                _arguments_hint(kind, args, param), use_sites=use_sites)
        raise Poisoned
    problem = init_args_problem(kind, args)
    if problem:
        c.error(f"initialiser {kind}{where}: {problem[0]}", loc, problem[1], use_sites=use_sites)
        raise Poisoned
    return Init.of(kind, **args)


def _arguments_hint(kind: str, value: Any, param: str | None) -> str:
    """How to write `{kind: value}` as the language reads it: `{normal: {std: 0.02}}`."""
    allowed = INIT_ARGS[kind]
    if not allowed:
        return f"{kind} takes no arguments: write {param or 'init'}: {kind}"
    if isinstance(value, str) and "mode" in allowed:
        key = "mode" if value in MODES else "nonlinearity"
    else:
        key = PRIMARY_ARG[kind]
    return f"write {param or 'init'}: {{{kind}: {{{key}: {value}}}}} (its arguments: {', '.join(allowed)})"


def init_args_problem(kind: str, args: dict) -> tuple[str, str | None] | None:
    """(message, hint) when a node's `init: {kind: args}` cannot be drawn as written, else None."""
    allowed = INIT_ARGS[kind]
    for key, value in args.items():
        if key not in allowed:
            return (f"unknown argument '{key}'", did_you_mean(str(key), allowed) or
                    (f"its arguments are: {', '.join(allowed)}" if allowed else f"{kind} takes no arguments"))
        want = allowed[key]
        if want == "mode":
            if value not in MODES:
                return f"mode must be fan_in or fan_out, found {value!r}", did_you_mean(str(value), MODES)
        elif want == "nonlinearity":
            if value not in NONLINEARITIES:
                return (f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, found {value!r}",
                        did_you_mean(str(value), NONLINEARITIES))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"'{key}' must be a finite number, found {value!r}", None
        elif abs(value) > MAX_ARG:            # weights are float32: larger values draw inf (or overflow numpy)
            return f"'{key}' must be at most {MAX_ARG:g} in magnitude, found {value!r}", "weights are float32"
        elif want == "non-negative" and value < 0:
            return f"'{key}' must not be negative, found {value!r}", None
        elif want == "positive" and value <= 0:
            return f"'{key}' must be positive, found {value!r}", None
    if kind == "constant" and "value" not in args:
        return "needs a value", "write constant: {value: 0.1}"
    if kind == "trunc_normal":
        return _trunc_problem(args)
    if kind == "uniform":
        if "bound" in args and ("low" in args or "high" in args):
            return "give either bound or low and high, not both", None
        if args.get("low", 0.0) > args.get("high", 1.0):
            return f"low ({args.get('low', 0.0)}) is above high ({args.get('high', 1.0)})", None
    return None


def _trunc_problem(args: dict) -> tuple[str, str | None] | None:
    mean, std, a, b = args.get("mean", 0.0), args.get("std", 1.0), args.get("a", -2.0), args.get("b", 2.0)
    if a >= b:
        return f"a ({a}) must be below b ({b})", None
    cdf = lambda v: 0.5 * (1 + math.erf((v - mean) / (std * math.sqrt(2))))   # noqa: E731
    mass = cdf(b) - cdf(a)
    if mass < MIN_MASS:
        return (f"[{a}, {b}] holds only {mass:.2g} of N({mean}, {std}²)",
                "a and b are absolute bounds, as in torch.nn.init.trunc_normal_ (not multiples of std)")
    return None
