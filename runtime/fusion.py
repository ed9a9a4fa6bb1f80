"""Training-time fusion of producer → activation pairs (the training plan's part of issue 15's item 3).

A pair (A, B) of plan nodes fuses when B's only input is A's only output, nobody else reads that output
and it is not asked for: the pair then runs as one kernel of kernels.registry.FUSED (forward and
backward), which never materialises A's output as a tensor of its own. The pairs are found once per plan
(`pairs`); the fused kernel gives the same bits as the two kernels one after the other (tests/test_fusion.py),
so fusion changes only the time and memory. It is off while `model.check_finite` is on (that check names
the first node whose own output is not finite), and `SPECC_FUSE=0` turns it off.

Fused now: batch_norm → relu in training (kernels/normalisation.py `batch_norm_relu`): ReLU runs inside
batch norm's forward passes (onnxruntime's graph or the NumPy pieces) and its mask inside batch norm's
backward passes, instead of two more passes over the activation.
"""
from __future__ import annotations

import os

from compiler.ir import Node, Ref

from .kernels.registry import FUSED


def enabled() -> bool:
    return os.environ.get("SPECC_FUSE", "1").strip().lower() not in ("0", "off", "false", "no")


def pairs(nodes: list[Node], outputs: list[Ref]) -> dict[int, int]:
    """{index of A: index of B} in `nodes` for every pair that fuses (see the module docstring)."""
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for r in n.inputs:
            if r is not None:
                readers.setdefault(r.node, []).append(i)
    asked = {r.node for r in outputs}
    found: dict[int, int] = {}
    index = {n.name: i for i, n in enumerate(nodes)}
    for j, b in enumerate(nodes):
        if len(b.inputs) != 1 or b.inputs[0] is None or b.inputs[0].port is not None:
            continue
        i = index.get(b.inputs[0].node)
        if i is None:
            continue
        a = nodes[i]
        if (a.op, b.op) in FUSED and len(a.outputs) == 1 and readers.get(a.name) == [j] and a.name not in asked:
            found[i] = j
    return found
