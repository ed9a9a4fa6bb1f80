"""The Graph's public attributes as interfaces.md states them: inputs/outputs as {name: TensorType},
topologically ordered nodes, summary() and nx."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import compiler
from compiler import Ref, TensorType

ROOT = Path(__file__).resolve().parent.parent

TWO_OUTPUTS = """
inputs:
  x: [N, 4]
  y: {shape: [N], dtype: int64}
layers:
  - {op: linear, name: enc, out_features: 6}
  - {op: relu, name: act}
  - {op: linear, name: head, out_features: 3}
  - {op: cross_entropy, name: loss, in: [head, y]}
outputs: {logits: head, hidden: enc, loss: loss}
"""


def test_inputs_and_outputs_are_tensor_types_in_the_spec_order():
    g = compiler.compile_text(TWO_OUTPUTS)
    assert g.inputs == {"x": TensorType(("N", 4)), "y": TensorType(("N",), "int64")}
    assert list(g.outputs) == ["logits", "hidden", "loss"]
    assert g.outputs["logits"] == TensorType(("N", 3), "float32")
    assert g.outputs["hidden"].shape == ("N", 6) and g.outputs["loss"].shape == ()
    assert all(isinstance(t, TensorType) for t in g.outputs.values())
    assert isinstance(g.outputs["logits"].shape[0], str)                 # symbols stay strings
    # the references behind them
    assert g.output_refs == {"logits": Ref("head"), "hidden": Ref("enc"), "loss": Ref("loss")}
    assert {k: g.type_of(r) for k, r in g.output_refs.items()} == g.outputs


def test_outputs_is_read_only():
    g = compiler.compile_text(TWO_OUTPUTS)
    with pytest.raises(AttributeError):
        g.outputs = {}
    g.outputs.pop("logits")                       # a fresh dict each time: the graph is unchanged
    assert list(g.outputs) == ["logits", "hidden", "loss"]


def test_multi_port_outputs_have_the_port_type():
    g = compiler.compile_file(ROOT / "specs" / "gru_classifier.yaml")
    assert g.outputs["hidden"].shape == (1, "N", 128)
    assert g.output_refs["hidden"].port is not None


def test_nodes_are_topologically_ordered_ir_nodes():
    g = compiler.compile_file(ROOT / "specs" / "resnet18.yaml")
    seen = set(g.inputs)
    for n in g.nodes:
        assert isinstance(n, compiler.Node) and n.name and n.op
        assert all(r is None or r.node in seen for r in n.inputs), n.name
        assert all(isinstance(t, TensorType) for t in n.outputs.values())
        seen.add(n.name)


def test_summary_is_what_specc_check_prints(capsys):
    from cli.main import main
    path = str(ROOT / "specs" / "lenet5.yaml")
    assert main(["check", path]) == 0
    assert capsys.readouterr().out.rstrip("\n") == compiler.compile_file(path).summary().rstrip("\n")


def test_nx_is_the_dataflow_digraph():
    nx = pytest.importorskip("networkx")
    g = compiler.compile_file(ROOT / "specs" / "resnet18.yaml")
    d = g.nx
    assert isinstance(d, nx.DiGraph)
    assert g.nx is d                                         # built once
    assert list(d.nodes) == [n.name for n in g.nodes]        # graph inputs are not vertices
    assert all(d.nodes[n.name]["node"] is n for n in g.nodes)
    want = {(r.node, n.name) for n in g.nodes for r in n.inputs if r is not None and g.has_node(r.node)}
    assert set(d.edges) == want
    assert nx.is_directed_acyclic_graph(d)
    order = {name: i for i, name in enumerate(nx.topological_sort(d))}
    assert all(order[a] < order[b] for a, b in d.edges)
    assert set(nx.ancestors(d, "fc")) >= {"conv1", "layer4.1.conv2"}
    # ports: an edge from a multi-port node records which port is read
    gru = compiler.compile_file(ROOT / "specs" / "gru_classifier.yaml")
    ports = {(a, b): p for a, b, p in gru.nx.edges(data="port")}
    want = {(r.node, n.name): r.port for n in gru.nodes for r in n.inputs if r is not None and gru.has_node(r.node)}
    assert ports == want


def test_networkx_is_imported_only_when_nx_is_read():
    code = ("import sys, compiler\n"
            "g = compiler.compile_file('specs/lenet5.yaml')\n"
            "g.summary(); g.outputs; g.params()\n"
            "before = 'networkx' in sys.modules\n"
            "n = g.nx.number_of_nodes()\n"
            "print(before, 'networkx' in sys.modules, n == len(g.nodes))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "True"]
