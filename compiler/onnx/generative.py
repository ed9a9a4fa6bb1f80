"""Generative-model helpers. kl_normal is a loss: pruned from inference graphs, no lowering."""
from __future__ import annotations

from ..ir import Node
from .registry import Builder, lowering


@lowering("reparameterize")
def reparameterize(b: Builder, node: Node, x: list, p: list) -> str:
    """Inference is eval mode: z = mu (broadcast to logvar's shape when that is larger)."""
    if tuple(node.out.shape) == tuple(b.ins[0].shape):
        return b.op("Identity", [x[0]])
    return b.op("Expand", [x[0], b.op("Shape", [x[1]])])
