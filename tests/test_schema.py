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
