"""Node names (docs/spec-language.md "Names"): `index` and block params in `name:`, `repeat: K` always naming
`name.0 ... name.K-1`, a name left free by a layer switched off by `when`, PyTorch module names with `-` --
and the errors (at the name's line and column) when a name cannot be used."""
from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.errors import SpecError


def compile_(text: str, **kw) -> compiler.Graph:
    return compiler.compile_text(text, filename="names.yaml", **kw)


def error_of(text: str, **kw):
    with pytest.raises(SpecError) as e:
        compile_(text, **kw)
    assert len(e.value.diagnostics) == 1, e.value.render()
    return e.value.diagnostics[0]


DENSE = """
inputs: {x: [N, 4]}
params: {layers: 3}
blocks:
  dense_layer:
    params: {k: int}
    inputs: [x]
    layers:
      - {op: linear, name: "fc${k}", out_features: "${4 + k}"}
      - {op: relu, name: "act-${k}"}
layers:
  - {use: dense_layer, name: "denselayer${index + 1}", k: "${index}", repeat: "${layers}"}
  - {op: linear, name: head, in: denselayer2, out_features: 2}
"""


def test_index_in_name_names_each_copy_as_torchvision_densenet():
    g = compile_(DENSE)
    assert [n.name for n in g.nodes] == ["denselayer1.fc0", "denselayer1.act-0", "denselayer2.fc1",
                                         "denselayer2.act-1", "denselayer3.fc2", "denselayer3.act-2", "head"]
    assert g.node("denselayer2.fc1").inputs[0].node == "denselayer1.act-0"      # still a chain
    assert g.node("head").inputs[0].node == "denselayer2.act-1"                 # each copy is a name of its own
    assert "denselayer3.fc2.weight" in g.params() and g.node("denselayer3.fc2").out.shape == ("N", 6)
    with pytest.raises(SpecError, match="unknown reference 'denselayer2'"):
        compile_(DENSE, params={"layers": 1})


def test_index_name_with_repeat_one_has_no_suffix():
    g = compile_("inputs: {x: [N, 4]}\nlayers:\n  - {op: linear, name: \"fc${index + 1}\", out_features: 3, "
                 "repeat: 1}\n")
    assert [n.name for n in g.nodes] == ["fc1"] and set(g.params()) == {"fc1.weight", "fc1.bias"}


def test_block_params_in_names():
    g = compile_(DENSE, params={"layers": 2})
    assert g.node("denselayer2.act-1").op == "relu"


@pytest.mark.parametrize("repeat", [1, 3])
def test_repeat_always_numbers_its_copies_and_the_name_means_the_last(repeat):
    g = compile_(f"""
inputs: {{x: [N, 4]}}
layers:
  - {{op: linear, name: stage, out_features: 4, repeat: {repeat}}}
  - {{op: linear, name: head, in: stage, out_features: 2}}
outputs: {{out: head, features: stage}}
""")
    assert [n.name for n in g.nodes] == [f"stage.{i}" for i in range(repeat)] + ["head"]
    last = f"stage.{repeat - 1}"
    assert g.node("head").inputs[0].node == last
    assert g.output_refs["features"].node == last and g.ref_of("stage").node == last
    assert f"stage.{repeat - 1}.weight" in g.params() and "stage.weight" not in g.params()


def test_repeat_one_block_is_named_like_torchvision_resnet():
    g = compiler.compile_file("specs/resnet_digits.yaml")
    params = g.params()
    assert "layer1.0.conv1.weight" in params and "layer2.0.downsample.0.weight" in params
    assert not any(p.startswith("layer1.conv1") for p in params)


def test_index_in_name_without_repeat_is_an_error_at_the_name():
    d = error_of("inputs: {x: [N, 4]}\nlayers:\n  - {op: relu, name: \"r${index}\"}\n")
    assert "reads `index`" in d.message and "no repeat" in d.message and (d.loc.line, d.loc.col) == (3, 22)


def test_copies_with_the_same_name_are_an_error():
    d = error_of("inputs: {x: [N, 4]}\nlayers:\n  - {op: relu, name: \"r${index // 2}\", repeat: 3}\n")
    assert d.message == "copies 0 and 1 of this repeated layer are both named 'r0'" and d.loc.line == 3


OPTIONAL = """
inputs: {x: [N, 4]}
params: {p: 0.0}
layers:
  - {op: linear, name: fc, out_features: 4}
  - {op: dropout, name: "0", p: "${p}", when: "${p > 0}"}
  - {op: linear, name: "0", out_features: 3}
  - {op: relu, name: after, in: "0"}
"""


def test_a_layer_switched_off_by_when_frees_its_name():
    g = compile_(OPTIONAL)
    assert [n.name for n in g.nodes] == ["fc", "0", "after"]
    assert g.node("0").inputs[0].node == "fc" and g.node("after").inputs[0].node == "0"
    d = error_of(OPTIONAL, params={"p": 0.5})                 # both built: the name is taken twice
    assert d.message == "duplicate name '0' in this scope" and (d.loc.line, d.loc.col) == (7, 24)


def test_a_layer_switched_off_leaves_an_earlier_holder_its_name():
    g = compile_("""
inputs: {x: [N, 4]}
layers:
  - {op: linear, name: fc, out_features: 4}
  - {op: linear, name: proj, out_features: 3}
  - {op: linear, name: fc, out_features: 4, when: false}
  - {op: relu, name: after, in: fc}
""")
    assert [n.name for n in g.nodes] == ["fc", "proj", "after"]
    assert g.node("after").inputs[0].node == "fc"            # the built fc, not the switched-off one's input


def test_torch_module_names_with_dashes():
    g = compile_("""
inputs: {x: [N, 4]}
layers:
  - {op: linear, name: block1-0, out_features: 5}
  - {op: relu, name: "act-1"}
  - {op: linear, name: fc, in: block1-0, out_features: "${shape('block1-0')[1] + 1}"}
  - {op: add, name: sum, in: [fc, "${'act-1'}"], when: false}
  - {op: linear, name: 1x1, out_features: 2}
""")
    assert [n.name for n in g.nodes] == ["block1-0", "act-1", "fc", "1x1"]
    assert g.node("fc").out.shape == ("N", 6) and g.ref_of("block1-0").node == "block1-0"


@pytest.mark.parametrize("name", ['"a.b"', '"a b"', '"-a"', '"a:b"', '"a*"', '""', "true", "-1"])
def test_names_that_are_not_module_names_are_errors(name):
    d = error_of(f"inputs: {{x: [N, 4]}}\nlayers:\n  - {{op: relu, name: {name}}}\n")
    assert d.message.startswith("invalid node name") and (d.loc.line, d.loc.col) == (3, 22)
    assert "letters, digits, _ and -" in d.hint


def test_an_unquoted_dashed_name_in_shape_gets_a_hint():
    d = error_of("inputs: {x: [N, 4]}\nlayers:\n  - {op: relu, name: block1-0}\n"
                 "  - {op: linear, out_features: \"${shape(block1-0)[1]}\"}\n")
    assert "subtracts" in d.message and d.hint == "write shape('block1-0')" and d.loc.line == 4


def test_dashed_names_in_onnx_and_checkpoints(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import runtime
    g = compile_(DENSE, params={"layers": 2})
    model = runtime.Model(g, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    want = model(x=x)["head"]
    proto = compiler.to_onnx(g, weights=model.state_dict())
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    runtime.save(model, tmp_path / "w.npz")
    other = runtime.Model(g, seed=1)
    runtime.load(other, tmp_path / "w.npz")
    np.testing.assert_array_equal(other(x=x)["head"], want)


def test_a_checkpoint_from_before_repeat_one_was_numbered_converts(tmp_path, capsys):
    """docs/spec-language.md "Migrating": a `repeat: 1` layer's parameters moved from `stage.*` to `stage.0.*`."""
    import runtime
    from cli.main import main
    layers = "  - {use: b, name: stage%s}\n  - {op: linear, name: head, out_features: 2}\n"
    block = "blocks: {b: {layers: [{op: linear, name: fc, out_features: 3}, {op: batch_norm, name: bn}]}}\n"
    old = compile_("inputs: {x: [N, 4]}\n" + block + "layers:\n" + layers % "")
    new_text = "inputs: {x: [N, 4]}\n" + block + "layers:\n" + layers % ", repeat: 1"
    (tmp_path / "spec.yaml").write_text(new_text)
    before = runtime.Model(old, seed=3)
    runtime.save(before, tmp_path / "old.npz")
    new = runtime.Model(compiler.compile_file(tmp_path / "spec.yaml"), seed=0)
    with pytest.raises(Exception, match="stage"):
        runtime.load(new, tmp_path / "old.npz")
    assert main(["weights", "convert", str(tmp_path / "old.npz"), "--spec", str(tmp_path / "spec.yaml"),
                 "--map", "stage=stage.0", "-o", str(tmp_path / "new.npz")]) == 0
    capsys.readouterr()
    runtime.load(new, tmp_path / "new.npz")
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(new(x=x)["head"], before(x=x)["head"])


def test_a_repeat_whose_last_copy_is_switched_off_keeps_its_name():
    d = error_of("""
inputs: {x: [N, 4]}
layers:
  - {op: linear, name: stage, out_features: 4, repeat: 2, when: "${index == 0}"}
  - {op: linear, name: stage, out_features: 4}
""")
    assert d.message == "duplicate name 'stage' in this scope" and d.loc.line == 5
