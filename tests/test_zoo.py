"""specs/zoo/: torchvision's models written as specs, with torchvision's state_dict keys.

(a) each spec's parameter count is torchvision's (runs everywhere); (b) where torchvision is importable,
torchvision's model (random weights, eval mode, no download) loads into specc's runtime strictly (every
key, every shape, batch-norm buffers included) and gives the same logits on a small image.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.summary import totals

ZOO = Path(__file__).resolve().parent.parent / "specs" / "zoo"
# spec -> (torchvision builder, torchvision's parameter count: sum(p.numel() for p in model.parameters()))
MODELS = {
    "convnext_tiny": ("convnext_tiny", 28_589_128),
    "mobilenet_v3_small": ("mobilenet_v3_small", 2_542_856),
    "efficientnet_b0": ("efficientnet_b0", 5_288_548),
    "swin_t": ("swin_t", 28_288_354),
}
SIZE = 64                       # a small image keeps the parity test fast; every stage still runs


def test_the_zoo_is_complete():
    assert sorted(p.stem for p in ZOO.glob("*.yaml")) == sorted(MODELS)


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_count_is_torchvisions(name):
    g = compiler.compile_file(ZOO / f"{name}.yaml")
    count = MODELS[name][1]
    assert sum(math.prod(p.shape) for p, _ in g.params().values() if not p.buffer) == count
    assert totals(g)["params"] == count                 # what `specc check` prints
    assert f"{count:,} parameters" in " ".join((ZOO / f"{name}.yaml").read_text().split())   # its description says so


def _perturbed(model) -> None:
    """Move torchvision's initial values off their defaults (layer scale 1e-6, batch-norm statistics 0 and 1,
    norm weights 1, biases 0), so that every parameter and buffer changes the output."""
    import torch
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            u = torch.rand(t.shape, generator=gen, dtype=t.dtype)
            if key.endswith("running_var") or key.endswith("layer_scale"):
                t.copy_(0.5 + u)
            elif key.endswith("running_mean") or key.endswith("bias"):
                t.copy_(0.2 * (u - 0.5))
            elif t.dim() == 1:                          # norm weights
                t.copy_(0.5 + u)


@pytest.mark.parametrize("name", list(MODELS))
def test_torchvision_weights_load_and_agree(name):
    torchvision = pytest.importorskip("torchvision")       # first: where it is missing, torch is not imported
    import torch
    import runtime

    torch.manual_seed(0)
    tv = getattr(torchvision.models, MODELS[name][0])(weights=None).eval()
    _perturbed(tv)
    state = {k: v.detach().numpy() for k, v in tv.state_dict().items()}
    g = compiler.compile_file(ZOO / f"{name}.yaml", params={"size": SIZE})
    model = runtime.Model(g, seed=0).eval()
    mine = model.state_dict()
    assert sorted(mine) == sorted(state)
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    _same_configuration(tv, g)
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        want = tv(torch.from_numpy(x)).numpy()
    got = model(image=x)["logits"]
    assert got.shape == want.shape == (2, 1000)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got / scale, want / scale, rtol=1e-4, atol=1e-4)


def _same_configuration(tv, g) -> None:
    """What the outputs in eval mode do not show: batch-norm momentum and eps, layer-norm eps, stochastic-depth
    probabilities and dropout rates, module by module (the spec's node of the same name)."""
    import torch
    from torchvision.ops import StochasticDepth
    nodes = {n.name: n for n in g.nodes}
    checked = 0
    for path, m in tv.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            want = ("batch_norm", {"eps": m.eps, "momentum": m.momentum})
        elif isinstance(m, torch.nn.LayerNorm):
            want = ("layer_norm", {"eps": m.eps})
        elif isinstance(m, (StochasticDepth, torch.nn.Dropout)):
            want = ("stochastic_depth" if isinstance(m, StochasticDepth) else "dropout", {"p": m.p})
        else:
            continue
        if isinstance(m, StochasticDepth) and not getattr(tv.get_submodule(path.rsplit(".", 1)[0]),
                                                          "use_res_connect", True):
            assert path not in nodes        # MBConv builds one for every block, used only on a residual
            continue
        node = nodes[path]
        assert node.op == want[0], path
        for k, v in want[1].items():
            assert getattr(node.attrs, k) == pytest.approx(v, rel=1e-12), f"{path}.{k}"
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("name", list(MODELS))
def test_export_torch_file_loads_torchvision_weights(name, tmp_path):
    """`specc export-torch` of a zoo spec is a PyTorch module whose state_dict is torchvision's: it loads
    torchvision's weights strictly and computes the same logits."""
    torchvision = pytest.importorskip("torchvision")       # first: where it is missing, torch is not imported
    import torch
    import importlib.util

    from runtime.torch_backend.codegen import generate

    g = compiler.compile_file(ZOO / f"{name}.yaml", params={"size": SIZE})
    exp = generate(g, str(ZOO / f"{name}.yaml"))
    path = tmp_path / f"{name}_model.py"
    path.write_text(exp.source)
    spec = importlib.util.spec_from_file_location(f"zoo_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    tv = getattr(torchvision.models, MODELS[name][0])(weights=None).eval()
    _perturbed(tv)
    net = getattr(mod, exp.class_name)().eval()
    net.load_state_dict(tv.state_dict(), strict=True)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), tv(x).numpy(), rtol=1e-5, atol=1e-5)


def test_swin_t_small_image_pads_shifts_and_skips_the_shift():
    """At the parity tests' size every branch of torchvision's shifted_window_attention is taken: stage 1's
    16x16 map is padded to 21x21, odd blocks of stages 1 and 2 roll their windows by 3 and add the attention
    mask, and stages 3 and 4 (4x4 and 2x2, padded to one 7x7 window) do not shift."""
    g = compiler.compile_file(ZOO / "swin_t.yaml", params={"size": SIZE})
    nodes = {n.name: n for n in g.nodes}
    assert list(nodes["features.1.0.attn.padded"].attrs.pad) == [0, 0, 0, 5, 0, 5]
    rolled = sorted(n.name for n in g.nodes if n.op == "roll")
    assert rolled == [f"features.{s}.1.attn.{r}" for s in (1, 3) for r in ("rolled", "unrolled")]
    assert list(nodes["features.1.1.attn.rolled"].attrs.shifts) == [-3, -3]
    masks = sorted({n.name.split(".masked.")[0] for n in g.nodes if ".masked." in n.name})
    assert masks == ["features.1.1.attn", "features.3.1.attn"]
    assert "features.5.1.attn.masked" not in " ".join(nodes) and "features.7.1.attn.rolled" not in nodes


def test_swin_t_gradients_match_torchvision():
    """The backward pass through padding, rolls, the gathered bias table and the mask: every parameter's
    gradient of the cross-entropy is torchvision's (eval mode, so stochastic depth is the identity)."""
    torchvision = pytest.importorskip("torchvision")
    import torch
    import runtime

    torch.manual_seed(0)
    tv = torchvision.models.swin_t(weights=None).eval()
    _perturbed(tv)
    model = runtime.Model(compiler.compile_file(ZOO / "swin_t.yaml", params={"size": SIZE}), seed=0).eval()
    model.load_state_dict({k: v.detach().numpy() for k, v in tv.state_dict().items()}, strict=True)
    x = np.random.default_rng(2).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    y = np.array([3, 917])
    model.forward(["loss"], image=x, label=y)["loss"].backward()
    torch.nn.functional.cross_entropy(tv(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    grads = model.grads()
    for key, p in tv.named_parameters():
        scale = p.grad.abs().max().item()
        assert scale > 0, key
        np.testing.assert_allclose(grads[key] / scale, p.grad.numpy() / scale, rtol=1e-4, atol=1e-4, err_msg=key)
