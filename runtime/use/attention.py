"""`specc attention`: the attention weights of a transformer or ViT layer as a heat map.

    specc attention SPEC --weights CKPT --input tokens=t.npy [--input ...] [--node NAME] [--vocab FILE] -o OUT.png

`--node` is a multi_head_attention node or a block instance holding one (`encoder.0` finds
`encoder.0.self_attn`); by default the spec's first. Its `weights` port is [N, Tq, Tk], averaged over the
heads as PyTorch's nn.MultiheadAttention returns them: row q says how much query position q reads each key.
OUT.png draws up to four examples; OUT.npy beside it holds every example's weights.
"""
from __future__ import annotations

import argparse

import numpy as np

from compiler.errors import UserError, did_you_mean

from ..model import Model
from .common import beside, check_inputs, guard_picture, input_files, load_model, parse_values, save_npy
from .generate import read_vocab
from .plots import figure


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


def cmd_attention(args: argparse.Namespace) -> int:
    guard_picture(args.out, ".npy", (args.spec, args.weights, *input_files(args.input)))
    vocab = read_vocab(args.vocab) if args.vocab else None
    model = load_model(args.spec, args.weights, args.set)
    inputs = parse_values(args.input)
    check_inputs(model, inputs)
    node = attention_node(model, args.node)
    w = attention_weights(model, inputs, node)
    npy = beside(args.out, ".npy")
    save_npy(npy, w)
    tokens = next((v for k, v in inputs.items() if model.graph.inputs[k].dtype == "int64" and v.ndim == 2
                   and v.shape[1] == w.shape[-1]), None)
    shown = min(len(w), 4)

    def labels(i: int) -> list[str] | None:
        if tokens is None or w.shape[1] != w.shape[2]:
            return None
        return [vocab[t] if vocab and 0 <= t < len(vocab) else str(t) for t in tokens[i]]

    def draw(fig) -> None:
        for i in range(shown):
            ax = fig.add_subplot(1, shown, i + 1)
            im = ax.imshow(w[i], cmap="viridis", vmin=0, vmax=max(float(w[i].max()), 1e-9))
            ax.set_title(f"{node}, example {i}", fontsize=9)
            ax.set_xlabel("key position")
            ax.set_ylabel("query position")
            lab = labels(i)
            if lab is not None and len(lab) <= 40:
                ax.set_xticks(range(len(lab)), lab, rotation=90, fontsize=7)
                ax.set_yticks(range(len(lab)), lab, fontsize=7)
            fig.colorbar(im, ax=ax, shrink=0.8)

    print(f"{node}: weights {list(w.shape)} (examples, query positions, key positions)")
    if figure(args.out, npy, draw, size=(4.2 * shown, 3.8)):
        print(f"wrote {args.out} and {npy}")
    return 0
