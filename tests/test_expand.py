"""Expansion: blocks, repeat, when, call, imports, params, naming — checked on small specs."""
from pathlib import Path

import pytest

import compiler
from compiler.errors import SpecError

BLOCKS = """
inputs: {x: [N, 8]}
params: {width: 16}
blocks:
  mlp_block:
    params: {units: int, skip: true}
    inputs: [x]
    layers:
      - {op: linear, name: fc1, out_features: "${units}"}
      - relu
      - {op: linear, name: fc2, out_features: "${shape(x)[1]}"}
      - {op: add, name: res, in: [fc2, x], when: "${skip}"}
    outputs: [res]
  two_heads:
    params: {k: 3}
    layers:
      - {op: linear, name: mu, out_features: "${k}"}
      - {op: linear, name: logvar, in: x, out_features: "${k}"}
    outputs: {mu: mu, logvar: logvar}
layers:
  - {use: mlp_block, name: layer1, units: "${width}", repeat: 2}
  - {use: mlp_block, name: plain, units: 4, skip: false}
  - {use: two_heads, name: enc}
  - {op: add, name: both, in: ["enc:mu", "enc:logvar"]}
  - {op: linear, name: probe, in: layer1.0.fc1, out_features: 2}
outputs: {z: both, mu: "enc:mu"}
"""


def compile_(text, **kw):
    return compiler.compile_text(text, **kw)


def test_blocks_repeat_when_ports_and_hierarchical_names():
    g = compile_(BLOCKS)
    names = [n.name for n in g.nodes]
    assert "layer1.0.fc1" in names and "layer1.1.res" in names
    assert "plain.res" not in names                       # when: false -> identity, not built
    assert g.node("plain.fc2").out.shape == ("N", 8)
    assert set(g.params()) >= {"layer1.0.fc1.weight", "layer1.1.fc2.bias", "enc.mu.weight", "probe.weight"}
    assert g.node("probe").inputs[0].node == "layer1.0.fc1"
    assert g.outputs["z"].shape == ("N", 3)
    assert list(g.outputs) == ["z", "mu"]


def test_default_names_count_named_nodes_too():
    g = compile_("inputs: {x: [N, 4]}\nlayers: [relu, {op: relu, name: r}, relu, {linear: 3}]\n")
    assert [n.name for n in g.nodes] == ["relu_1", "r", "relu_3", "linear_1"]


def test_repeat_index_and_chain():
    g = compile_("""
inputs: {x: [N, 4]}
layers:
  - {op: linear, name: fc, out_features: "${4 * (index + 1)}", repeat: 3}
""")
    assert [(n.name, n.out.shape[-1]) for n in g.nodes] == [("fc.0", 4), ("fc.1", 8), ("fc.2", 12)]
    assert g.node("fc.1").inputs[0].node == "fc.0"
    assert list(g.outputs.values())[0].shape == ("N", 12)


def test_call_shares_parameters():
    g = compile_("""
inputs: {a: [N, 4], b: [N, 4]}
blocks:
  tower:
    layers: [{op: linear, name: fc, out_features: 3}, tanh]
layers:
  - {use: tower, name: t, in: a}
  - {call: t, name: t2, in: b}
  - {op: linear, name: head, in: a, out_features: 2}
  - {call: head, name: head2, in: b}
  - {op: pairwise_distance, in: [t, t2]}
""")
    assert set(g.params()) == {"t.fc.weight", "t.fc.bias", "head.weight", "head.bias"}
    assert g.node("t2.fc").param_prefix == "t.fc"
    assert g.node("head2").param_prefix == "head"


def test_set_overrides_and_unknown_param():
    g = compile_(BLOCKS, params={"width": 32})
    assert g.node("layer1.0.fc1").out.shape == ("N", 32)
    with pytest.raises(SpecError, match="no param 'widht'") as e:
        compile_(BLOCKS, params={"widht": 3})
    assert "width" in e.value.diagnostics[0].hint


def test_errors_inside_block_point_at_block_and_use_site():
    text = """inputs: {x: [N, 8]}
blocks:
  b:
    params: {u: int}
    layers:
      - {op: linear, out_features: "${u}", in_features: 5}
layers:
  - {use: b, u: 3}
"""
    with pytest.raises(SpecError) as e:
        compile_(text, filename="s.yaml")
    d = e.value.diagnostics[0]
    assert d.loc.line == 6 and d.notes and d.notes[0][0].line == 8
    assert "expects 5 input features" in d.message


@pytest.mark.parametrize("text,msg", [
    ("inputs: {x: [N, 4]}\nlayers: [{use: nope}]\n", "unknown block 'nope'"),
    ("inputs: {x: [N, 4]}\nblocks: {b: {layers: [{use: b}]}}\nlayers: [{use: b}]\n", "recursion"),
    ("inputs: {x: [N, 4]}\nblocks: {b: {params: {u: int}, layers: [relu]}}\nlayers: [{use: b}]\n",
     "needs param 'u'"),
    ("inputs: {x: [N, 4]}\nblocks: {b: {params: {u: int}, layers: [relu]}}\nlayers: [{use: b, u: 2, v: 1}]\n",
     "has no param 'v'"),
    ("inputs: {x: [N, 4]}\nblocks: {b: {params: {u: int}, layers: [relu]}}\nlayers: [{use: b, u: 2.5}]\n",
     "must be int"),
    ("inputs: {x: [N, 4]}\nlayers: [{call: nothing}]\n", "not a block instance"),
    ("inputs: {x: [N, 4]}\nlayers: [relu, {op: relu, name: relu_1}]\n", "duplicate name"),
    ("inputs: {x: [N, 4]}\nlayers: [{op: relu, repeat: 0}]\n", "repeat must be a positive"),
    ("inputs: {x: [N, 4]}\nlayers: [{op: relu, when: 3}]\n", "when must be true or false"),
    ("inputs: {x: [N, 4]}\nlayers: [{linear: 2}]\noutputs: [linear_1:foo]\n", "no output port 'foo'"),
    ("inputs: {x: [N, 4]}\nlayers: [{linear: 2, init: kaiming_unifrom}]\n", "unknown initialiser"),
    ("inputs: {x: [N, 4]}\nlayerz: []\n", "unknown key 'layerz'"),
    ("inputs: {x: [N, 0]}\nlayers: [relu]\n", "positive integer or a symbol"),
])
def test_expansion_errors(text, msg):
    with pytest.raises(SpecError, match=msg):
        compile_(text)


def test_imports_relative_std_escape_and_cycle(tmp_path: Path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.yaml").write_text(
        "blocks:\n  dense:\n    params: {u: int}\n    layers: [{op: linear, name: fc, out_features: '${u}'}, relu]\n")
    spec = tmp_path / "net.yaml"
    spec.write_text("imports: {l: lib/blocks.yaml}\ninputs: {x: [N, 4]}\nlayers: [{use: l.dense, name: d, u: 5}]\n")
    g = compiler.compile_file(spec)
    assert "d.fc.weight" in g.params()

    spec.write_text("imports: {l: ../outside.yaml}\ninputs: {x: [N, 4]}\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="outside the spec's folder"):
        compiler.compile_file(spec)
    spec.write_text("imports: {l: /etc/passwd}\ninputs: {x: [N, 4]}\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="absolute paths"):
        compiler.compile_file(spec)

    (tmp_path / "a.yaml").write_text("imports: {b: b.yaml}\nblocks: {}\n")
    (tmp_path / "b.yaml").write_text("imports: {a: a.yaml}\nblocks: {}\n")
    spec.write_text("imports: {a: a.yaml}\ninputs: {x: [N, 4]}\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="import cycle"):
        compiler.compile_file(spec)
    spec.write_text("imports: {s: 'std:no_such_lib'}\ninputs: {x: [N, 4]}\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="no standard library file"):
        compiler.compile_file(spec)


def test_independent_errors_all_reported():
    text = """inputs: {x: [N, 4]}
layers:
  - {op: linaer, out_features: 3}
  - {op: linear, out_featurs: 3}
  - {op: relu, in: nowhere}
  - {op: linear, name: ok, out_features: 2, in: x}
  - {op: linear, name: bad, out_features: 2, in_features: 9, in: ok}
"""
    with pytest.raises(SpecError) as e:
        compile_(text)
    msgs = [d.message for d in e.value.diagnostics]
    assert len(msgs) == 4, msgs
    assert "unknown op 'linaer'" in msgs[0] and "out_featurs" in msgs[1] and "nowhere" in msgs[2]
    assert "expects 9 input features" in msgs[3]


def test_train_section_checks():
    base = "inputs: {x: [N, 4], y: [N, 2]}\nlayers: [{op: linear, name: fc, out_features: 2}, " \
           "{op: mse_loss, name: loss, in: [fc, y]}]\n"
    compile_(base + "train: {objective: loss, freeze: ['fc.*']}\n")
    with pytest.raises(SpecError, match="matches no parameter"):
        compile_(base + "train: {objective: loss, freeze: ['conv.*']}\n")
    with pytest.raises(SpecError, match="must be a scalar"):
        compile_(base + "train: {objective: fc}\n")
    with pytest.raises(SpecError, match="unknown key 'lrate'") as e:
        compile_(base + "train: {objective: loss, optimizer: {type: sgd, lrate: 0.1}}\n")
    assert "lr" in e.value.diagnostics[0].hint


def test_blocks_see_the_evaluated_params_and_set_overrides():
    """A block reads the file's params as its layers do: computed from earlier params, and --set applied."""
    text = """
specc: 1
name: t
params: {a: [1, 2], width: "${a[0] + a[1]}"}
inputs: {x: [N, 4]}
blocks:
  blk:
    layers: [{op: linear, name: fc, out_features: "${width}"}]
layers:
  - {use: blk, name: b}
"""
    assert compiler.compile_text(text).node("b.fc").out.shape == ("N", 3)
    assert compiler.compile_text(text, params={"width": 7}).node("b.fc").out.shape == ("N", 7)
    assert compiler.compile_text(text, params={"a": [4, 4]}).node("b.fc").out.shape == ("N", 8)
