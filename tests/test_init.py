"""A node's `init:` (docs/spec-language.md, compiler/init.py): the values runtime.Model draws follow it —
every parameter whose name holds `weight` and a `param` node's tensor; biases and buffers keep PyTorch's
defaults — and its arguments are checked when the spec compiles."""
from __future__ import annotations

import math

import numpy as np
import pytest

import compiler
import runtime
from compiler.errors import SpecError

FAN_IN, FAN_OUT = 300, 200                          # a linear 300 -> 200: 60,000 weights


def weights(init: str, seed: int = 0) -> dict[str, np.ndarray]:
    g = compiler.compile_text(f"inputs: {{x: [N, {FAN_IN}]}}\n"
                              f"layers: [{{op: linear, name: fc, out_features: {FAN_OUT}, init: {init}}}]\n")
    return runtime.Model(g, seed=seed).state_dict()


@pytest.mark.parametrize("init,value", [("zeros", 0.0), ("ones", 1.0), ("{constant: {value: -0.25}}", -0.25),
                                        ("{constant: {value: 3}}", 3.0)])
def test_fixed_initialisers_are_exact(init, value):
    sd = weights(init)
    w = sd["fc.weight"]
    assert w.shape == (FAN_OUT, FAN_IN) and w.dtype == np.float32
    assert np.all(w == np.float32(value))
    b = sd["fc.bias"]                                           # the bias keeps nn.Linear's default
    assert np.all(np.abs(b) <= 1 / math.sqrt(FAN_IN)) and np.unique(b).size == FAN_OUT


def moments(w: np.ndarray) -> tuple[float, float]:
    return float(w.astype(np.float64).mean()), float(w.astype(np.float64).std())


# kind -> (init text, expected mean, expected std, bound of |w - mean| or None for unbounded normals)
XAVIER_U = 2.0 * math.sqrt(6.0 / (FAN_IN + FAN_OUT))
KAIMING_U = math.sqrt(2.0) * math.sqrt(3.0 / FAN_IN)            # default: leaky_relu with a=0, gain √2
KAIMING_U_A = math.sqrt(2.0 / (1 + 0.2 ** 2)) * math.sqrt(3.0 / FAN_IN)
DRAWN = {
    "normal": ("{normal: {mean: 0.5, std: 0.02}}", 0.5, 0.02, None),
    "normal_std_only": ("{normal: {std: 0.3}}", 0.0, 0.3, None),
    "uniform_bound": ("{uniform: {bound: 0.1}}", 0.0, 0.1 / math.sqrt(3), 0.1),
    "uniform_low_high": ("{uniform: {low: 2, high: 3}}", 2.5, 1 / math.sqrt(12), 0.5),
    "xavier_uniform": ("{xavier_uniform: {gain: 2}}", 0.0, XAVIER_U / math.sqrt(3), XAVIER_U),
    "xavier_normal": ("xavier_normal", 0.0, math.sqrt(2.0 / (FAN_IN + FAN_OUT)), None),
    "kaiming_uniform": ("kaiming_uniform", 0.0, KAIMING_U / math.sqrt(3), KAIMING_U),
    "kaiming_uniform_a": ("{kaiming_uniform: {a: 0.2}}", 0.0, KAIMING_U_A / math.sqrt(3), KAIMING_U_A),
    "kaiming_normal": ("kaiming_normal", 0.0, math.sqrt(2.0 / FAN_IN), None),
    "kaiming_normal_tanh": ("{kaiming_normal: {nonlinearity: tanh}}", 0.0, (5 / 3) / math.sqrt(FAN_IN), None),
    "kaiming_normal_selu": ("{kaiming_normal: {nonlinearity: selu}}", 0.0, 0.75 / math.sqrt(FAN_IN), None),
    "kaiming_normal_linear": ("{kaiming_normal: {nonlinearity: linear}}", 0.0, 1 / math.sqrt(FAN_IN), None),
    "kaiming_normal_fan_out": ("{kaiming_normal: {mode: fan_out}}", 0.0, math.sqrt(2.0 / FAN_OUT), None),
    "kaiming_uniform_fan_out": ("{kaiming_uniform: {mode: fan_out, nonlinearity: relu}}", 0.0,
                                math.sqrt(2.0 / FAN_OUT), math.sqrt(6.0 / FAN_OUT)),
}


@pytest.mark.parametrize("kind", DRAWN)
def test_drawn_initialisers_have_the_specified_distribution(kind):
    """60,000 draws: the sample std is within 2% of the specified one (its own spread is about 0.3%),
    the mean within 5 standard errors, and uniform draws fill their interval and never leave it."""
    text, mean, std, bound = DRAWN[kind]
    w = weights(text)["fc.weight"]
    m, s = moments(w)
    assert s == pytest.approx(std, rel=0.02)
    assert abs(m - mean) < 5 * std / math.sqrt(w.size)
    if bound is not None:
        assert np.abs(w - np.float32(mean)).max() <= bound * (1 + 1e-6)
        assert np.abs(w - np.float32(mean)).max() > 0.999 * bound
    else:                                                   # a normal: about 0.27% beyond 3 std
        assert 0.001 < np.mean(np.abs(w - mean) > 3 * std) < 0.005
    assert not np.array_equal(w, weights(text, seed=1)["fc.weight"])     # drawn from the model's seed
    np.testing.assert_array_equal(w, weights(text, seed=0)["fc.weight"])


def test_without_init_the_weight_is_pytorchs_default():
    """nn.Linear's default (kaiming_uniform with a=√5): U(±1/√fan_in), std 1/√(3·fan_in) — so the
    overrides above really changed something."""
    w = weights("{normal: {std: 0.3}}")["fc.weight"]
    g = compiler.compile_text(f"inputs: {{x: [N, {FAN_IN}]}}\nlayers: [{{op: linear, name: fc, "
                              f"out_features: {FAN_OUT}}}]\n")
    d = runtime.Model(g).state_dict()["fc.weight"]
    assert np.abs(d).max() <= 1 / math.sqrt(FAN_IN) * (1 + 1e-6)
    assert moments(d)[1] == pytest.approx(1 / math.sqrt(3 * FAN_IN), rel=0.02)
    assert np.abs(w).max() > 10 * np.abs(d).max()


def test_init_on_conv_batch_norm_lstm_and_param():
    """Fans count the receptive field (conv); every *weight* parameter follows init (batch norm's
    scale, both LSTM matrices), biases and buffers do not; a param node's tensor follows it whole."""
    g = compiler.compile_text("""
inputs: {x: [N, 16, 8, 8], s: [N, 5, 6]}
layers:
  - {op: conv2d, name: conv, in: x, out_channels: 32, kernel_size: 3, init: kaiming_normal}
  - {op: batch_norm, name: bn, init: {constant: {value: 0.5}}}
  - {op: lstm, name: rnn, in: s, hidden_size: 64, init: {uniform: {bound: 0.01}}}
  - {op: param, name: token, shape: [1, 4, 500], init: {normal: {std: 0.02}}}
outputs: [bn, rnn, token]
""")
    sd = runtime.Model(g, seed=3).state_dict()
    conv = sd["conv.weight"]
    assert conv.shape == (32, 16, 3, 3)
    assert moments(conv)[1] == pytest.approx(math.sqrt(2.0 / (16 * 9)), rel=0.05)   # fan_in 144, not 16
    assert np.abs(sd["conv.bias"]).max() <= 1 / math.sqrt(16 * 9) * (1 + 1e-6)
    assert np.all(sd["bn.weight"] == 0.5)
    assert np.all(sd["bn.bias"] == 0) and np.all(sd["bn.running_mean"] == 0) and np.all(sd["bn.running_var"] == 1)
    for k in ("rnn.weight_ih_l0", "rnn.weight_hh_l0"):
        assert np.abs(sd[k]).max() <= 0.01 * (1 + 1e-6) and np.abs(sd[k]).max() > 0.0099
    for k in ("rnn.bias_ih_l0", "rnn.bias_hh_l0"):                  # nn.LSTM's U(±1/√hidden)
        assert np.abs(sd[k]).max() > 0.1 and np.abs(sd[k]).max() <= 1 / 8 * (1 + 1e-6)
    tok = sd["token"]
    assert tok.shape == (1, 4, 500) and moments(tok)[1] == pytest.approx(0.02, rel=0.05)


def test_init_matches_torch_nn_init_statistics():
    """The same initialisers in torch.nn.init on a conv weight (fans with a receptive field): the
    sample standard deviations and the bounds agree."""
    torch = pytest.importorskip("torch")
    g = compiler.compile_text("inputs: {x: [N, 24, 8, 8]}\nlayers:\n"
                              "  - {op: conv2d, name: a, in: x, out_channels: 48, kernel_size: 5, init: xavier_uniform}\n"
                              "  - {op: conv2d, name: b, in: x, out_channels: 40, kernel_size: 3, "
                              "init: {kaiming_normal: {nonlinearity: tanh}}}\n"
                              "  - {op: conv2d, name: c, in: x, out_channels: 32, kernel_size: 3, "
                              "init: {kaiming_uniform: {a: 0.5}}}\n")
    sd = runtime.Model(g, seed=0).state_dict()
    torch.manual_seed(0)
    init = torch.nn.init
    for name, fn in (("a", init.xavier_uniform_), ("b", lambda t: init.kaiming_normal_(t, nonlinearity="tanh")),
                     ("c", lambda t: init.kaiming_uniform_(t, a=0.5))):
        ours = sd[f"{name}.weight"].astype(np.float64)
        theirs = fn(torch.empty(ours.shape, dtype=torch.float64)).numpy()
        assert ours.std() == pytest.approx(theirs.std(), rel=0.05), name
        if name != "b":
            assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=0.01), name


@pytest.mark.parametrize("init,words", [
    ("{normal: {stdev: 0.02}}", ["initialiser normal: unknown argument 'stdev'", "did you mean 'std'?"]),
    ("constant", ["initialiser constant: needs a value", "constant: {value: 0.1}"]),
    ("{constant: {value: abc}}", ["'value' must be a finite number, found 'abc'"]),
    ("{normal: {std: -0.1}}", ["'std' must not be negative"]),
    ("{uniform: {bound: -1}}", ["'bound' must not be negative"]),
    ("{uniform: {low: 1, high: 0}}", ["low (1) is above high (0)"]),
    ("{uniform: {bound: 1, low: 0}}", ["either bound or low and high"]),
    ("{zeros: {value: 3}}", ["initialiser zeros: unknown argument 'value'", "zeros takes no arguments"]),
    ("{kaiming_normal: {nonlinearity: rleu}}", ["nonlinearity must be one of", "did you mean 'relu'?"]),
    ("{kaiming_uniform: {mode: fanout}}", ["mode must be fan_in or fan_out", "did you mean 'fan_out'?"]),
    ("{kaiming_uniform: {gain: 2}}", ["unknown argument 'gain'", "its arguments are: a, nonlinearity, mode"]),
    ("{trunc_normal: {std: 0}}", ["'std' must be positive"]),
    ("{trunc_normal: {a: 1, b: -1}}", ["a (1) must be below b (-1)"]),
    ("{trunc_normal: {std: 0.02, a: 1, b: 2}}", ["holds only 0 of N(0.0, 0.02²)", "absolute bounds"]),
    ("{wieght: zeros}", ["init: linear has no parameter 'wieght'", "did you mean 'weight'?"]),
    ("{weight: zeros, bias: nope}", ["unknown initialiser 'nope' (for 'bias')"]),
    ("{kaiming_normall: {}}", ["unknown initialiser", "did you mean 'kaiming_normal'"]),
])
def test_bad_init_arguments_are_spec_errors(init, words):
    """Arguments the initialiser does not take were ignored (a typo such as stdev drew N(0, 1)), and
    `constant` without a value passed `specc check` and failed with a KeyError traceback in compile/train."""
    with pytest.raises(SpecError) as e:
        compiler.compile_text(f"inputs: {{x: [N, 4]}}\nlayers: [{{linear: 3, init: {init}}}]\n")
    text = e.value.render()
    assert text.startswith("<string>:2:28: error: ")
    for w in words:
        assert w in text, (w, text)


def test_trunc_normal_stays_within_its_absolute_bounds():
    """torch.nn.init.trunc_normal_'s a, b are absolute values: std 1 cut at [-0.5, 1] keeps the mass
    between them (truncated-normal moments: mean 0.1893, std 0.4213 by the closed form)."""
    w = weights("{trunc_normal: {a: -0.5, b: 1}}")["fc.weight"].astype(np.float64)
    assert w.min() >= -0.5 and w.max() <= 1.0 and w.min() < -0.49 and w.max() > 0.99
    phi = lambda v: math.exp(-v * v / 2) / math.sqrt(2 * math.pi)             # noqa: E731
    cdf = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))                    # noqa: E731
    z = cdf(1) - cdf(-0.5)
    mean = (phi(-0.5) - phi(1)) / z
    var = 1 + (-0.5 * phi(-0.5) - 1 * phi(1)) / z - mean ** 2
    assert w.mean() == pytest.approx(mean, abs=5 * math.sqrt(var / w.size))
    assert w.std() == pytest.approx(math.sqrt(var), rel=0.02)
    small = weights("{trunc_normal: {std: 0.02}}")["fc.weight"]                # ViT's: [-2, 2] never cuts
    assert small.std() == pytest.approx(0.02, rel=0.02)


def test_per_parameter_init_sets_each_named_parameter():
    """`init: {weight: ..., bias: zeros}` (torchvision's conv and linear init), where `init: KIND` leaves
    the bias at PyTorch's default."""
    sd = weights("{weight: {kaiming_normal: {mode: fan_out}}, bias: zeros}")
    assert np.all(sd["fc.bias"] == 0)
    assert moments(sd["fc.weight"])[1] == pytest.approx(math.sqrt(2.0 / FAN_OUT), rel=0.02)
    only_bias = weights("{bias: {constant: {value: 0.5}}}")
    assert np.all(only_bias["fc.bias"] == 0.5)
    g = compiler.compile_text(f"inputs: {{x: [N, {FAN_IN}]}}\nlayers: [{{op: linear, name: fc, out_features: {FAN_OUT}}}]\n")
    np.testing.assert_array_equal(only_bias["fc.weight"], runtime.Model(g, seed=0).state_dict()["fc.weight"])


def test_per_parameter_init_reaches_export_torch():
    """The generated PyTorch module initialises the same way (mode='fan_out', trunc_normal_, zeros_)."""
    pytest.importorskip("torch")
    from runtime.torch_backend.layers import init_lines
    g = compiler.compile_text("inputs: {x: [N, 3, 8, 8]}\nlayers:\n"
                              "  - {op: conv2d, name: c, out_channels: 4, kernel_size: 3, "
                              "init: {weight: {kaiming_normal: {mode: fan_out}}, bias: zeros}}\n"
                              "  - {op: flatten}\n"
                              "  - {op: linear, name: fc, out_features: 2, init: {trunc_normal: {std: 0.02}}}\n")
    conv = init_lines(g.node("c"))
    assert conv == ["nn.init.kaiming_normal_({m}.weight, mode='fan_out', nonlinearity='relu')",
                    "nn.init.zeros_({m}.bias)"]
    assert init_lines(g.node("fc")) == ["nn.init.trunc_normal_({m}.weight, mean=0.0, std=0.02, a=-2.0, b=2.0)"]
