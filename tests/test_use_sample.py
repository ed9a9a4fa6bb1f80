"""`specc sample` and `specc interpolate` on a small VAE trained here and a class-conditional generator;
decoded codes are compared with the decoder written out in NumPy from the state_dict."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from compiler import compile_text
from cli.main import main
from runtime import Model, fit, save

VAE = """\
name: tiny_vae
inputs:
  image: [N, 1, 4, 4]
layers:
  - {op: flatten, name: flat, in: image}
  - {op: linear, name: fc1, out_features: 12}
  - {op: relu, name: act}
  - {op: linear, name: fc_mu, out_features: 2}
  - {op: linear, name: fc_logvar, in: act, out_features: 2}
  - {op: reparameterize, name: z, in: [fc_mu, fc_logvar]}
  - {op: linear, name: dec1, out_features: 12}
  - {op: relu, name: dec_act}
  - {op: linear, name: dec2, out_features: 16}
  - {op: sigmoid, name: dec_sig}
  - {op: reshape, name: dec, shape: [N, 1, 4, 4]}
  - {op: bce_loss, name: recon, in: [dec, image], reduction: sum}
  - {op: kl_normal, name: kl, in: [fc_mu, fc_logvar], reduction: sum}
outputs: {reconstruction: dec, mu: fc_mu}
train: {objective: {recon: 1.0, kl: 1.0}, optimizer: {type: adam, lr: 0.01}, batch_size: 32, epochs: 5}
"""

CGAN = """\
name: tiny_cgan
inputs:
  noise: [N, 4]
  label: {shape: [N], dtype: int64}
  real: [N, 1, 4, 4]
layers:
  - {op: embedding, name: emb, in: label, num_embeddings: 3, embedding_dim: 4}
  - {op: add, name: mix, in: [noise, emb]}
  - {op: linear, name: gen_fc, out_features: 16}
  - {op: tanh, name: gen_act}
  - {op: reshape, name: gen, shape: [N, 1, 4, 4]}
  - {op: flatten, name: rflat, in: real}
  - {op: linear, name: disc, out_features: 1}
outputs: {fake: gen, score: disc}
train: {objective: null, noise: {noise: normal}}
"""


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_decoder(sd, z):
    h = np.maximum(z @ sd["dec1.weight"].T + sd["dec1.bias"], 0)
    return sigmoid(h @ sd["dec2.weight"].T + sd["dec2.bias"]).reshape(len(z), 1, 4, 4)


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    d = tmp_path_factory.mktemp("vae")
    rng = np.random.default_rng(0)
    protos = np.array([np.eye(4), np.fliplr(np.eye(4))])[:, None]
    images = np.clip(protos[rng.integers(0, 2, 200)] + 0.1 * rng.random((200, 1, 4, 4)), 0, 1).astype(np.float32)
    (d / "vae.yaml").write_text(VAE)
    m = Model(compile_text(VAE))
    fit(m, {"image": images}, log=None, progress=False)
    save(m, d / "w.npz")
    np.save(d / "a.npy", images[:2])
    np.save(d / "b.npy", images[2:4])
    return d, m.eval()


def test_sample_decodes_standard_normal_codes(vae, capsys):
    d, m = vae
    assert main(["sample", str(d / "vae.yaml"), "--weights", str(d / "w.npz"), "--n", "6", "--seed", "3",
                 "-o", str(d / "s.png")]) == 0
    with np.load(d / "s.npz") as z:
        codes, samples = z["latent"], z["samples"]
    assert codes.shape == (6, 2)           # the reparameterize node's code, drawn from N(0, I) with the seed
    assert np.allclose(codes, np.random.default_rng(3).standard_normal((6, 2)).astype(np.float32))
    assert np.allclose(samples, numpy_decoder(m.state_dict(), codes.astype(np.float64)), atol=1e-5)
    img = Image.open(d / "s.png")
    assert img.size[0] > 0 and img.mode == "L"
    assert "wrote" in capsys.readouterr().out


def test_interpolate_ends_are_the_reconstructions(vae):
    d, m = vae
    assert main(["interpolate", str(d / "vae.yaml"), "--weights", str(d / "w.npz"), "--input",
                 f"image={d / 'a.npy'}", "--input2", f"image={d / 'b.npy'}", "--steps", "5",
                 "-o", str(d / "i.png")]) == 0
    a, b = np.load(d / "a.npy"), np.load(d / "b.npy")
    with np.load(d / "i.npz") as z:
        images, codes, t = z["images"], z["codes"], z["t"]
    assert images.shape == (10, 1, 4, 4) and np.allclose(t, np.linspace(0, 1, 5))
    ra, rb = m(outputs=["reconstruction"], image=a)["reconstruction"], m(image=b)["reconstruction"]
    assert np.allclose(images[0::5], ra, atol=1e-5) and np.allclose(images[4::5], rb, atol=1e-5)
    mu_a, mu_b = m(outputs=["mu"], image=a)["mu"], m(outputs=["mu"], image=b)["mu"]
    assert np.allclose(codes[2::5], (mu_a + mu_b) / 2, atol=1e-5)     # the midpoint of the two means
    assert Image.open(d / "i.png").size[0] > Image.open(d / "i.png").size[1]   # 2 rows of 5


def test_conditional_generator_gets_the_class(tmp_path):
    m = Model(compile_text(CGAN), seed=1)
    (tmp_path / "g.yaml").write_text(CGAN)
    save(m, tmp_path / "w.npz")
    sd = m.state_dict()

    def gen(z, y):
        return np.tanh((z + sd["emb.weight"][y]) @ sd["gen_fc.weight"].T + sd["gen_fc.bias"]).reshape(len(z), 1, 4, 4)

    args = ["sample", str(tmp_path / "g.yaml"), "--weights", str(tmp_path / "w.npz"), "--n", "6"]
    assert main(args + ["--class", "2", "-o", str(tmp_path / "c2.png")]) == 0
    with np.load(tmp_path / "c2.npz") as z:
        assert z["labels"].tolist() == [2] * 6
        assert np.allclose(z["samples"], gen(z["latent"], z["labels"]), atol=1e-5)
    assert main(args + ["-o", str(tmp_path / "all.png")]) == 0          # every class in turn
    with np.load(tmp_path / "all.npz") as z:
        assert z["labels"].tolist() == [0, 1, 2, 0, 1, 2]
        assert np.allclose(z["samples"], gen(z["latent"], z["labels"]), atol=1e-5)
    assert main(args + ["--class", "3", "-o", str(tmp_path / "bad.png")]) == 2
    assert not (tmp_path / "bad.png").exists()


def test_sample_errors(vae, tmp_path, capsys):
    d, _ = vae
    base = ["sample", str(d / "vae.yaml"), "--weights", str(d / "w.npz")]
    assert main(base + ["--latent", "nope", "-o", str(tmp_path / "x.png")]) == 1
    assert "unknown node or output 'nope'" in capsys.readouterr().err
    assert main(base + ["--class", "1", "-o", str(tmp_path / "x.png")]) == 2
    assert main(base + ["-o", str(d / "w.npz")]) == 2                      # never overwrites the checkpoint
    ae = VAE.replace("reparameterize", "add")
    (tmp_path / "ae.yaml").write_text(ae)
    save(Model(compile_text(ae)), tmp_path / "ae.npz")
    assert main(["sample", str(tmp_path / "ae.yaml"), "--weights", str(tmp_path / "ae.npz"),
                 "-o", str(tmp_path / "x.png")]) == 2
    assert "--latent" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "ae.yaml"), "--weights", str(tmp_path / "ae.npz"), "--latent", "z",
                 "-o", str(tmp_path / "x.png")]) == 0


def test_interpolate_gan_noise_codes(tmp_path):
    """A GAN's code is its noise input: the ends of the line are the two noise arrays themselves."""
    m = Model(compile_text(CGAN), seed=2)
    (tmp_path / "g.yaml").write_text(CGAN)
    save(m, tmp_path / "w.npz")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.standard_normal((1, 4)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal((1, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.array([1]))
    assert main(["interpolate", str(tmp_path / "g.yaml"), "--weights", str(tmp_path / "w.npz"),
                 "--input", f"noise={tmp_path / 'a.npy'}", "--input", f"label={tmp_path / 'y.npy'}",
                 "--input2", f"noise={tmp_path / 'b.npy'}", "--input2", f"label={tmp_path / 'y.npy'}",
                 "--steps", "3", "-o", str(tmp_path / "i.png")]) == 0
    with np.load(tmp_path / "i.npz") as z:
        codes, images = z["codes"], z["images"]
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert np.allclose(codes, [a[0], (a[0] + b[0]) / 2, b[0]])
    want = m(outputs=["fake"], noise=codes, label=np.array([1, 1, 1]))["fake"]
    assert np.allclose(images, want, atol=1e-6)
