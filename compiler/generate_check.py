"""Checking a spec's `generate:` section (autoregressive decoding) against the expanded graph, with positions.

Every reference is resolved as a layer's `in:` is (node, node:port, block instance, input), then stored
in canonical form (`node` or `node:port`), so the runtime reads plain node ports. The rules:

- `feed` is an int64 input [N, T] with a symbolic T (it grows by one token a step);
- `logits` depends on `feed`; it is [N, T, V] (the last position gives the next token) or [N, V];
- `bos`, `eos`, `pad` are token ids below V;
- `encoder` lists the other inputs the logits read (given once by the user); by default all of them;
- `state` maps a ref read as the decoder's initial state (which must not depend on `feed`, e.g. an
  encoder's `enc:h`) to the ref of the state after a step (which must, e.g. the decoder's `dec:h`), of the
  same shape: then each step feeds only the newest token and carries the state, instead of re-running the
  whole prefix.
"""
from __future__ import annotations

from typing import Any

from .errors import did_you_mean
from .ir import Node, Ref, TensorType
from .load import SMap, locate
from .values import Poisoned


def canonical(ref: Ref, nodes: dict[str, Node]) -> str:
    """`node` for a node's first port or an input, `node:port` otherwise."""
    n = nodes.get(ref.node)
    if n is None or ref.port is None or ref.port == next(iter(n.outputs)):
        return ref.node
    return f"{ref.node}:{ref.port}"


def upstream(ref_node: str, nodes: dict[str, Node]) -> set[str]:
    """Names of the nodes and inputs `ref_node` is computed from (itself included)."""
    seen: set[str] = set()
    stack = [ref_node]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in nodes:
            stack.extend(r.node for r in nodes[name].inputs if r is not None)
    return seen


def check_generate(c: Any, ex: Any, tree: SMap, gen: Any, top: Any, inputs: dict[str, TensorType],
                   outputs: dict[str, Ref] | None = None) -> Any:
    """The section with canonical references, or None after reporting errors through `c`."""
    gtree = tree["generate"]
    nodes = {n.name: n for n in ex.nodes}
    before = len(c.diags)

    def resolve(text: str, path: tuple) -> tuple[Ref, TensorType] | None:
        if outputs and text in outputs and text not in top.names:       # a public output name
            text = str(outputs[text])
        try:
            return ex.resolve(text, top, locate(gtree, path)).default
        except Poisoned:
            return None

    feed_t = inputs.get(gen.feed)
    if feed_t is None:
        c.error(f"generate: feed '{gen.feed}' is not an input of the spec", locate(gtree, ("feed",)),
                did_you_mean(gen.feed, list(inputs)) or f"its inputs are: {', '.join(inputs)}")
    elif feed_t.dtype != "int64" or feed_t.rank != 2 or not isinstance(feed_t.shape[1], str):
        c.error(f"generate: feed '{gen.feed}' must be an int64 input [N, T] with a symbolic length T "
                f"(the tokens so far), but it is {feed_t.dtype} {feed_t}", locate(gtree, ("feed",)),
                f"declare it as {gen.feed}: {{shape: [N, T], dtype: int64}}")
    logits = resolve(gen.logits, ("logits",))
    vocab = _check_logits(c, gen, gtree, logits, nodes, feed_t is not None)
    for key in ("bos", "eos", "pad"):
        v = getattr(gen, key)
        if v is not None and vocab is not None and v >= vocab:
            c.error(f"generate: {key} {v} is not a token id: the logits give {vocab} classes",
                    locate(gtree, (key,)))
    encoder = _check_encoder(c, gen, gtree, logits, nodes, inputs)
    state = _check_state(c, gen, gtree, resolve, nodes)
    if len(c.diags) > before or logits is None:
        return None
    return gen.model_copy(update={"logits": canonical(logits[0], nodes), "encoder": encoder, "state": state})


def _check_logits(c: Any, gen: Any, gtree: SMap, logits: tuple[Ref, TensorType] | None,
                  nodes: dict[str, Node], feed_ok: bool) -> int | None:
    if logits is None:
        return None
    loc = locate(gtree, ("logits",))
    ref, t = logits
    if t.rank not in (2, 3) or not t.dtype.startswith("float"):
        c.error(f"generate: logits '{gen.logits}' must be float scores [N, T, V] or [N, V], but it is "
                f"{t.dtype} {t}", loc, "name the layer that gives one score per vocabulary word")
        return None
    if feed_ok and gen.feed not in upstream(ref.node, nodes):
        c.error(f"generate: logits '{gen.logits}' does not depend on the feed input '{gen.feed}', so feeding "
                "tokens back cannot change it", loc, "name the decoder's output layer")
    return t.shape[-1] if isinstance(t.shape[-1], int) else None


def _check_encoder(c: Any, gen: Any, gtree: SMap, logits: tuple[Ref, TensorType] | None,
                   nodes: dict[str, Node], inputs: dict[str, TensorType]) -> list[str] | None:
    needed = [k for k in inputs if logits is not None and k in upstream(logits[0].node, nodes) and k != gen.feed]
    if gen.encoder is None:
        return needed
    for i, name in enumerate(gen.encoder):
        loc = locate(gtree, ("encoder", i))
        if name not in inputs:
            c.error(f"generate: encoder input '{name}' is not an input of the spec", loc,
                    did_you_mean(name, list(inputs)) or f"its inputs are: {', '.join(inputs)}")
        elif name == gen.feed:
            c.error(f"generate: '{name}' is the feed input; encoder lists the other inputs, read once", loc)
    missing = [k for k in needed if k not in gen.encoder]
    if missing and logits is not None:
        c.error(f"generate: the logits also read input{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)}, which encoder does not list",
                locate(gtree, ("encoder",)), f"add {missing[0]} to encoder (or leave encoder out: it defaults "
                "to every input the logits read besides feed)")
    return list(gen.encoder)


def _check_state(c: Any, gen: Any, gtree: SMap, resolve: Any, nodes: dict[str, Node]) -> dict[str, str]:
    out: dict[str, str] = {}
    stree = gtree.get("state")
    for key, nxt in gen.state.items():
        kloc = stree.key_locs.get(key, stree.loc) if isinstance(stree, SMap) else locate(gtree, ("state",))
        a = resolve(key, ("state",))
        b = resolve(nxt, ("state", key))
        if a is None or b is None:
            continue
        if gen.feed in upstream(a[0].node, nodes):
            c.error(f"generate: state '{key}' depends on the feed input '{gen.feed}'; a state key is the initial "
                    "state the decoder reads (e.g. the encoder's enc:h), computed once", kloc)
            continue
        if gen.feed not in upstream(b[0].node, nodes):
            c.error(f"generate: the next state '{nxt}' does not depend on the feed input '{gen.feed}'",
                    locate(gtree, ("state", key)), "name the decoder's state port, e.g. dec:h")
            continue
        if a[1].rank != b[1].rank or a[1].dtype != b[1].dtype or any(
                isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(a[1].shape, b[1].shape)):
            c.error(f"generate: state '{key}' ({a[1]}) and its next state '{nxt}' ({b[1]}) differ in shape",
                    locate(gtree, ("state", key)))
            continue
        out[canonical(a[0], nodes)] = canonical(b[0], nodes)
    return out
