import pytest

from compiler.expr import ExprError, evaluate, render


@pytest.mark.parametrize("text,names,want", [
    ("2 if index == 0 else 1", {"index": 0}, 2),
    ("a * 2 + b // 3 - 1", {"a": 4, "b": 7}, 9),
    ("[a, a * 2][1]", {"a": 3}, 6),
    ("min(a, 5) + max([1, 7]) + abs(-2) + len([1, 2])", {"a": 9}, 16),
    ("round(2.6) + int('3') + float(1)", {}, 7.0),
    ("not flag and (x > 1 or x < -1)", {"flag": False, "x": 2}, True),
    ("2 ** 10", {}, 1024),
    ("xs[1:]", {"xs": [1, 2, 3]}, [2, 3]),
])
def test_allowed(text, names, want):
    assert evaluate(text, names) == want


def test_whole_expression_keeps_type_interpolation_makes_text():
    assert render("${w}", {"w": 3}) == 3
    assert render("${[w, w]}", {"w": 3}) == [3, 3]
    assert render("fc_${w}_${w * 2}", {"w": 3}) == "fc_3_6"


def test_shape_function():
    assert render("${shape(x)[1]}", {}, lambda ref: {"x": ["N", 64]}[ref]) == 64


@pytest.mark.parametrize("text,msg", [
    ("__import__('os')", "not allowed"),
    ("x.__class__", "not allowed"),
    ("open('f')", "not allowed"),
    ("(lambda: 1)()", "only calls"),
    ("9 ** 9 ** 9", "exponent"),
    ("[0] * 100000000", "longer than"),
    ("10 ** 60 * 10 ** 60 * 10 ** 60 * 10 ** 60 * 10 ** 60", "larger than"),
    ("1 / 0", "division by zero"),
    ("nope + 1", "unknown name 'nope'"),
    ("[" * 40 + "]" * 40, "nested"),
    ("{1: 2}", "not allowed"),
])
def test_refused(text, msg):
    with pytest.raises(ExprError, match=msg):
        evaluate(text, {"x": 1})


def test_did_you_mean_for_names():
    with pytest.raises(ExprError) as e:
        evaluate("widht * 2", {"width": 3})
    assert "width" in e.value.hint


def test_unclosed():
    with pytest.raises(ExprError, match="unclosed"):
        render("${a", {"a": 1})
