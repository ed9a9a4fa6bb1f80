"""`specc schema`: a typo gives one error that names it (the layer schema dispatches on `op` with if/then
instead of trying every op's branch), and every layer form validates. Checked with the `jsonschema` package,
as editors and check-jsonschema use the schema; that every shipped spec validates is in test_cli_check.py."""
from __future__ import annotations

import pytest

from compiler.load import load_text
from compiler.schema import json_schema

jsonschema = pytest.importorskip("jsonschema")
from jsonschema.exceptions import best_match  # noqa: E402


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(json_schema())


def errors(validator, text: str) -> list:
    """Every error, the ones nested under anyOf/oneOf included (what check-jsonschema counts)."""
    def walk(errs):
        return [x for e in errs for x in [e, *walk(e.context)]]
    return walk(validator.iter_errors(load_text(text)))


SPEC = """specc: 1
name: t
inputs: {image: [N, 1, 28, 28]}
layers:
  - LAYER
  - relu
"""


@pytest.mark.parametrize("layer,path,says", [
    ("{op: conv2d, out_channels: 6, kernal_size: 5, padding: 2}", ["layers", 0], "'kernal_size' was unexpected"),
    ("{op: conv2dd, out_channels: 6, kernel_size: 5}", ["layers", 0, "op"], "'conv2dd' is not one of"),
    ("{op: conv2d, out_channels: 6}", ["layers", 0], "'kernel_size' is a required property"),
    ("{lineer: 10}", ["layers", 0], "'lineer' is not one of"),
    ("reluu", ["layers", 0], "'reluu' is not one of"),
    ("{call: conv, in: x, stride: 2}", ["layers", 0], "'stride' was unexpected"),
])
def test_a_typo_is_one_error_naming_it(validator, layer, path, says):
    found = errors(validator, SPEC.replace("LAYER", layer))
    assert len(found) == 1, [e.message[:100] for e in found]
    best = best_match(found)
    assert list(best.absolute_path) == path and says in best.message


@pytest.mark.parametrize("layer", [
    "{op: '${kind}', out_features: 3}",           # an op chosen by an expression: attributes not checked
    "{conv2d: {out_channels: 6, kernel_size: '${k}'}}",
    "{linear: 10, name: fc}",
    "{use: block, planes: 64}",
    "{op: conv2d, out_channels: 6, kernel_size: 3, when: '${flag}', repeat: 2}",
])
def test_every_layer_form_validates(validator, layer):
    assert errors(validator, SPEC.replace("LAYER", layer)) == []


@pytest.mark.parametrize("layer", [
    "{linear: 3, init: {weight: {kaiming_normal: {mode: fan_out}}, bias: zeros}}",
    "{linear: 3, init: {trunc_normal: {std: 0.02, a: -0.04, b: 0.04}}}",
    "{linear: 3, init: xavier_uniform, name: block1-0}",
    "{linear: 3, init: {normal: {std: '${s}'}}, name: 'fc${k}'}",
    "{linear: 3, init: {zeros: null}, name: 0}",
])
def test_init_and_names_validate(validator, layer):
    assert errors(validator, SPEC.replace("LAYER", layer)) == []


@pytest.mark.parametrize("layer,says", [
    ("{linear: 3, init: {weight: {normal: 0.02}}}", "init"),          # arguments are a mapping
    ("{linear: 3, init: {kaiming_normal: {mode: fan}}}", "init"),
    ("{linear: 3, init: {normal: {stdev: 0.02}}}", "init"),
    ("{linear: 3, init: {kaiming_normal: {}, bias: zeros}}", "init"),  # both forms at once
    ("{linear: 3, name: '-a'}", "name"),
    ("{linear: 3, name: 'a.b'}", "name"),
    ("{use: block, init: zeros}", "does not allow 'zeros'"),          # init belongs on the block's layers
])
def test_init_and_name_mistakes_are_refused(validator, layer, says):
    """The schema accepted any string or mapping as init and any string as a name."""
    found = errors(validator, SPEC.replace("LAYER", layer))
    assert found
    best = best_match(found)
    assert says in list(best.absolute_path) or says in best.message, (list(best.absolute_path), best.message)
