"""A layer's `init:` (which initialiser draws its weights, and with what arguments): parsed and checked here,
in one place."""
from __future__ import annotations

import math
from typing import Any

from ..errors import Loc, did_you_mean
from ..ir import Init
from ..values import Poisoned
from .diagnose import Compiler

USER_INITS = ("kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "normal", "zeros", "ones",
              "uniform", "constant")
# the arguments each `init:` takes (runtime.init's meaning): "number", "non-negative" or "nonlinearity"
INIT_ARGS: dict[str, dict[str, str]] = {
    "kaiming_uniform": {"a": "non-negative", "nonlinearity": "nonlinearity"},
    "kaiming_normal": {"a": "non-negative", "nonlinearity": "nonlinearity"},
    "xavier_uniform": {"gain": "non-negative"}, "xavier_normal": {"gain": "non-negative"},
    "normal": {"mean": "number", "std": "non-negative"},
    "uniform": {"bound": "non-negative", "low": "number", "high": "number"},
    "constant": {"value": "number"}, "zeros": {}, "ones": {},
}
NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv_transpose2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def parse_init(c: Compiler, raw: Any, loc: Loc, use_sites: list[Loc]) -> Init:
    """`init:` as evaluated (`kind` or `{kind: {args}}`) to an Init; raises Poisoned after reporting a problem."""
    kind, args = (raw, {}) if isinstance(raw, str) else (next(iter(raw)), next(iter(raw.values())) or {}) \
        if isinstance(raw, dict) and len(raw) == 1 else (None, None)
    if kind not in USER_INITS or not isinstance(args, dict):
        c.error(f"unknown initialiser {raw!r}", loc,
                did_you_mean(str(kind), USER_INITS) or f"choose one of: {', '.join(USER_INITS)}",
                use_sites=use_sites)
        raise Poisoned
    problem = init_args_problem(kind, args)
    if problem:
        c.error(f"initialiser {kind}: {problem[0]}", loc, problem[1], use_sites=use_sites)
        raise Poisoned
    return Init.of(kind, **args)


def init_args_problem(kind: str, args: dict) -> tuple[str, str | None] | None:
    """(message, hint) when a node's `init: {kind: args}` cannot be drawn as written, else None."""
    allowed = INIT_ARGS[kind]
    for key, value in args.items():
        if key not in allowed:
            return (f"unknown argument '{key}'", did_you_mean(str(key), allowed) or
                    (f"its arguments are: {', '.join(allowed)}" if allowed else f"{kind} takes no arguments"))
        want = allowed[key]
        if want == "nonlinearity":
            if value not in NONLINEARITIES:
                return (f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, found {value!r}",
                        did_you_mean(str(value), NONLINEARITIES))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"'{key}' must be a finite number, found {value!r}", None
        elif want == "non-negative" and value < 0:
            return f"'{key}' must not be negative, found {value!r}", None
    if kind == "constant" and "value" not in args:
        return "needs a value", "write constant: {value: 0.1}"
    if kind == "uniform":
        if "bound" in args and ("low" in args or "high" in args):
            return "give either bound or low and high, not both", None
        if args.get("low", 0.0) > args.get("high", 1.0):
            return f"low ({args.get('low', 0.0)}) is above high ({args.get('high', 1.0)})", None
    return None
