"""`specc check --explain NODE`: the formula behind a node's output shape with the numbers filled in, and
where each number came from (the input's shape, an attribute set in the spec, a default).

conv, pooling, conv_transpose, linear, flatten, reshape and concat get their formula; every other op states
its rule in words (its shape rule's docstring)."""
from __future__ import annotations

import math
from typing import Callable

from .errors import UserError, did_you_mean
from .ir import Graph, Node, TensorType
from .ops.convolution import conv_pads, pool_geometry, transpose_output_padding, tup

AXES = {1: ("L",), 2: ("H", "W")}


def _dims(t: TensorType) -> str:
    return "×".join(map(str, t.shape)) or "scalar"


def attr_source(node: Node, attr: str) -> str:
    """'set in the spec' or 'default' for an attribute of `node`."""
    given = attr in getattr(node.attrs, "model_fields_set", set())
    line = f" at line {node.loc.line}" if given and node.loc is not None and node.loc.line else ""
    return f"{attr}, set in the spec{line}" if given else f"{attr}, the default"


def _input(g: Graph, node: Node, k: int = 0) -> tuple[str, TensorType]:
    r = node.inputs[k]
    return str(r), g.type_of(r)


def _floor(num: str, s: int, ceil: bool = False) -> str:
    return f"{'ceil' if ceil else 'floor'}(({num})/{s})"


def _conv(g: Graph, node: Node) -> list[str]:
    a, (src, x) = node.attrs, _input(g, node)
    nd = len(x.shape) - 2
    ks, st, dl = tup(a.kernel_size, nd), tup(a.stride, nd), tup(a.dilation, nd)
    pads = conv_pads(a.padding, ks, dl)
    out = [f"C_out = out_channels = {a.out_channels}   ({attr_source(node, 'out_channels')})"]
    for ax, (i, k, s, d, (lo, hi), o) in enumerate(zip(x.shape[2:], ks, st, dl, pads, node.out.shape[2:])):
        D = AXES[nd][ax]
        pad = f"2·{lo}" if lo == hi else f"{lo} + {hi}"
        if not isinstance(i, int):
            out.append(f"{D}_out = {D}_in = {i}   (stride 1 and padding {pad} = dilation·(kernel−1): the size "
                       "is kept, even a symbolic one)")
            continue
        out.append(f"{D}_out = floor(({D}_in + {'2·padding' if lo == hi else 'pad_before + pad_after'} − "
                   f"dilation·(kernel_size−1) − 1)/stride) + 1")
        out.append(f"      = floor(({i} + {pad} − {d}·({k}−1) − 1)/{s}) + 1 = {o}")
    out.append("where")
    out.append(f"  {'×'.join(map(str, x.shape[2:]))}: {'×'.join(D + '_in' for D in AXES[nd])}, dims 2.. of input "
               f"'{src}' ({_dims(x)})")
    pad_note = (f" ('{a.padding}': {'no padding' if a.padding == 'valid' else 'the output keeps the input size'})"
                if isinstance(a.padding, str) else "")
    for attr, v in (("kernel_size", ks), ("stride", st), ("padding", [p for p, _ in pads]), ("dilation", dl)):
        out.append(f"  {'×'.join(map(str, v))}: {attr_source(node, attr)}{pad_note if attr == 'padding' else ''}")
    return out


def _pool(g: Graph, node: Node) -> list[str]:
    a, (src, x) = node.attrs, _input(g, node)
    ks, st, pd, dl, _ = pool_geometry(a, tuple(x.shape[2:]))
    ceil = a.ceil_mode
    out = [f"C_out = C_in = {x.shape[1]}   (pooling keeps the channels)"]
    for ax, (i, k, s, p, d, o) in enumerate(zip(x.shape[2:], ks, st, pd, dl, node.out.shape[2:])):
        D = AXES[2][ax]
        rule = "ceil" if ceil else "floor"
        out.append(f"{D}_out = {rule}(({D}_in + 2·padding − dilation·(kernel_size−1) − 1)/stride) + 1")
        out.append(f"      = {rule}(({i} + 2·{p} − {d}·({k}−1) − 1)/{s}) + 1 = {o}"
                   + ("   (ceil_mode: a last window starting in the padding is dropped)" if ceil else ""))
    out.append("where")
    out.append(f"  {'×'.join(map(str, x.shape[2:]))}: H_in×W_in, dims 2.. of input '{src}' ({_dims(x)})")
    stride_src = attr_source(node, "stride") + (" (None: stride = kernel_size)" if a.stride is None else "")
    for attr, v, why in (("kernel_size", ks, attr_source(node, "kernel_size")), ("stride", st, stride_src),
                         ("padding", pd, attr_source(node, "padding")),
                         ("dilation", dl, attr_source(node, "dilation") if hasattr(a, "dilation") else
                          "dilation, always 1 for avg_pool2d")):
        out.append(f"  {'×'.join(map(str, v))}: {why}")
    return out


def _conv_transpose(g: Graph, node: Node) -> list[str]:
    a, (src, x) = node.attrs, _input(g, node)
    ks, st, pd, dl = (tup(v, 2) for v in (a.kernel_size, a.stride, a.padding, a.dilation))
    op_ = transpose_output_padding(a, tuple(x.shape[2:]))
    out = [f"C_out = out_channels = {a.out_channels}   ({attr_source(node, 'out_channels')})"]
    for ax, (i, k, s, p, d, q, o) in enumerate(zip(x.shape[2:], ks, st, pd, dl, op_, node.out.shape[2:])):
        D = AXES[2][ax]
        out.append(f"{D}_out = ({D}_in − 1)·stride − 2·padding + dilation·(kernel_size−1) + output_padding + 1")
        out.append(f"      = ({i} − 1)·{s} − 2·{p} + {d}·({k}−1) + {q} + 1 = {o}")
    out.append("where")
    out.append(f"  {'×'.join(map(str, x.shape[2:]))}: H_in×W_in, dims 2.. of input '{src}' ({_dims(x)})")
    for attr, v in (("kernel_size", ks), ("stride", st), ("padding", pd), ("dilation", dl)):
        out.append(f"  {'×'.join(map(str, v))}: {attr_source(node, attr)}")
    why = ("output_padding, from output_size " + "×".join(map(str, tup(a.output_size, 2)))
           if a.output_size is not None else attr_source(node, "output_padding"))
    out.append(f"  {'×'.join(map(str, op_))}: {why}")
    return out


def _linear(g: Graph, node: Node) -> list[str]:
    a, (src, x) = node.attrs, _input(g, node)
    lead = "×".join(map(str, x.shape[:-1]))
    return [f"out = input dims but the last × out_features = {lead + '×' if lead else ''}{a.out_features}",
            "where",
            f"  {lead or '(none)'}: the leading dims of input '{src}' ({_dims(x)}), kept",
            f"  {x.shape[-1]}: in_features, the last dim of input '{src}' (the weight is "
            f"{a.out_features}×{x.shape[-1]})",
            f"  {a.out_features}: {attr_source(node, 'out_features')}"]


def _flatten(g: Graph, node: Node) -> list[str]:
    a, (src, x) = node.attrs, _input(g, node)
    r = x.rank
    s, e = a.start_dim % r if r else 0, a.end_dim % r if r else 0
    merged = x.shape[s:e + 1]
    prod = " · ".join(map(str, merged))
    value = node.out.shape[s] if s < len(node.out.shape) else "?"
    return [f"dims {s}..{e} of the input merge into one: {prod} = {value}; the others are kept",
            f"out = {_dims(node.out)}",
            "where",
            f"  {_dims(x)}: input '{src}'",
            f"  {a.start_dim}: {attr_source(node, 'start_dim')}; {a.end_dim}: {attr_source(node, 'end_dim')}"]


def _reshape(g: Graph, node: Node) -> list[str]:
    a, (src, x) = node.attrs, _input(g, node)
    lines = [f"out = shape {list(a.shape)} = {_dims(node.out)}"]
    if -1 in a.shape:
        known = [d for d in a.shape if d != -1]
        ints = [d for d in x.shape if isinstance(d, int)]
        fill = node.out.shape[list(a.shape).index(-1)]
        lines.append(f"-1 = (elements of the input) / (product of the other sizes) = "
                     f"{' · '.join(map(str, x.shape))} / {' · '.join(map(str, known)) or '1'} = {fill}"
                     + (f"   ({math.prod(ints)} numbers per {' · '.join(str(d) for d in x.shape if not isinstance(d, int))})"
                        if len(ints) != len(x.shape) else ""))
    lines += ["where", f"  {_dims(x)}: input '{src}'", f"  {list(a.shape)}: {attr_source(node, 'shape')}"]
    return lines


def _concat(g: Graph, node: Node) -> list[str]:
    parts = [(str(r), g.type_of(r)) for r in node.inputs if r is not None]
    d = node.attrs.dim % node.out.rank
    sizes = [t.shape[d] for _, t in parts]
    lines = [f"out = the inputs' shape with dim {d} = the sum of their dim {d}",
             f"      {' + '.join(map(str, sizes))} = {node.out.shape[d]}", "where"]
    lines += [f"  {t.shape[d]}: dim {d} of input '{s}' ({_dims(t)})" for s, t in parts]
    lines.append(f"  {node.attrs.dim}: {attr_source(node, 'dim')}")
    return lines


RULES: dict[str, Callable[[Graph, Node], list[str]]] = {
    "conv1d": _conv, "conv2d": _conv, "max_pool2d": _pool, "avg_pool2d": _pool,
    "conv_transpose2d": _conv_transpose, "linear": _linear, "flatten": _flatten, "reshape": _reshape,
    "concat": _concat}


def _in_words(node: Node) -> list[str]:
    from .ops import OPS
    doc = (OPS[node.op].rule.__doc__ or OPS[node.op].doc or "").strip()
    first = " ".join(doc.split("\n\n")[0].split()) if doc else "its shape rule (compiler/ops/)"
    return [f"rule ({node.op}): {first}"]


def explain(g: Graph, name: str) -> str:
    if not g.has_node(name):
        raise UserError(f"--explain: '{g.name}' has no node '{name}'",
                        hint=did_you_mean(name, [n.name for n in g.nodes])
                        or "the node names are in the first column of `specc check`", code=2)
    node = g.node(name)
    ins = ", ".join(f"{r} {_dims(g.type_of(r))}" for r in node.inputs if r is not None)
    where = f" (line {node.loc.line})" if node.loc is not None and node.loc.line else ""
    outs = ", ".join(f"{k} {_dims(t)}" if len(node.outputs) > 1 else _dims(t) for k, t in node.outputs.items())
    head = [f"{node.name}: {node.op}{where}", f"  in:  {ins or '(no inputs)'}", f"  out: {outs}", ""]
    body = RULES.get(node.op, lambda _g, n: _in_words(n))(g, node)
    if node.params:
        body += ["", "parameters: " + ", ".join(f"{node.param_name(p)} {'×'.join(map(str, p.shape)) or 'scalar'}"
                                                for p in node.params)]
    return "\n".join(head + body)
