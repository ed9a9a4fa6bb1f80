import numpy as np
import pytest

from compiler.errors import ShapeError
from opcheck import gradcheck, infer, onnx_parity, rand


def test_linear_shape_params_macs():
    _, _, inf = infer("linear", {"out_features": 3}, [("N", 5, 4)])
    assert inf.outputs[0].shape == ("N", 5, 3)
    assert [(p.name, p.shape) for p in inf.params] == [("weight", (3, 4)), ("bias", (3,))]
    assert inf.macs == 5 * 3 * 4


def test_linear_in_features_mismatch_names_attr():
    with pytest.raises(ShapeError) as e:
        infer("linear", {"out_features": 3, "in_features": 7}, [("N", 4)])
    assert e.value.attr == "in_features" and "7" in e.value.message and "4" in e.value.message


@pytest.mark.parametrize("shape,bias", [((3, 4), True), ((2, 3, 4), False)])
def test_linear_gradcheck(shape, bias):
    gradcheck("linear", {"out_features": 5, "bias": bias}, [rand(*shape)])


@pytest.mark.parametrize("shape,bias", [((3, 4), True), ((2, 3, 4), True), ((2, 3, 4), False)])
def test_linear_onnx(shape, bias):
    onnx_parity("linear", {"out_features": 5, "bias": bias}, [rand(*shape)])


def test_linear_torch():
    torch = pytest.importorskip("torch")
    from opcheck import make_params, run
    x = rand(2, 3, 4).astype(np.float32)
    w, b = make_params("linear", {"out_features": 5}, [x], dtype=np.float32)
    (y,), _, _ = run("linear", {"out_features": 5}, [x], [w, b])
    ref = torch.nn.functional.linear(torch.tensor(x), torch.tensor(w), torch.tensor(b)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
