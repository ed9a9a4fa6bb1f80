"""The example specs: every one compiles, published parameter counts, PyTorch/torchvision state_dict names."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import compiler

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
EXAMPLES = sorted(p for p in SPECS.rglob("*.yaml") if "lib" not in p.relative_to(SPECS).parts)
_CACHE: dict[tuple, compiler.Graph] = {}


def graph(name: str, **params) -> compiler.Graph:
    key = (name, tuple(sorted(params.items())))
    if key not in _CACHE:
        _CACHE[key] = compiler.compile_file(SPECS / name, params=params or None)
    return _CACHE[key]


def n_params(g: compiler.Graph) -> int:
    """Trainable parameters, as sum(p.numel() for p in model.parameters()) counts them (no buffers)."""
    return sum(math.prod(p.shape) for p, _ in g.params().values() if not p.buffer)


def state_dict_shapes(g: compiler.Graph) -> dict[str, tuple]:
    return {k: tuple(p.shape) for k, (p, _) in g.params().items()}


# --------------------------------------------------------------------------------------------
# every example compiles
# --------------------------------------------------------------------------------------------
def test_examples_found():
    names = {p.stem for p in EXAMPLES}
    assert {"lenet5", "resnet18", "resnet50", "vgg16", "googlenet", "vit", "dcgan", "vae", "gcn", "gat"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(SPECS)) for p in EXAMPLES])
def test_example_compiles(path: Path):
    g = compiler.compile_file(path)
    assert g.nodes and g.outputs
    for name, t in g.outputs.items():
        assert t.rank >= 0, name
    if g.train is not None and g.train.objective is not None:
        objective = g.train.objective
        for ref in ([objective] if isinstance(objective, str) else objective):
            assert g.node(ref).out.rank == 0, f"{path.name}: objective {ref} is not a scalar"


# --------------------------------------------------------------------------------------------
# published parameter counts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,params,count", [
    ("lenet5.yaml", {}, 61_706),
    ("resnet18.yaml", {}, 11_689_512),
    ("resnet50.yaml", {}, 25_557_032),
    ("resnet50.yaml", {"groups": 32, "width_per_group": 4}, 25_028_904),    # torchvision resnext50_32x4d
    ("resnet50.yaml", {"width_per_group": 128}, 68_883_240),              # torchvision wide_resnet50_2
    ("vgg16.yaml", {}, 138_357_544),
    ("vit.yaml", {}, 86_567_656),
    ("googlenet.yaml", {}, 6_624_904),
    ("googlenet.yaml", {"k5": 5}, 7_005_832),
    ("dcgan.yaml", {}, 3_576_704 + 2_765_568),          # PyTorch's DCGAN tutorial: netG + netD
    ("gcn.yaml", {}, 23_063),                           # PyG's 2-layer GCN on Cora
    ("gat.yaml", {}, 92_373),                           # PyG's GAT (8 heads x 8, then 1 head) on Cora
])
def test_published_parameter_counts(spec, params, count):
    g = graph(spec, **params)
    assert n_params(g) == count
    from compiler.summary import totals
    assert totals(g)["params"] == count                 # what `specc check` prints


def test_googlenet_k5_changes_only_the_third_branch():
    a, b = state_dict_shapes(graph("googlenet.yaml")), state_dict_shapes(graph("googlenet.yaml", k5=5))
    assert a.keys() == b.keys()
    diff = {k for k in a if a[k] != b[k]}
    assert diff and all(".branch3.1.conv.weight" in k for k in diff)
    assert b["inception3a.branch3.1.conv.weight"] == (32, 16, 5, 5)
    assert a["inception3a.branch3.1.conv.weight"] == (32, 16, 3, 3)


def test_compiling_resnet50_again_gives_the_same_graph():
    """A second compile (warm caches: imports, the parsed std lib) builds the same graph as the first.
    How fast it compiles is measured by tools/bench.py, not asserted here."""
    first = graph("resnet50.yaml")
    again = compiler.compile_file(SPECS / "resnet50.yaml")
    assert again is not first and again.spec_hash == first.spec_hash
    assert [(n.name, n.op, [str(t) for t in n.outputs.values()]) for n in again.nodes] == \
           [(n.name, n.op, [str(t) for t in n.outputs.values()]) for n in first.nodes]
    assert state_dict_shapes(again) == state_dict_shapes(first)


# --------------------------------------------------------------------------------------------
# torchvision's state_dict names, generated from its known module structure
# --------------------------------------------------------------------------------------------
def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def torchvision_resnet18_state_dict() -> dict[str, tuple]:
    """torchvision.models.resnet18().state_dict(): names (in order) and shapes."""
    sd: dict[str, tuple] = {"conv1.weight": (64, 3, 7, 7)}
    sd |= _bn("bn1", 64)
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), 1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            sd[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
            sd |= _bn(f"{p}.bn1", planes)
            sd[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            sd |= _bn(f"{p}.bn2", planes)
            if stride != 1 or inplanes != planes:
                sd[f"{p}.downsample.0.weight"] = (planes, inplanes, 1, 1)
                sd |= _bn(f"{p}.downsample.1", planes)
            inplanes = planes
    sd["fc.weight"], sd["fc.bias"] = (1000, 512), (1000,)
    return sd


def test_resnet18_state_dict_matches_torchvision():
    ours = state_dict_shapes(graph("resnet18.yaml"))
    expected = torchvision_resnet18_state_dict()
    assert list(ours) == list(expected)                 # same names, same order
    assert ours == expected                             # same shapes
    assert sum(math.prod(s) for k, s in expected.items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == 11_689_512


def test_resnet50_state_dict_names():
    sd = state_dict_shapes(graph("resnet50.yaml"))
    blocks = {"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}
    for layer, n in blocks.items():
        assert f"{layer}.{n - 1}.conv3.weight" in sd and f"{layer}.{n}.conv1.weight" not in sd
        assert f"{layer}.0.downsample.0.weight" in sd and f"{layer}.1.downsample.0.weight" not in sd
    assert sd["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)       # expansion 4 from the stem's 64
    assert sd["layer2.0.conv2.weight"] == (128, 128, 3, 3)               # v1.5: the stride on the 3x3
    assert sd["fc.weight"] == (1000, 2048)
    g = graph("resnet50.yaml")
    assert g.node("layer2.0.conv2").attrs.stride in (2, (2, 2), [2, 2])
    assert g.node("layer4.2.relu_3").out.shape == ("N", 2048, 7, 7)


def test_vgg16_state_dict_matches_torchvision():
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    expected = {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    expected |= {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    sd = state_dict_shapes(graph("vgg16.yaml"))
    assert set(sd) == expected
    assert sd["classifier.0.weight"] == (4096, 512 * 7 * 7)


def test_vgg16_from_std_vgg_stages_has_the_same_count():
    text = """
imports: {vgg: std:vgg}
inputs: {image: [N, 3, 224, 224]}
layers:
  - {use: vgg.vgg_stage, name: s1, out: 64}
  - {use: vgg.vgg_stage, name: s2, out: 128}
  - {use: vgg.vgg_stage, name: s3, out: 256, convs: 3}
  - {use: vgg.vgg_stage, name: s4, out: 512, convs: 3}
  - {use: vgg.vgg_stage, name: s5, out: 512, convs: 3}
  - {adaptive_avg_pool2d: 7}
  - flatten
  - {linear: 4096}
  - relu
  - {linear: 4096}
  - relu
  - {linear: 1000}
"""
    g = compiler.compile_text(text)
    assert n_params(g) == 138_357_544
    assert g.node("s5.pool").out.shape == ("N", 512, 7, 7)
    bn = compiler.compile_text(text.replace("out: 64}", "out: 64, bn: true}"))
    assert "s1.conv.1.bn.running_mean" in bn.params()


def test_googlenet_names_follow_torchvision():
    sd = state_dict_shapes(graph("googlenet.yaml"))
    assert sd["conv1.conv.weight"] == (64, 3, 7, 7) and "conv1.conv.bias" not in sd
    assert sd["inception3a.branch1.conv.weight"] == (64, 192, 1, 1)
    assert sd["inception3a.branch2.1.conv.weight"] == (128, 96, 3, 3)
    assert sd["inception3a.branch4.1.bn.running_var"] == (32,)
    assert sd["inception5b.branch4.1.conv.weight"] == (128, 832, 1, 1)
    assert sd["fc.weight"] == (1000, 1024)
    assert graph("googlenet.yaml").node("conv1.bn").attrs.eps == pytest.approx(1e-3)


def torchvision_vit_b_16_state_dict() -> dict[str, tuple]:
    d, mlp = 768, 3072
    sd = {"class_token": (1, 1, d), "conv_proj.weight": (d, 3, 16, 16), "conv_proj.bias": (d,),
          "encoder.pos_embedding": (1, 197, d)}
    for i in range(12):
        p = f"encoder.layers.encoder_layer_{i}"
        sd |= {f"{p}.ln_1.weight": (d,), f"{p}.ln_1.bias": (d,),
               f"{p}.self_attention.in_proj_weight": (3 * d, d), f"{p}.self_attention.in_proj_bias": (3 * d,),
               f"{p}.self_attention.out_proj.weight": (d, d), f"{p}.self_attention.out_proj.bias": (d,),
               f"{p}.ln_2.weight": (d,), f"{p}.ln_2.bias": (d,),
               f"{p}.mlp.0.weight": (mlp, d), f"{p}.mlp.0.bias": (mlp,),
               f"{p}.mlp.3.weight": (d, mlp), f"{p}.mlp.3.bias": (d,)}
    sd |= {"encoder.ln.weight": (d,), "encoder.ln.bias": (d,), "heads.head.weight": (1000, d),
           "heads.head.bias": (1000,)}
    return sd


def test_vit_b_16_state_dict_matches_torchvision():
    expected = torchvision_vit_b_16_state_dict()
    assert sum(math.prod(s) for s in expected.values()) == 86_567_656
    assert state_dict_shapes(graph("vit.yaml")) == expected
    g = graph("vit.yaml")
    assert g.node("sequence").out.shape == ("N", 197, 768)
    assert g.node("encoder.ln").attrs.eps == pytest.approx(1e-6)


# --------------------------------------------------------------------------------------------
# PyTorch's TransformerEncoderLayer: same names and shapes, and (torch installed) same outputs
# --------------------------------------------------------------------------------------------
LAYER = """
imports: {tf: std:transformer}
params: {block: encoder_layer_nomask, act: relu}
inputs: {x: [N, T, 32]}
layers:
  - {use: "tf.${block}", name: layer, d_model: 32, nhead: 4, dim_feedforward: 64, activation: "${act}"}
outputs: [layer]
"""


@pytest.mark.parametrize("block,norm_first,act", [("encoder_layer_nomask", False, "relu"),
                                                  ("encoder_layer_prenorm", True, "gelu")])
def test_transformer_encoder_layer_matches_torch(block, norm_first, act):
    torch = pytest.importorskip("torch")
    import runtime
    torch.manual_seed(0)
    ref = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first,
                                           activation=act).eval()
    theirs = {f"layer.{k}": v.detach().numpy() for k, v in ref.state_dict().items()}
    g = compiler.compile_text(LAYER, params={"block": block, "act": act})
    assert state_dict_shapes(g) == {k: v.shape for k, v in theirs.items()}
    model = runtime.Model(g, seed=0)
    model.load_state_dict(theirs, strict=True)
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 5, 32)).astype(np.float32)
    ours = model(x=x)["layer"]
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5)


def test_vit_block_matches_torchvision_encoder_block():
    """std:transformer vit_block against torchvision's EncoderBlock, re-stated here in torch
    (torchvision.models.vision_transformer.EncoderBlock: pre-norm, GELU MLP, layer-norm eps 1e-6)."""
    torch = pytest.importorskip("torch")
    import runtime
    nn = torch.nn

    class EncoderBlock(nn.Module):
        def __init__(self, heads: int, hidden: int, mlp_dim: int):
            super().__init__()
            self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
            self.self_attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.dropout = nn.Dropout(0.0)
            self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(hidden, mlp_dim), nn.GELU(), nn.Dropout(0.0),
                                     nn.Linear(mlp_dim, hidden), nn.Dropout(0.0))

        def forward(self, inp):
            x = self.ln_1(inp)
            x, _ = self.self_attention(x, x, x, need_weights=False)
            x = self.dropout(x) + inp
            return x + self.mlp(self.ln_2(x))

    torch.manual_seed(0)
    ref = EncoderBlock(4, 32, 64).eval()
    g = compiler.compile_text("imports: {tf: std:transformer}\ninputs: {x: [N, T, 32]}\n"
                              "layers: [{use: tf.vit_block, name: b, num_heads: 4, mlp_dim: 64}]\noutputs: [b]\n")
    theirs = {f"b.{k}": v.detach().numpy() for k, v in ref.state_dict().items()}
    assert state_dict_shapes(g) == {k: v.shape for k, v in theirs.items()}
    model = runtime.Model(g)
    model.load_state_dict(theirs, strict=True)
    x = np.random.default_rng(1).standard_normal((2, 7, 32)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.eval()(x=x)["b"], want, rtol=1e-4, atol=1e-5)


def test_transformer_encoder_layer_with_mask_names():
    text = """
imports: {tf: std:transformer}
inputs: {x: [N, T, 32], pad: {shape: [N, T], dtype: bool}}
layers:
  - {use: tf.encoder_layer, name: enc, in: [x, pad], d_model: 32, nhead: 4, repeat: 2}
"""
    g = compiler.compile_text(text)
    names = {k.split(".", 2)[2] for k in g.params()}
    assert names == {"self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                     "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
                     "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}
    # the repeated layer keeps reading the mask; the chain passes through the first input only
    second = g.node("enc.1.self_attn")
    assert [str(r) for r in second.inputs] == ["enc.0.norm2"] * 3 + ["pad"]


def test_transformer_classifier_masks_every_layer():
    g = graph("transformer_classifier.yaml")
    for i in (0, 1):
        assert str(g.node(f"encoder.{i}.self_attn").inputs[3]) == "padding_mask"
    assert g.outputs["logits"].shape == ("N", 4)


# --------------------------------------------------------------------------------------------
# other examples: the properties their descriptions promise
# --------------------------------------------------------------------------------------------
def test_conv_autoencoder_reconstructs_the_input_shape():
    g = graph("conv_autoencoder.yaml")
    assert g.outputs["reconstruction"] == g.inputs["image"]
    runtime = pytest.importorskip("runtime")
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    out = runtime.Model(g).eval()(image=x)["reconstruction"]
    assert out.shape == x.shape


def test_autoencoder_and_vae_reconstruct_the_input_shape():
    for spec in ("autoencoder.yaml", "vae.yaml"):
        g = graph(spec)
        assert g.outputs["reconstruction"] == g.inputs["image"], spec
    assert graph("vae.yaml").outputs["mu"].shape == ("N", 20)


def test_dcgan_shares_the_discriminator_and_splits_the_phases():
    g = graph("dcgan.yaml")
    params = set(g.params())
    assert all(k.startswith(("gen.", "disc.")) for k in params)
    assert g.node("disc_fake.0").param_prefix == "disc.0" and g.node("disc_gen.11").param_prefix == "disc.11"
    assert g.outputs["fake"] == g.inputs["real"]
    assert [p.update for p in g.train.phases] == [["disc.*"], ["gen.*"]]
    assert str(g.node("disc_fake.0").inputs[0]) == "fake_detached"


def test_seq2seq_decoder_starts_from_the_encoder_states():
    g = graph("seq2seq.yaml")
    assert [str(r) for r in g.node("dec").inputs] == ["dec_emb", "enc:h", "enc:c"]


def test_recurrent_classifiers_read_the_last_state():
    assert graph("lstm_classifier.yaml").node("h_last").out.shape == ("N", 256)
    assert graph("gru_classifier.yaml").outputs["hidden"].shape == (1, "N", 128)
    assert graph("rnn_classifier.yaml").node("last").out.shape == ("N", 128)


def test_word2vec_predicts_over_the_vocabulary():
    for spec in ("word2vec_skipgram.yaml", "word2vec_cbow.yaml"):
        g = graph(spec)
        assert g.outputs["logits"].shape == ("N", 10_000)
        assert g.params()["embeddings.weight"][0].shape == (10_000, 128)


def test_aux_classifier_weighted_objective():
    g = graph("aux_classifier.yaml")
    assert g.train.objective == {"loss": 1.0, "aux_loss": 0.3}
    assert list(g.outputs) == ["logits"]


def test_perceptron_unit_and_trainable_variant():
    g = graph("perceptron.yaml")
    assert g.node("decision").op == "step" and g.node("loss").op == "bce_loss"
    assert n_params(g) == 3


def test_deep_sets_is_permutation_invariant_by_construction():
    g = graph("deep_sets.yaml")
    assert g.node("phi.fc3").out.shape == ("N", "S", 64)
    assert g.node("pool").out.shape == ("N", 64)


def test_graph_examples_are_cora_sized():
    for spec in ("gcn.yaml", "gat.yaml"):
        g = graph(spec)
        assert g.inputs["x"].shape == (2708, 1433) and g.inputs["adj"].shape == (2708, 2708)
        assert g.outputs["logits"].shape == (2708, 7)
