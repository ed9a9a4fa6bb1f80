import time

import pytest

from compiler.errors import SpecError
from compiler.load import MAX_BYTES, SList, SMap, load_text, locate


def test_positions_kept_for_every_value():
    tree = load_text("a: 1\nb:\n  - x\n  - {c: 2}\n", "f.yaml")
    assert isinstance(tree, SMap) and isinstance(tree["b"], SList)
    assert (tree.loc_of("a").line, tree.loc_of("a").col) == (1, 4)
    assert tree["b"].loc_of(1).line == 4
    assert locate(tree, ("b", 1, "c")).col == 9


def test_billion_laughs_refused_fast():
    doc = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for i in range(1, 10):
        name = f"l{i}"
        doc += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    t = time.perf_counter()
    with pytest.raises(SpecError, match="aliases"):
        load_text(doc)
    assert time.perf_counter() - t < 10.0         # a hang guard (the expansion would take minutes), not a speed test


def test_depth_and_size_limits():
    with pytest.raises(SpecError, match="nested"):
        load_text("a: " + "[" * 150 + "]" * 150)
    with pytest.raises(SpecError, match="at most"):
        load_text("a: '" + "x" * (MAX_BYTES + 1) + "'")


def test_unsafe_tags_refused():
    with pytest.raises(SpecError) as e:
        load_text("a: !!python/object/apply:os.system ['echo hi']\n", "f.yaml")
    assert e.value.diagnostics[0].loc.line == 1


def test_duplicate_key_points_at_second():
    with pytest.raises(SpecError, match="duplicate key 'a'") as e:
        load_text("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert e.value.diagnostics[0].loc.line == 3


def test_exponent_floats_are_floats():
    assert load_text("lr: 1e-3\nname: '1e-3'\n") == {"lr": 0.001, "name": "1e-3"}


def test_syntax_error_has_position():
    with pytest.raises(SpecError) as e:
        load_text("a: [1, 2\nb: 3\n", "f.yaml")
    assert e.value.diagnostics[0].loc is not None


@pytest.mark.parametrize("text", ["!!float ", "a: !!float\n", "a: !!int\n", "a: !!bool\n", "a: !!timestamp\n",
                                  "a: [!!float , 1]\n"])
def test_empty_explicitly_tagged_scalars_are_spec_errors(text):
    """PyYAML's float constructor raised IndexError on an empty `!!float` (exit 3, found by tools/fuzz.py)."""
    with pytest.raises(SpecError, match="invalid YAML|unsupported YAML|spec"):
        load_text(text, "<t>")
