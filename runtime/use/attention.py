"""`specc attention`: the attention weights of a transformer or ViT layer as a heat map.

    specc attention SPEC --weights CKPT --input tokens=t.npy [--input ...] [--node NAME] [--vocab FILE] -o OUT.png

`--node` is a multi_head_attention node or a block instance holding one (`encoder.0` finds
`encoder.0.self_attn`); by default the spec's first. Its `weights` port is [N, Tq, Tk], averaged over the
heads as PyTorch's nn.MultiheadAttention returns them: row q says how much query position q reads each key.
OUT.png draws up to four examples; OUT.npy beside it holds every example's weights.
"""
from __future__ import annotations

import numpy as np

from compiler.errors import UserError, did_you_mean

from ..model import Model


def attention_node(model: Model, name: str | None) -> str:
    nodes = [n.name for n in model.graph.nodes if n.op == "multi_head_attention"]
    if not nodes:
        raise UserError(f"'{model.graph.name}' has no multi_head_attention node", code=2)
    if name is None:
        return nodes[0]
    if name in nodes:
        return name
    inside = [n for n in nodes if n.startswith(name + ".")]
    if inside:
        return inside[0]
    raise UserError(f"'{name}' is not a multi_head_attention node or a block holding one",
                    hint=did_you_mean(name, nodes) or f"attention nodes: {', '.join(nodes[:8])}", code=2)


def attention_weights(model: Model, inputs: dict[str, np.ndarray], node: str) -> np.ndarray:
    ref = f"{node}:weights"
    return model(outputs=[ref], **inputs)[ref]
