"""Warnings about specs that compile but are very likely not what their author meant.

Each lint reads the built Graph (never the YAML again) and returns Diagnostics placed at the node at fault:

- a node with parameters whose output reaches no output, loss or train/generate reference (its
  parameters are counted in the totals and never trained: e.g. a residual `add` whose `when:` is false
  passes its first input through and drops the branch that fed its second);
- softmax or log_softmax feeding `cross_entropy`, which takes logits;
- a `linear` applied to the rank-4 output of a convolution or pooling layer (a classifier without its
  `flatten`: the linear acts on the width only).

`specc check` prints them as warnings (exit 0) or, with `--werror`, as errors (exit 1); every other command
that compiles a spec (train, compile, run, ...) prints them once and goes on (docs/spec-language.md,
"Warnings").
"""
from __future__ import annotations

import math
import sys
from typing import Any, Iterable

from .errors import Diagnostic, SpecError, _excerpt
from .ir import Graph, Node, Ref

# ops that pass a tensor on without changing what its values mean (a softmax stays a softmax through them)
_PASS_THROUGH = {"identity", "dropout", "detach", "reshape", "flatten", "permute", "transpose", "squeeze",
                 "unsqueeze"}
# ops applied value by value or channel by channel: an NCHW layout stays NCHW through them
_SAME_LAYOUT = {"identity", "dropout", "detach", "relu", "leaky_relu", "prelu", "sigmoid", "tanh", "silu",
                "softplus", "gelu", "elu", "batch_norm"}
_SPATIAL = {"conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "upsample"}
_shown: set[str] = set()                  # warnings already printed by this process (a sweep compiles often)


def lint(g: Graph) -> list[Diagnostic]:
    """Every warning for a compiled graph, in the order of the nodes they are about."""
    nodes = {n.name: n for n in g.nodes}
    found = unused_parameters(g, nodes) + softmax_into_cross_entropy(g, nodes) + linear_on_feature_maps(g, nodes)
    return sorted(found, key=lambda d: (d.loc.file, d.loc.line, d.loc.col) if d.loc else ("", 0, 0))


def report(g: Graph, werror: bool | None = None) -> None:
    """Print the graph's warnings to stderr. `werror` True (check --werror): raise them as a SpecError instead;
    False (check): print them all; None (every other command): print each once per process, so a sweep that
    compiles its spec once per run does not repeat them."""
    found = lint(g)
    if werror and found:
        raise SpecError(diagnostics=found)
    for d in found:
        text = render_warning(d)
        if werror is None:
            if text in _shown:
                continue
            _shown.add(text)
        print(text, file=sys.stderr)


def as_json(g: Graph) -> list[dict[str, Any]]:
    """The warnings for `specc check --json`, in the shape of its errors."""
    return [{"file": d.loc.file if d.loc else g.source, "line": d.loc.line if d.loc else None,
             "col": d.loc.col if d.loc else None, "message": d.message, "hint": d.hint} for d in lint(g)]


def render_warning(d: Diagnostic) -> str:
    """A Diagnostic rendered as a warning: `file:line:col: warning: ...`, the source line, notes, hint."""
    lines = [f"{d.loc}: warning: {d.message}" if d.loc else f"warning: {d.message}"]
    if d.loc:
        lines += _excerpt(d.loc, None)
    for loc, text in d.notes:
        lines += [f"{loc}: note: {text}"] + _excerpt(loc, None)
    if d.hint:
        lines.append(f"hint: {d.hint}")
    return "\n".join(lines)


# -- 1. parameters nothing uses ---------------------------------------------------------------
def unused_parameters(g: Graph, nodes: dict[str, Node]) -> list[Diagnostic]:
    """Nodes with trainable parameters that no output, loss or train/generate reference depends on. Copies
    of one layer (a block used several times, a repeat) give one warning with their total."""
    live: set[str] = set()
    stack = _roots(g, nodes)
    while stack:                              # one walk for every root: linear in the graph's size
        name = stack.pop()
        if name in live or name not in nodes:
            continue
        live.add(name)
        stack.extend(r.node for r in nodes[name].inputs if r is not None)
    used = {n.param_name(p) for n in g.nodes if n.name in live for p in n.params}
    groups: dict[Any, list[tuple[Node, int]]] = {}
    for n in g.nodes:
        if n.name in live:
            continue
        count = sum(math.prod(p.shape) for p in n.params if not p.buffer and n.param_name(p) not in used)
        if count:
            groups.setdefault((n.loc, n.op), []).append((n, count))
    return [_unused_warning(copies) for copies in groups.values()]


def _roots(g: Graph, nodes: dict[str, Node]) -> list[str]:
    """What a spec's parameters are for: its outputs, its losses, and the references of train and generate."""
    from .ops import OPS
    roots = [r.node for r in g.output_refs.values()]
    roots += [n.name for n in g.nodes if OPS[n.op].loss]
    for name in _train_refs(g.train) + _generate_refs(g.generate):
        try:
            roots.append(g.ref_of(name).node)
        except Exception:                  # resolved by the compiler already; a name it refused is its error
            continue
    return [r for r in roots if r in nodes]


def _train_refs(train: Any) -> list[str]:
    if train is None:
        return []
    objectives = [ph.objective for ph in train.phases or []] + [train.objective]
    refs = [k for o in objectives if o is not None for k in ([o] if isinstance(o, str) else o)]
    return refs + [r for r in (train.predict, train.target) if r]


def _generate_refs(gen: Any) -> list[str]:
    if gen is None:
        return []
    return [gen.logits, *gen.state.keys(), *gen.state.values()]


def _unused_warning(copies: list[tuple[Node, int]]) -> Diagnostic:
    n, count = copies[0]
    total = sum(c for _, c in copies)
    what = f"{n.op} '{n.name}' has {count:,} parameters"
    if len(copies) > 1:
        others = ", ".join(f"'{m.name}'" for m, _ in copies[1:4]) + (", ..." if len(copies) > 4 else "")
        what += f" ({total:,} with its {len(copies) - 1} other copies {others})"
    notes = [(loc, "in the block used here") for loc in n.use_sites[-1:]]
    return Diagnostic(f"{what}, but no output or loss depends on {'it' if len(copies) == 1 else 'them'}: "
                      "they are counted in the totals and never trained", n.loc,
                      f"read '{n.name}' from a layer, an output or a loss, or remove it; note that a node whose "
                      "`when:` is false passes its first input through and drops the others", notes)


# -- 2. probabilities given to cross_entropy ----------------------------------------------------
def softmax_into_cross_entropy(g: Graph, nodes: dict[str, Node]) -> list[Diagnostic]:
    out = []
    for n in g.nodes:
        if n.op != "cross_entropy" or not n.inputs or n.inputs[0] is None:
            continue
        src = _source(n.inputs[0], nodes, _PASS_THROUGH)
        if src is None or src.op not in ("softmax", "log_softmax"):
            continue
        before = str(src.inputs[0]) if src.inputs and src.inputs[0] is not None else "the logits"
        if src.op == "softmax":
            msg = (f"cross_entropy '{n.name}' takes logits, but its input comes from softmax '{src.name}': the "
                   "loss applies log_softmax to probabilities, so it trains slowly or not at all")
            hint = (f"give cross_entropy the logits ('{before}') and keep the softmax for predictions, or use "
                    "log_softmax followed by nll_loss")
        else:
            msg = (f"cross_entropy '{n.name}' takes logits, but its input comes from log_softmax '{src.name}': "
                   "log_softmax is applied twice")
            hint = f"use nll_loss after log_softmax, or give cross_entropy the logits ('{before}')"
        out.append(Diagnostic(msg, n.loc, hint, [(src.loc, f"{src.op} '{src.name}' is here")] if src.loc else []))
    return out


# -- 3. a classifier without its flatten ----------------------------------------------------------
def linear_on_feature_maps(g: Graph, nodes: dict[str, Node]) -> list[Diagnostic]:
    out = []
    for n in g.nodes:
        if n.op != "linear" or not n.inputs or n.inputs[0] is None:
            continue
        t = g.type_of(n.inputs[0])
        src = _source(n.inputs[0], nodes, _SAME_LAYOUT)
        if t.rank != 4 or src is None or src.op not in _SPATIAL:
            continue
        flat = math.prod(t.shape[1:]) if all(isinstance(d, int) for d in t.shape[1:]) else None
        size = f"N×{flat}" if flat else "N×C·H·W"
        out.append(Diagnostic(
            f"linear '{n.name}' is applied to {t}, the feature maps of {src.op} '{src.name}': a linear acts on "
            f"the last dimension only (the width, {t.shape[3]}), so it gives {n.out}", n.loc,
            f"add flatten before the linear (to give it {size}), or global_avg_pool2d for N×{t.shape[1]}",
            [(src.loc, f"{src.op} '{src.name}' is here")] if src.loc and src.loc != n.loc else []))
    return out


def _source(ref: Ref, nodes: dict[str, Node], through: Iterable[str]) -> Node | None:
    """The node behind `ref`, looking through the ops in `through`; None for a graph input."""
    n = nodes.get(ref.node)
    seen = 0
    while n is not None and n.op in through and n.inputs and n.inputs[0] is not None and seen < 1000:
        n, seen = nodes.get(n.inputs[0].node), seen + 1
    return n
