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


@pytest.mark.parametrize("text,want", [
    ("log(8, 2)", 3.0),
    ("log2(64)", 6.0),
    ("ceil(log2(100))", 7),
    ("floor(-2.5)", -3),
    ("ceil(2.1) + floor(2.9)", 5),
    ("range(3)", [0, 1, 2]),
    ("range(1, 10, 3)", [1, 4, 7]),
    ("range(5, 0, -2)", [5, 3, 1]),
    ("max(range(5)) + min(range(2, 4))", 6),
])
def test_math_and_range(text, want):
    got = evaluate(text, {})
    assert got == want and type(got) is type(want)


def test_log_natural_against_math():
    import math
    assert evaluate("log(x)", {"x": 10}) == math.log(10)


@pytest.mark.parametrize("text,msg", [
    ("log(0)", "log: its argument must be positive, got 0"),
    ("log(-3.5)", "must be positive, got -3.5"),
    ("log2(0)", "log2: its argument must be positive"),
    ("log(8, 1)", "base cannot be 1"),
    ("log(8, -2)", "its base must be positive"),
    ("log('a')", "must be a number"),
    ("ceil(1e308 * 10)", "cannot round inf"),
    ("floor('a')", "must be a number"),
    ("ceil(1e300)", "larger than the limit"),
    ("range(10001)", "range(10001) would have more than 10,000 items"),
    ("range(-2 ** 62, 2 ** 62)", "more than 10,000 items"),
    ("range(1, 2, 0)", "step cannot be 0"),
    ("range(1.5)", "range takes 1 to 3 integers"),
    ("range(1, 2, 3, 4)", "range takes 1 to 3 integers"),
    ("[i for i in 3]", "a comprehension goes over a list"),
    ("[i for i, j in [[1, 2]]]", "binds one name"),
    ("[i * j for i in range(200) for j in range(200)]", "more than 10,000 items"),
    ("log()", "log takes 1 or 2 arguments, got 0: log()"),          # not "_log() missing 1 required ..."
    ("log(8, 2, 1)", "log takes 1 or 2 arguments, got 3"),
    ("log2(8, 2)", "log2 takes one argument, got 2"),
    ("ceil(2.5, 1)", "ceil takes one argument, got 2"),            # not "_rounding.<locals>.run() takes ..."
    ("floor()", "floor takes one argument, got 0"),
])
def test_math_and_range_refused(text, msg):
    with pytest.raises(ExprError) as e:
        evaluate(text, {})
    assert msg in e.value.message


def test_list_comprehensions():
    """Comprehensions build index tables (Swin's relative positions); their names shadow params locally."""
    assert evaluate("[64 * 2 ** i for i in range(3)]", {}) == [64, 128, 256]
    assert evaluate("[[i + j for j in range(2)] for i in range(2) if i != k]", {"i": 9, "k": 1}) == [[0, 1]]
    assert evaluate("i", {"i": 9}) == 9
    with pytest.raises(ExprError, match="steps of work"):
        evaluate("[i for a in range(9999) for b in range(9999) if i]", {"i": 0})


def test_range_counts_its_items_as_work():
    from compiler.expr import Budget
    budget = Budget(steps=50_000)
    with pytest.raises(ExprError, match="steps of work in all"):
        for _ in range(10):
            evaluate("range(10000)", {}, budget=budget)


def test_unknown_function_lists_the_new_ones():
    with pytest.raises(ExprError) as e:
        evaluate("sqrt(4)", {})
    assert "log2" in e.value.hint and "range" in e.value.hint
