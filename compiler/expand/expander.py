"""The Expander: the state of one expansion (nodes built so far, every name, block instances), with its
behaviour in layers.py (the walk over layers), op_nodes.py and blocks.py."""
from __future__ import annotations

from ..ir import BlockUse, Node
from ..values import Value
from .blocks import BlockNodes
from .diagnose import Compiler
from .layers import LayerExpansion
from .op_nodes import OpNodes


class Expander(LayerExpansion, OpNodes, BlockNodes):
    def __init__(self, c: Compiler):
        self.c = c
        self.nodes: list[Node] = []
        self.all: dict[str, Value] = {}              # every full name -> value (hierarchical lookups)
        self.node_by_name: dict[str, Node] = {}
        self.param_shapes: dict[str, tuple] = {}     # full param name -> shape
        self.instances: dict[str, tuple] = {}        # full instance name -> (block name, params, module)
        self.uses: dict[str, BlockUse] = {}          # full instance name -> what Graph.instances reports
