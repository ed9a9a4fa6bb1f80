"""Parameter initialisers, following torch.nn.init and each PyTorch module's reset_parameters, and a spec's
initial state_dict drawn with them (what runtime.Model starts from, and what an export without weights
holds). NumPy only, so the compiler's ONNX export draws fresh parameters without importing the runtime."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .expand.node_init import init_applies
from .ir import Graph, Init

NP_DTYPES = {"float32": np.float32, "int64": np.int64, "bool": np.bool_}   # a parameter's dtype; else float32


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's _calculate_fan_in_and_fan_out: dim 1 is fan-in, dim 0 fan-out, times the receptive field."""
    if len(shape) < 2:
        n = shape[0] if shape else 1
        return n, n
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _gain(nonlinearity: str, a: float = 0.0) -> float:
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "selu":
        return 0.75
    return 1.0                  # linear, conv*, sigmoid: torch.nn.init.calculate_gain


def _kaiming_fan(kw: dict, shape: tuple[int, ...]) -> int:
    if kw.get("fan_in"):
        return kw["fan_in"]
    fan_in, fan_out = fans(shape)
    fan = fan_out if kw.get("mode", "fan_in") == "fan_out" else fan_in
    return max(fan, 1)


def _trunc_normal(rng: np.random.Generator, shape: tuple[int, ...], mean: float, std: float, a: float,
                  b: float) -> np.ndarray:
    """Rejection sampling: draws outside [a, b] are redrawn until none is left. The compiler checks that
    [a, b] holds enough of the distribution's mass for this to end quickly."""
    out = rng.normal(mean, std, shape)
    bad = (out < a) | (out > b)
    for _ in range(10_000):
        if not bad.any():
            return out
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < a) | (out > b)
    raise ValueError(f"trunc_normal: [{a}, {b}] holds too little of N({mean}, {std}²) to draw from")


def initialise(init: Init, shape: tuple[int, ...], rng: np.random.Generator, dtype: Any = np.float32) -> np.ndarray:
    """Draw a parameter. Kinds and their arguments:

    kaiming_uniform {a=0, nonlinearity=leaky_relu, mode=fan_in, fan_in?}   kaiming_normal {a=0, nonlinearity=relu, mode}
    (mode fan_out scales by the output side, as torchvision's ResNet and MobileNet initialise their convs)
    trunc_normal {mean=0, std=1, a=-2, b=2}: N(mean, std²) redrawn outside [a, b] (absolute bounds, as torch)
    xavier_uniform {gain=1}   xavier_normal {gain=1}   uniform {bound} or {low, high}
    bias_uniform {fan_in}: U(±1/√fan_in), PyTorch's bias default   normal {mean=0, std=1}
    zeros   ones   constant {value}   values {values}: the given numbers, reshaped   embedding {padding_idx?}: N(0,1) with the padding row zeroed
    """
    kw = init.kw
    kind = init.kind
    if kind == "kaiming_uniform":
        fan = _kaiming_fan(kw, shape)
        bound = _gain(kw.get("nonlinearity", "leaky_relu"), kw.get("a", 0.0)) * math.sqrt(3.0 / fan)
        out = rng.uniform(-bound, bound, shape)
    elif kind == "kaiming_normal":
        fan = _kaiming_fan(kw, shape)
        std = _gain(kw.get("nonlinearity", "relu"), kw.get("a", 0.0)) / math.sqrt(fan)
        out = rng.normal(0.0, std, shape)
    elif kind == "trunc_normal":
        out = _trunc_normal(rng, shape, kw.get("mean", 0.0), kw.get("std", 1.0), kw.get("a", -2.0), kw.get("b", 2.0))
    elif kind == "xavier_uniform":
        fi, fo = fans(shape)
        bound = kw.get("gain", 1.0) * math.sqrt(6.0 / (fi + fo))
        out = rng.uniform(-bound, bound, shape)
    elif kind == "xavier_normal":
        fi, fo = fans(shape)
        out = rng.normal(0.0, kw.get("gain", 1.0) * math.sqrt(2.0 / (fi + fo)), shape)
    elif kind == "uniform":
        if "bound" in kw:
            out = rng.uniform(-kw["bound"], kw["bound"], shape)
        else:
            out = rng.uniform(kw.get("low", 0.0), kw.get("high", 1.0), shape)
    elif kind == "bias_uniform":
        fan_in = kw["fan_in"]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        out = rng.uniform(-bound, bound, shape)
    elif kind == "normal":
        out = rng.normal(kw.get("mean", 0.0), kw.get("std", 1.0), shape)
    elif kind == "zeros":
        out = np.zeros(shape)
    elif kind == "ones":
        out = np.ones(shape)
    elif kind == "constant":
        out = np.full(shape, kw["value"])
    elif kind == "values":
        out = np.asarray(kw["values"]).reshape(shape)       # int64 buffers keep every digit (no float64 detour)
    elif kind == "embedding":
        out = rng.normal(0.0, 1.0, shape)
        if kw.get("padding_idx") is not None:
            out[kw["padding_idx"]] = 0.0
    else:
        raise ValueError(f"unknown initialiser {kind!r}")
    return np.asarray(out, dtype=dtype)


def init_for(node: Any, spec: Any) -> Init:
    """The initialiser of one of node's parameters: the layer's `init:` where it applies (`init: KIND` sets
    the weights; `init: {param: KIND, ...}` the parameters it names), else the op's default. A buffer always
    keeps its own (its value, or the running statistics' start)."""
    if spec.buffer:
        return spec.init
    if isinstance(node.init, dict):
        return node.init.get(spec.name, spec.init)
    return node.init if node.init is not None and init_applies(spec.name) else spec.init


def initial_state(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Every parameter and buffer by state_dict name, drawn in graph.params() order from one generator
    seeded with `seed` (runtime.Model(graph, seed) starts from exactly these values)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, (spec, node) in graph.params().items():
        out[name] = initialise(init_for(node, spec), spec.shape, rng, NP_DTYPES.get(spec.dtype, np.float32))
    return out
