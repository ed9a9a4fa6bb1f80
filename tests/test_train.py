"""fit(): seeds, resume, early stopping, freeze/lr_scale, clipping, phases, augmentation, standardize,
non-finite losses, data checks, metrics. Small synthetic problems: the whole file runs in seconds."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

import compiler
from compiler.errors import SpecError, UserError
from runtime import Model, NonFiniteError
from runtime import augment as A
from runtime import data as D
from runtime import metrics as M
from runtime.checkpoint import read_npz, split
from runtime.progress import Progress
from runtime.train import evaluate, fit, weighted_sum

BASE = {
    "name": "tiny",
    "inputs": {"image": [("N"), 1, 4, 4], "label": {"shape": ["N"], "dtype": "int64"}},
    "layers": [
        {"op": "standardize", "name": "norm", "from_data": True},
        "flatten",
        {"op": "linear", "name": "fc1", "out_features": 8},
        "relu",
        {"op": "dropout", "p": 0.1},
        {"op": "linear", "name": "fc2", "out_features": 3},
        {"op": "cross_entropy", "name": "loss", "in": ["fc2", "label"]},
    ],
    "outputs": ["fc2"],
    "train": {"objective": "loss", "optimizer": {"type": "adam", "lr": 0.01}, "schedule": "cosine",
              "batch_size": 16, "epochs": 4, "seed": 3, "predict": "fc2", "target": "label",
              "metrics": ["accuracy", "f1"]},
}


def make_spec(train=None, layers=None, inputs=None, drop=(), **top):
    d = copy.deepcopy(BASE)
    if layers is not None:
        d["layers"] = layers
    if inputs is not None:
        d["inputs"] = inputs
    d["train"].update(train or {})
    for k in drop:
        d["train"].pop(k, None)
    d.update(top)
    return compiler.compile_text(yaml.safe_dump(d, sort_keys=False))


def blobs(n=96, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, classes, n)
    centres = rng.normal(0, 1, (classes, 1, 4, 4)).astype(np.float32)
    image = (centres[label] + 0.5 * rng.standard_normal((n, 1, 4, 4))).astype(np.float32) * 3 + 1
    return {"image": image, "label": label.astype(np.int64)}


def weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def quiet(*a, **k):
    pass


def test_same_seed_same_run_bit_for_bit(tmp_path):
    g = make_spec({"augment": {"input": "image", "ops": [{"gaussian_noise": 0.1}, {"cutout": 2}]}})
    runs = []
    for _ in range(2):
        m = Model(g, seed=3)
        h = fit(m, blobs(), val_data=0.25, log=quiet, progress=False)
        runs.append((weights(m), [{k: v for k, v in r.items() if k != "time"} for r in h]))
    assert same(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    other = Model(g, seed=3)
    fit(other, blobs(), val_data=0.25, log=quiet, progress=False, seed=4)
    assert not same(runs[0][0], weights(other))


def test_resume_equals_uninterrupted(tmp_path):
    g = make_spec({"epochs": 5, "early_stopping": {"monitor": "val.accuracy", "patience": 10},
                   "augment": {"input": "image", "ops": [{"gaussian_noise": 0.1}, {"horizontal_flip": 0.5}]}})
    data = blobs()
    full = Model(g, seed=3)
    h_full = fit(full, data, val_data=0.25, out_dir=tmp_path / "a", log=quiet, progress=False)

    def interrupt(epoch, rec):
        if epoch == 2:
            raise KeyboardInterrupt

    part = Model(g, seed=3)
    with pytest.raises(KeyboardInterrupt):
        fit(part, data, val_data=0.25, out_dir=tmp_path / "b", log=quiet, progress=False, callback=interrupt)
    resumed = Model(g, seed=99)                   # a fresh model: everything comes from last.npz
    h_res = fit(resumed, data, val_data=0.25, out_dir=tmp_path / "b", resume=tmp_path / "b" / "last.npz",
                log=quiet, progress=False)
    assert same(weights(full), weights(resumed))
    assert [r["val.loss"] for r in h_full] == [r["val.loss"] for r in h_res]
    a = split(read_npz(tmp_path / "a" / "last.npz"))
    b = split(read_npz(tmp_path / "b" / "last.npz"))
    assert same(a[0], b[0]) and same(a[2], b[2])
    assert (tmp_path / "b" / "history.csv").read_text().count("\n") == 6


def test_resume_refuses_weights_only_and_other_spec(tmp_path):
    g = make_spec({"epochs": 1})
    m = Model(g)
    fit(m, blobs(), out_dir=tmp_path, log=quiet, progress=False)
    with pytest.raises(UserError, match="weights only"):
        fit(Model(g), blobs(), resume=tmp_path / "best.npz", log=quiet, progress=False)
    other = make_spec({"epochs": 1}, name="other", layers=BASE["layers"][:2] + [
        {"op": "linear", "name": "fc1", "out_features": 8}, "relu",
        {"op": "linear", "name": "fc2", "out_features": 3},
        {"op": "cross_entropy", "name": "loss", "in": ["fc2", "label"]}])
    with pytest.raises(UserError, match="different spec"):
        fit(Model(other), blobs(), resume=tmp_path / "last.npz", log=quiet, progress=False)


def test_early_stopping_restores_best(tmp_path):
    g = make_spec({"epochs": 30, "optimizer": {"type": "adam", "lr": 0.05}, "schedule": "none",
                   "early_stopping": {"monitor": "val.loss", "patience": 3, "restore_best": True}})
    train = blobs(96, seed=1)
    val = {"image": train["image"][:32], "label": (train["label"][:32] + 1) % 3}   # wrong labels: val loss rises
    m = Model(g, seed=0)
    lines = []
    h = fit(m, train, val, out_dir=tmp_path, log=lines.append, progress=False)
    best = min(range(len(h)), key=lambda i: h[i]["val.loss"])
    assert len(h) == best + 1 + 3 < 30
    assert any("early stopping" in ln for ln in lines)
    best_ckpt = split(read_npz(tmp_path / "best.npz"))
    last_ckpt = split(read_npz(tmp_path / "last.npz"))
    assert best_ckpt[1]["epoch"] == best + 1
    assert same(weights(m), best_ckpt[0])
    assert not same(weights(m), last_ckpt[0])
    assert evaluate(m, val)["loss"] == pytest.approx(h[best]["val.loss"], rel=1e-6)


def test_freeze_and_lr_scale(tmp_path):
    sgd = {"type": "sgd", "lr": 0.1}
    g = make_spec({"freeze": ["fc1.*"], "epochs": 2, "optimizer": sgd})
    m = Model(g)
    before = weights(m)
    fit(m, blobs(), log=quiet, progress=False)
    after = weights(m)
    assert np.array_equal(before["fc1.weight"], after["fc1.weight"])
    assert np.array_equal(before["fc1.bias"], after["fc1.bias"])
    assert not np.array_equal(before["fc2.weight"], after["fc2.weight"])

    # one full-batch SGD step: a parameter with lr_scale 0.25 moves a quarter as far
    layers = [x for x in BASE["layers"] if not (isinstance(x, dict) and x.get("op") == "dropout")]
    moves = {}
    for scale in (1.0, 0.25):
        g = make_spec({"lr_scale": {"fc2.*": scale}, "epochs": 1, "batch_size": 1000, "optimizer": sgd},
                      layers=layers)
        m = Model(g)
        b = weights(m)
        fit(m, blobs(), log=quiet, progress=False)
        moves[scale] = {k: v - b[k] for k, v in weights(m).items()}
    np.testing.assert_allclose(moves[0.25]["fc2.weight"], 0.25 * moves[1.0]["fc2.weight"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(moves[0.25]["fc1.weight"], moves[1.0]["fc1.weight"], rtol=1e-4, atol=1e-7)


def test_globs_that_match_nothing_are_errors():
    with pytest.raises(SpecError, match="matches no parameter"):
        make_spec({"freeze": ["conv9.*"]})
    g = make_spec()
    cfg = g.train.model_copy(update={"lr_scale": {"fc9.*": 0.1}})
    with pytest.raises(UserError, match="fc9"):
        fit(Model(g), blobs(), config=cfg, log=quiet, progress=False)


@pytest.mark.parametrize("clip", [{"max_norm": 1e-3}, {"value": 1e-4}])
def test_grad_clip(clip):
    g = make_spec({"grad_clip": clip, "epochs": 1, "batch_size": 1000, "optimizer": {"type": "sgd", "lr": 1.0}},
                  layers=[x for x in BASE["layers"] if not (isinstance(x, dict) and x.get("op") == "dropout")])
    m = Model(g)
    b = weights(m)
    fit(m, blobs(), log=quiet, progress=False)
    moves = [v - b[k] for k, v in weights(m).items() if not k.startswith("norm.")]
    if "max_norm" in clip:
        total = np.sqrt(sum(float((d.astype(np.float64) ** 2).sum()) for d in moves))
        assert 0.5e-3 < total <= 1e-3 * (1 + 1e-4)
    else:
        assert max(np.abs(d).max() for d in moves) <= 1e-4 * (1 + 1e-4)


GAN = {
    "name": "tiny_gan",
    "inputs": {"real": ["N", 2], "z": ["N", 2], "ones": ["N", 1], "zeros": ["N", 1]},
    "blocks": {"critic": {"inputs": ["x"], "layers": [{"op": "linear", "name": "fc1", "out_features": 8},
                                                      "tanh", {"op": "linear", "name": "fc2", "out_features": 1}]}},
    "layers": [
        {"op": "linear", "name": "gen", "in": "z", "out_features": 2},
        {"use": "critic", "name": "disc", "in": "real"},
        {"call": "disc", "name": "disc_fake", "in": "gen"},
        {"op": "bce_with_logits", "name": "d_real", "in": ["disc", "ones"]},
        {"op": "bce_with_logits", "name": "d_fake", "in": ["disc_fake", "zeros"]},
        {"op": "add", "name": "d_loss", "in": ["d_real", "d_fake"]},
        {"op": "bce_with_logits", "name": "g_loss", "in": ["disc_fake", "ones"]},
    ],
    "outputs": ["gen"],
    "train": {"phases": [{"objective": "d_loss", "update": ["disc.*"], "steps": 2},
                         {"objective": "g_loss", "update": ["gen.*"],
                          "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.5}}],
              "optimizer": {"type": "adam", "lr": 0.01}, "batch_size": 32, "epochs": 3},
}


def gan_data(n=128):
    rng = np.random.default_rng(0)
    return {"real": (rng.standard_normal((n, 2)) * 0.5 + [2, -1]).astype(np.float32),
            "z": rng.standard_normal((n, 2)).astype(np.float32),
            "ones": np.ones((n, 1), np.float32), "zeros": np.zeros((n, 1), np.float32)}


def test_phases_alternate_over_parameter_subsets(tmp_path):
    g = compiler.compile_text(yaml.safe_dump(GAN, sort_keys=False))
    m = Model(g)
    b = weights(m)
    h = fit(m, gan_data(), log=quiet, progress=False, out_dir=tmp_path)
    a = weights(m)
    assert {"train.d_loss", "train.g_loss", "train.loss"} <= set(h[0])
    assert all(not np.array_equal(a[k], b[k]) for k in a)
    # only the discriminator phase: the generator does not move
    cfg = g.train.model_copy(update={"phases": g.train.phases[:1]})
    m = Model(g)
    b = weights(m)
    fit(m, gan_data(), config=cfg, log=quiet, progress=False)
    a = weights(m)
    assert np.array_equal(a["gen.weight"], b["gen.weight"]) and np.array_equal(a["gen.bias"], b["gen.bias"])
    assert not np.array_equal(a["disc.fc1.weight"], b["disc.fc1.weight"])
    # the phase optimisers keep separate state in the checkpoint: Adam moments for disc, momentum for gen
    _, meta, opt = split(read_npz(tmp_path / "last.npz"))
    assert "p0.state.disc.fc1.weight.exp_avg" in opt and "p1.state.gen.weight.momentum_buffer" in opt


def noise_gan(**train):
    spec = copy.deepcopy(GAN)
    spec["train"].update({"noise": {"z": "normal"}, **train})
    return compiler.compile_text(yaml.safe_dump(spec, sort_keys=False))


def test_noise_inputs_are_drawn_per_batch_not_read(tmp_path):
    g = noise_gan()
    data = {k: v for k, v in gan_data().items() if k != "z"}          # the data holds no noise
    seen = []
    m = Model(g, seed=0)
    real_forward = m.forward

    def spy(outputs=None, **feed):
        seen.append(feed["z"].copy())
        return real_forward(outputs=outputs, **feed)

    m.forward = spy
    h = fit(m, data, log=quiet, progress=False, out_dir=tmp_path)
    assert len(h) == 3 and np.isfinite(h[-1]["train.g_loss"])
    # 3 epochs x 4 batches x (2 + 1 phase steps), each batch's z fresh, shaped [batch, 2], N(0, 1)
    assert len(seen) == 3 * 4 * 3 and all(z.shape == (32, 2) and z.dtype == np.float32 for z in seen)
    per_batch = seen[::3]
    assert all(np.array_equal(seen[i], seen[i + 1]) for i in range(0, len(seen), 3))   # one draw per batch
    assert len({z.tobytes() for z in per_batch}) == len(per_batch)
    allz = np.concatenate(per_batch)
    assert abs(allz.mean()) < 0.15 and abs(allz.std() - 1) < 0.15
    # an array named like the noise input in the data is ignored, not fed
    m2 = Model(g, seed=0)
    h2 = fit(m2, gan_data(), log=quiet, progress=False)
    assert [r["train.loss"] for r in h2] == [r["train.loss"] for r in h]
    # uniform noise lies in [0, 1)
    m3 = Model(noise_gan(noise={"z": "uniform"}), seed=0)
    drawn = []
    f3 = m3.forward
    m3.forward = lambda outputs=None, **feed: (drawn.append(feed["z"]), f3(outputs=outputs, **feed))[1]
    fit(m3, data, epochs=1, log=quiet, progress=False)
    u = np.concatenate(drawn)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.1


def test_noise_runs_are_reproducible_and_resume_exactly(tmp_path):
    g = noise_gan(epochs=4)
    data = {k: v for k, v in gan_data().items() if k != "z"}
    full = Model(g, seed=1)
    h_full = fit(full, data, val_data=data, out_dir=tmp_path / "a", log=quiet, progress=False)
    again = Model(g, seed=1)
    fit(again, data, val_data=data, log=quiet, progress=False)
    assert same(weights(full), weights(again))

    def interrupt(epoch, rec):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(Model(g, seed=1), data, val_data=data, out_dir=tmp_path / "b", log=quiet, progress=False,
            callback=interrupt)
    resumed = Model(g, seed=7)
    h_res = fit(resumed, data, val_data=data, out_dir=tmp_path / "b", resume=tmp_path / "b" / "last.npz",
                log=quiet, progress=False)
    assert same(weights(full), weights(resumed))
    assert [r["val.loss"] for r in h_full] == [r["val.loss"] for r in h_res]
    # evaluation draws the same noise each time: the same weights give the same loss
    assert evaluate(full, data)["loss"] == evaluate(full, data)["loss"]


def test_augmentation_only_on_training_batches():
    layers = [x for x in BASE["layers"] if not (isinstance(x, dict) and x.get("op") == "dropout")]
    data = blobs()
    results = {}
    for ops in ([], [{"cutout": 100}]):          # a cutout larger than the image blanks it
        g = make_spec({"augment": {"input": "image", "ops": ops}, "epochs": 1,
                       "optimizer": {"type": "sgd", "lr": 0.0}}, layers=layers)
        m = Model(g)
        results[len(ops)] = fit(m, data, val_data=data, log=quiet, progress=False)[0]
        blank = evaluate(m, {"image": np.zeros_like(data["image"]), "label": data["label"]})["loss"]
    assert results[0]["train.loss"] == pytest.approx(results[0]["val.loss"], rel=1e-5)
    assert results[1]["train.loss"] == pytest.approx(blank, rel=1e-5)
    assert results[1]["val.loss"] == pytest.approx(results[0]["val.loss"], rel=1e-6)


def test_standardize_from_data_fits_training_split():
    g = make_spec({"epochs": 0}, inputs={"image": ["N", 3, 4, 4], "label": {"shape": ["N"], "dtype": "int64"}})
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 3, 4, 4)) * [[[[2.0]], [[0.5]], [[3.0]]]] + [[[[1.0]], [[-2.0]], [[5.0]]]])
    x = x.astype(np.float32)
    x[:, 1] = 7.0                                 # a constant channel gets std 1
    m = Model(g)
    fit(m, {"image": x, "label": rng.integers(0, 3, 50)}, log=quiet, progress=False)
    sd = m.state_dict()
    want_mean = x.astype(np.float64).mean(axis=(0, 2, 3))
    want_std = x.astype(np.float64).std(axis=(0, 2, 3))
    want_std[1] = 1.0
    np.testing.assert_allclose(sd["norm.mean"], want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sd["norm.std"], want_std, rtol=1e-5)


def test_non_finite_loss_names_node_and_keeps_last_good_checkpoint(tmp_path):
    g = make_spec({"epochs": 5})
    m = Model(g)

    def poison(epoch, rec):
        if epoch == 2:
            m.named_tensors()["fc2.weight"].data[0, 0] = np.nan

    with pytest.raises(NonFiniteError) as e:
        fit(m, blobs(), out_dir=tmp_path, log=quiet, progress=False, callback=poison)
    msg = e.value.render()
    assert "epoch 3" in msg and "'fc2'" in msg and "not finite" in msg and "last.npz" in msg
    state, meta, _ = split(read_npz(tmp_path / "last.npz"))
    assert meta["epoch"] == 2 and all(np.isfinite(v).all() for v in state.values())


def test_weighted_objective_sums_terms():
    layers = BASE["layers"][:-1] + [
        {"op": "cross_entropy", "name": "loss", "in": ["fc2", "label"]},
        {"op": "mul", "name": "sq", "in": ["fc1", "fc1"]},
        {"op": "mean", "name": "aux", "in": "sq"},
    ]
    g = make_spec({"objective": {"loss": 1.0, "aux": 0.3}, "epochs": 2}, layers=layers)
    m = Model(g)
    h = fit(m, blobs(), val_data=0.25, log=quiet, progress=False)
    r = h[-1]
    assert {"train.aux", "val.aux", "train.loss_term", "val.loss_term"} <= set(r)
    assert r["val.loss"] == pytest.approx(r["val.loss_term"] + 0.3 * r["val.aux"], rel=1e-6)
    res = evaluate(m, blobs(), config=g.train)
    assert res["loss"] == pytest.approx(res["loss_term"] + 0.3 * res["aux"], rel=1e-6)
    # gradient of the weighted sum = sum of weighted gradients
    from runtime.train import weighted_sum
    batch = blobs(8)
    m.eval()                                      # no dropout: the three passes see the same network
    m.zero_grad()
    outs = m.forward(outputs=["loss", "aux"], **batch)
    weighted_sum(outs, {"loss": 1.0, "aux": 0.3}).backward()
    g_total = {k: v.copy() for k, v in m.grads().items()}
    m.zero_grad()
    m.forward(outputs=["loss"], **batch)["loss"].backward()
    g_loss = {k: v.copy() for k, v in m.grads().items()}
    m.zero_grad()
    m.forward(outputs=["aux"], **batch)["aux"].backward()
    g_aux = m.grads()
    for k in g_total:
        np.testing.assert_allclose(g_total[k], g_loss[k] + 0.3 * g_aux.get(k, 0), rtol=1e-5, atol=1e-7)


# -- data checks -------------------------------------------------------------------------------------
def _save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_bad_data_files_are_refused_with_clear_messages(tmp_path):
    g = make_spec()
    ok = blobs(20)
    needed = ["image", "label"]
    with pytest.raises(UserError, match=r"no array 'image'.*\[N, 1, 4, 4\]") as e:
        D.load(g, _save(tmp_path / "a.npz", imagee=ok["image"], label=ok["label"]), needed)
    assert "did you mean 'imagee'" in e.value.render()
    with pytest.raises(UserError, match=r"array 'image'.*shape \[20, 16\].*expects \[N, 1, 4, 4\]"):
        D.load(g, _save(tmp_path / "b.npz", image=ok["image"].reshape(20, 16), label=ok["label"]), needed)
    with pytest.raises(UserError, match=r"array 'label'.*N is 19.*'image' has N = 20"):
        D.load(g, _save(tmp_path / "c.npz", image=ok["image"], label=ok["label"][:19]), needed)
    with pytest.raises(UserError, match=r"array 'label'.*dtype float64.*int64 \[N\]"):
        D.load(g, _save(tmp_path / "d.npz", image=ok["image"], label=ok["label"].astype(float)), needed)
    with pytest.raises(UserError, match=r"array 'image'.*dtype <U"):
        D.load(g, _save(tmp_path / "e.npz", image=np.array(["x"] * 320).reshape(20, 1, 4, 4), label=ok["label"]),
               needed)
    bad = ok["label"].copy()
    bad[5] = 3
    with pytest.raises(UserError, match=r"array 'label'.*outside 0\.\.2.*found 3 at index \[5\].*3 classes"):
        D.load(g, _save(tmp_path / "f.npz", image=ok["image"], label=bad), needed)
    bad[5] = -1
    with pytest.raises(UserError, match=r"outside 0\.\.2"):
        D.load(g, _save(tmp_path / "g.npz", image=ok["image"], label=bad), needed)
    nan = ok["image"].copy()
    nan[2, 0, 1, 1] = np.nan
    with pytest.raises(UserError, match=r"non-finite.*\[2, 0, 1, 1\]"):
        D.load(g, _save(tmp_path / "h.npz", image=nan, label=ok["label"]), needed)
    np.savez(tmp_path / "p.npz", image=np.array([{"a": 1}] * 20, dtype=object), label=ok["label"])
    with pytest.raises(UserError, match="pickled"):
        D.load(g, str(tmp_path / "p.npz"), needed)
    with pytest.raises(UserError, match="not found.*|tools/digits.py"):
        D.load(g, str(tmp_path / "digits_train.npz"), needed)
    try:
        D.load(g, str(tmp_path / "digits_train.npz"), needed)
    except UserError as err:
        assert "python tools/digits.py" in err.render()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a valid .npz|pickled"):
        D.load(g, str(tmp_path / "junk.npz"), needed)
    # fine: integer images are converted, extra arrays are ignored
    ds = D.load(g, _save(tmp_path / "ok.npz", image=(ok["image"] * 10).astype(np.uint8), label=ok["label"],
                         ids=np.arange(20)), needed)
    assert ds.arrays["image"].dtype == np.float32 and set(ds.arrays) == {"image", "label"}


def test_splits_and_batches():
    g = make_spec()
    ds = D.as_dataset(g, blobs(100))
    rest, held = D.split(ds, 0.2, seed=0)
    assert len(rest) == 80 and len(held) == 20
    rest2, held2 = D.split(ds, 0.2, seed=0)
    assert np.array_equal(held.arrays["label"], held2.arrays["label"])
    sizes = [len(b["label"]) for b in rest.batches(32, np.random.default_rng(0))]
    assert sizes == [32, 32, 16]
    seen = np.concatenate([b["image"] for b in rest.batches(32, np.random.default_rng(1))])
    assert not np.array_equal(seen, rest.arrays["image"])
    assert np.array_equal(np.sort(seen.ravel()), np.sort(rest.arrays["image"].ravel()))
    with pytest.raises(UserError, match="fraction"):
        D.split(ds, 1.5, seed=0)


def test_builtin_digits():
    pytest.importorskip("sklearn")
    tr, te = D.digits("train"), D.digits("test")
    assert tr["image"].shape[1:] == (1, 8, 8) and tr["image"].dtype == np.float32 and tr["label"].dtype == np.int64
    assert len(tr["label"]) + len(te["label"]) == 1797 and 355 <= len(te["label"]) <= 365
    assert 0.0 <= tr["image"].min() and tr["image"].max() <= 1.0
    assert np.bincount(te["label"]).min() >= 34                    # stratified
    g = make_spec(inputs={"image": ["N", 64], "label": {"shape": ["N"], "dtype": "int64"}},
                  layers=[{"op": "linear", "name": "fc2", "out_features": 10},
                          {"op": "cross_entropy", "name": "loss", "in": ["fc2", "label"]}])
    ds = D.load(g, "builtin:digits", role="test")
    assert ds.arrays["image"].shape == (len(te["label"]), 64) and ds.source == "builtin:digits/test"
    with pytest.raises(UserError) as e:
        D.load(g, "builtin:digit")
    assert "did you mean 'digits'" in e.value.render()


# -- metrics -----------------------------------------------------------------------------------------
def test_metrics_match_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 4)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    y[:5] = 3
    res = M.compute(logits, y)
    p = logits.argmax(1)
    assert res["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert res["precision"] == pytest.approx(skm.precision_score(y, p, average="macro", zero_division=0))
    assert res["recall"] == pytest.approx(skm.recall_score(y, p, average="macro", zero_division=0))
    assert res["f1"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    np.testing.assert_array_equal(res["confusion_matrix"], skm.confusion_matrix(y, p))
    # binary: one logit per sample, and two-class logits
    z = rng.standard_normal(100).astype(np.float32)
    t = rng.integers(0, 2, 100)
    res = M.compute(z[:, None], t)
    pb = (z >= 0).astype(int)
    assert res["f1"] == pytest.approx(skm.f1_score(t, pb))
    assert res["precision"] == pytest.approx(skm.precision_score(t, pb))
    probs = 1 / (1 + np.exp(-z))
    assert M.compute(probs, t, probabilities=True)["recall"] == pytest.approx(skm.recall_score(t, pb))
    two = np.stack([np.zeros(100), z], 1).astype(np.float32)
    assert M.compute(two, t)["f1"] == pytest.approx(skm.f1_score(t, (z > 0).astype(int)))
    # accumulated batch by batch = all at once
    acc = M.Accumulator()
    for s in range(0, 200, 64):
        acc.update(logits[s:s + 64], y[s:s + 64])
    assert acc.result() == pytest.approx({k: v for k, v in M.compute(logits, y).items() if k in M.NAMES})
    text = M.format_confusion(res["confusion_matrix"])
    assert text.startswith("confusion matrix") and "true  1 33 15" in text


# -- augmentation ------------------------------------------------------------------------------------
def test_augment_ops():
    rng = np.random.default_rng(0)
    x = rng.random((6, 2, 5, 5)).astype(np.float32)
    assert np.array_equal(A.parse({"random_crop": {"size": 5, "padding": 0}})(x, rng), x)
    crop = A.parse({"random_crop": {"size": 5, "padding": 2}})(x, np.random.default_rng(1))
    assert crop.shape == x.shape
    for i in range(6):                             # every crop is a shifted window of the padded image
        xp = np.pad(x[i], ((0, 0), (2, 2), (2, 2)))
        assert any(np.array_equal(crop[i], xp[:, a:a + 5, b:b + 5]) for a in range(5) for b in range(5))
    flip = A.parse({"horizontal_flip": 1.0})(x, rng)
    assert np.array_equal(flip, x[..., ::-1])
    assert np.array_equal(A.parse({"horizontal_flip": 0.0})(x, rng), x)
    assert np.allclose(A.parse({"rotation": 0})(x, rng), x, atol=1e-6)
    rot = A.rotation(x, _FixedAngle(90.0), degrees=90, mode="nearest")
    assert np.allclose(np.sort(rot.ravel()), np.sort(x.ravel()))          # a quarter turn permutes pixels
    rot_b = A.rotation(x, _FixedAngle(90.0), degrees=90)
    np.testing.assert_allclose(rot_b, rot, atol=1e-5)
    noisy = A.parse({"gaussian_noise": 0.5})(np.zeros((200, 1, 8, 8), np.float32), rng)
    assert abs(noisy.std() - 0.5) < 0.02 and noisy.dtype == np.float32
    cut = A.parse({"cutout": 2})(np.ones((50, 1, 6, 6), np.float32), rng)
    zeros = (cut == 0).sum(axis=(1, 2, 3))
    assert zeros.max() == 4 and zeros.min() >= 1
    a = A.Augmenter("image", ["horizontal_flip", {"rotation": 15}, {"cutout": 2}])
    b1 = a({"image": x}, np.random.default_rng(5))["image"]
    b2 = a({"image": x}, np.random.default_rng(5))["image"]
    assert np.array_equal(b1, b2)
    with pytest.raises(UserError) as e:
        A.parse({"cut_out": 3})
    assert "did you mean 'cutout'" in e.value.render()
    with pytest.raises(UserError, match="no setting 'sise'"):
        A.parse({"random_crop": {"sise": 3}})
    with pytest.raises(UserError, match="differs from input"):
        A.Augmenter("image", [{"random_crop": 3}], ("N", 1, 5, 5))


class _FixedAngle:
    """A stand-in generator whose uniform() always returns the same angle."""

    def __init__(self, deg):
        self.deg = deg

    def uniform(self, lo, hi, size):
        return np.full(size, self.deg)


def test_rotation_quarter_turn_is_rot90():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    rot = A.rotation(x, _FixedAngle(90.0), degrees=90, mode="nearest")
    assert any(np.array_equal(rot, np.rot90(x, k=k, axes=(2, 3))) for k in (1, 3))


# -- progress ----------------------------------------------------------------------------------------
class _Tty:
    def __init__(self, tty):
        self.text, self.tty = "", tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_bar_on_a_terminal_only():
    t = _Tty(True)
    p = Progress(epochs=3, batches=4, stream=t, min_interval=0)
    p.start_epoch(2)
    for b in range(1, 5):
        p.update(b, b * 10, 0.5)
    p.end_epoch()
    assert "\r" in t.text and "epoch 2/3" in t.text and "4/4" in t.text and "samples/s" in t.text
    assert "ETA" in t.text and "loss 0.5000" in t.text
    plain = _Tty(False)
    p = Progress(epochs=3, batches=4, stream=plain)
    p.start_epoch(1)
    p.update(1, 10, 0.5)
    p.end_epoch()
    assert plain.text == ""


def test_inputs_without_a_sample_dimension_are_passed_whole():
    # a whole-graph problem (as gcn.yaml): fixed sizes, no N; the data set is one sample, one batch per epoch
    g = make_spec({"epochs": 3, "batch_size": 2, "metrics": []}, drop=("predict", "target"),
                  inputs={"image": [6, 1, 4, 4], "label": {"shape": [6], "dtype": "int64"}})
    data = blobs(6)
    ds = D.as_dataset(g, data)
    assert len(ds) == 1 and ds.batched == [] and len(list(ds.batches(2, np.random.default_rng(0)))) == 1
    m = Model(g)
    h = fit(m, data, log=quiet, progress=False)
    assert len(h) == 3 and h[-1]["train.loss"] < h[0]["train.loss"]
    with pytest.raises(UserError, match="no input has a sample dimension"):
        D.split(ds, 0.2, seed=0)
    # mixed: a fixed-size input rides along whole with each mini-batch of the N-sized ones
    g2 = make_spec({"epochs": 1}, inputs={"image": ["N", 1, 4, 4], "label": {"shape": ["N"], "dtype": "int64"},
                                          "table": [3, 2]})
    ds2 = D.as_dataset(g2, {**blobs(10), "table": np.ones((3, 2), np.float32)})
    assert ds2.static == {"table"} and len(ds2) == 10
    for b in ds2.batches(4, np.random.default_rng(0)):
        assert b["table"].shape == (3, 2) and len(b["label"]) <= 4
    assert len(ds2.subset(np.arange(5)).arrays["table"]) == 3


def test_load_splits_files_and_fractions(tmp_path):
    from compiler.spec import Data
    g = make_spec()
    _save(tmp_path / "train.npz", **blobs(100, 1))
    _save(tmp_path / "val.npz", **blobs(30, 2))
    s = D.load_splits(g, Data(train="train.npz", val="val.npz", test=0.2), tmp_path, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (80, 30, 20)
    again = D.load_splits(g, Data(train="train.npz", val=0.25, test=0.2), tmp_path, seed=0)
    assert (len(again.train), len(again.val)) == (60, 20)
    assert np.array_equal(again.test.arrays["image"], s.test.arrays["image"])   # the same test samples
    only = D.load_splits(g, Data(train="train.npz", val=0.25, test=0.2), tmp_path, seed=0, want=("test",))
    assert only.val is None and np.array_equal(only.test.arrays["label"], s.test.arrays["label"])
    with pytest.raises(UserError, match="overlap"):
        D.load_splits(g, Data(train="train.npz", val="builtin:digits"), tmp_path)


def test_curves_skipped_with_a_note_without_matplotlib(tmp_path, monkeypatch):
    import sys
    from runtime.train import plot_curves, write_history
    hist = [{"epoch": 1, "train.loss": 1.0, "val.loss": 1.2, "lr": 0.1}, {"epoch": 2, "train.loss": 0.5, "lr": 0.1}]
    write_history(tmp_path / "history.csv", hist)
    assert (tmp_path / "history.csv").read_text().splitlines() == ["epoch,train.loss,val.loss,lr", "1,1,1.2,0.1",
                                                                   "2,0.5,,0.1"]
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    notes = []
    assert plot_curves(tmp_path / "curves.png", hist, notes.append) is False
    assert "matplotlib" in notes[0] and not (tmp_path / "curves.png").exists()


def test_a_second_backward_through_a_released_tape_is_refused():
    """Two losses of one forward pass share layers: the first backward() releases the shared tape, so a
    second one would silently lose the shared gradient. It raises instead (as PyTorch does), and the sum
    of the losses gives the full gradient."""
    g = compiler.compile_text(yaml.safe_dump({
        "name": "two_heads", "inputs": {"x": ["N", 3], "y": ["N", 2]},
        "layers": [{"op": "linear", "name": "shared", "in": "x", "out_features": 4},
                   {"op": "linear", "name": "a", "in": "shared", "out_features": 2},
                   {"op": "linear", "name": "b", "in": "shared", "out_features": 2},
                   {"op": "mse_loss", "name": "la", "in": ["a", "y"]},
                   {"op": "mse_loss", "name": "lb", "in": ["b", "y"]}]}, sort_keys=False))
    m = Model(g, seed=0)
    feed = {"x": np.ones((2, 3), np.float32), "y": np.zeros((2, 2), np.float32)}
    out = m.forward(outputs=["la", "lb"], **feed)
    out["la"].backward()
    with pytest.raises(RuntimeError, match="already released"):
        out["lb"].backward()
    m.zero_grad()
    out = m.forward(outputs=["la", "lb"], **feed)
    weighted_sum(out, {"la": 1.0, "lb": 1.0}).backward()
    total = m.grads()["shared.weight"].copy()
    parts = []
    for k in ("la", "lb"):
        m.zero_grad()
        m.forward(outputs=[k], **feed)[k].backward()
        parts.append(m.grads()["shared.weight"].copy())
    np.testing.assert_allclose(total, parts[0] + parts[1], rtol=1e-6)


BLOCK_SPEC = """
name: blocky
inputs:
  image: [N, 1, 4, 4]
  label: {shape: [N], dtype: int64}
blocks:
  head:
    params: {classes: int}
    layers:
      - {op: linear, name: fc, out_features: "${classes}"}
      - {op: softmax, name: probs, dim: 1, in: fc}
    outputs: {logits: fc, probs: probs}
layers:
  - flatten
  - {use: head, name: classifier, classes: 3}
  - {op: cross_entropy, name: loss, in: ["classifier:logits", label]}
outputs: [loss]
train: {objective: loss, predict: classifier, target: label, epochs: 1, batch_size: 32}
"""


def test_block_instances_are_names_at_run_time():
    """A block instance means its first output (as in the spec language) for train.predict, Model outputs
    and `specc compile --output` alike (vgg16/vit's `predict: classifier`/`heads` used to fail)."""
    g = compiler.compile_text(BLOCK_SPEC)
    m = Model(g)
    x = blobs(8)["image"]
    out = m(outputs=["classifier", "classifier:probs"], image=x)
    assert out["classifier"].shape == (8, 3)
    np.testing.assert_allclose(out["classifier:probs"].sum(1), 1, rtol=1e-5)
    e = np.exp(out["classifier"] - out["classifier"].max(1, keepdims=True))
    np.testing.assert_allclose(out["classifier:probs"], e / e.sum(1, keepdims=True), rtol=1e-5)
    h = fit(m, blobs(), log=quiet, progress=False)
    assert "train.accuracy" in h[0]
    with pytest.raises(UserError, match="no output port 'nope'"):
        m(outputs=["classifier:nope"], image=x)
    with pytest.raises(UserError, match="unknown output 'clasifier'") as e:
        m(outputs=["clasifier"], image=x)
    assert "classifier" in (e.value.hint or "")
    from compiler.onnx.export import ExportError, select_outputs
    assert select_outputs(g, ["classifier"]) == {"classifier": g.ref_of("classifier:logits")}
    with pytest.raises(ExportError) as e:
        select_outputs(g, ["nothing"])
    assert e.value.code == 2
    for spec, predict in (("specs/vgg16.yaml", "classifier"), ("specs/vit.yaml", "heads"),
                          ("specs/vae.yaml", "enc")):
        big = compiler.compile_file(spec)
        if predict != "enc":
            assert big.train.predict == predict
        ref = big.ref_of(predict)
        assert big.has_node(ref.node) and big.type_of(ref).rank == 2


def test_compile_a_block_instance_output(tmp_path):
    """docs/onnx.md's example: `specc compile specs/vae.yaml --output enc` exported the encoder's mean."""
    pytest.importorskip("onnx")
    from cli.main import main
    assert main(["compile", "specs/vae.yaml", "--output", "enc", "-o", str(tmp_path / "enc.onnx")]) == 0
    import onnx
    proto = onnx.load(str(tmp_path / "enc.onnx"))
    assert [o.name for o in proto.graph.output] == ["enc"]
    assert main(["compile", "specs/vae.yaml", "--output", "enc:nope", "-o", str(tmp_path / "x.onnx")]) == 2


TRAIN_EXPR_SPEC = """
name: t
params: {width: 8, base_lr: 0.01}
inputs:
  x: [N, 4]
  y: {shape: [N], dtype: int64}
layers:
  - {op: linear, name: fc, in: x, out_features: "${width}"}
  - {op: cross_entropy, name: loss, in: [fc, y]}
train:
  objective: loss
  optimizer: adam
  batch_size: "${width * 2}"
  epochs: "${int(1 / base_lr) // 50}"
  data: {train: "data/w${width}.npz"}
"""


def test_train_section_expressions_and_set_overrides():
    g = compiler.compile_text(TRAIN_EXPR_SPEC)
    assert (g.train.batch_size, g.train.epochs, g.train.data.train) == (16, 2, "data/w8.npz")
    g = compiler.compile_text(TRAIN_EXPR_SPEC, params={"width": 16, "train.optimizer.lr": 3e-4,
                                                       "train.early_stopping.patience": 2,
                                                       "train.epochs": "${width + 1}"})
    assert (g.train.batch_size, g.train.epochs, g.train.optimizer.type, g.train.optimizer.lr) == (32, 17, "adam", 3e-4)
    assert g.train.early_stopping.patience == 2
    from compiler.overrides import parse_set
    assert parse_set(["train.optimizer.lr=3e-4"]) == {"train.optimizer.lr": 3e-4}


@pytest.mark.parametrize("key,value,message", [
    ("train.optimizer.lrr", 1, r"--set train.optimizer.lrr=1: unknown key 'lrr' in train.optimizer"),
    ("train.optimizer.lr", "abc", r"--set train.optimizer.lr=abc: Input should be a valid number"),
    ("train.batch_size", 0, r"--set train.batch_size=0: .*greater than or equal to 1"),
    ("train.epochs.x", 1, r"train.epochs is a value"),
    ("train.batch_size", "${nope}", r"train.batch_size: unknown name 'nope'"),
    ("train.batch_size", None, r"--set train.batch_size=null: "),        # as typed, not Python's None
    ("train.log.to", ["csv", "foo"], r'--set train.log.to=\["csv", "foo"\]: train.log.to.1'),
])
def test_bad_train_overrides_name_the_key(key, value, message):
    with pytest.raises(SpecError, match=message):
        compiler.compile_text(TRAIN_EXPR_SPEC, params={key: value})


def test_train_override_without_a_train_section():
    text = TRAIN_EXPR_SPEC.split("train:")[0]
    with pytest.raises(SpecError, match="no train section"):
        compiler.compile_text(text, params={"train.epochs": 3})


def _best_epoch(path):
    return split(read_npz(path))[1]["epoch"]


def test_checkpoint_monitor_chooses_best_npz(tmp_path):
    # a GAN (phases): best.npz is the last epoch unless train.checkpoint says otherwise
    g = compiler.compile_text(yaml.safe_dump(GAN, sort_keys=False))
    h = fit(Model(g), gan_data(), log=quiet, progress=False, out_dir=tmp_path / "gan")
    assert _best_epoch(tmp_path / "gan" / "best.npz") == len(h)
    assert split(read_npz(tmp_path / "gan" / "best.npz"))[1]["monitor"] == "last"
    cfg = g.train.model_copy(update={"checkpoint": compiler.spec.CheckpointPolicy(monitor="train.g_loss",
                                                                                   mode="max")})
    h = fit(Model(g), gan_data(), config=cfg, log=quiet, progress=False, out_dir=tmp_path / "gan2")
    g_losses = [r["train.g_loss"] for r in h]
    assert _best_epoch(tmp_path / "gan2" / "best.npz") == 1 + int(np.argmax(g_losses))
    # a classifier: early stopping stops on val.loss while best.npz follows val.accuracy
    g = make_spec({"epochs": 6, "early_stopping": {"monitor": "val.loss", "patience": 20, "restore_best": True},
                   "checkpoint": {"monitor": "val.accuracy"}})
    m = Model(g, seed=3)
    h = fit(m, blobs(), val_data=0.25, log=quiet, progress=False, out_dir=tmp_path / "clf")
    accs = [r["val.accuracy"] for r in h]
    best = 1 + int(np.argmax(accs))                          # mode auto: accuracy is maximised, first best kept
    assert _best_epoch(tmp_path / "clf" / "best.npz") == best
    np.testing.assert_array_equal(m.state_dict()["fc1.weight"],            # restore_best follows it too
                                  split(read_npz(tmp_path / "clf" / "best.npz"))[0]["fc1.weight"])
    with pytest.raises(UserError, match="train.checkpoint monitors 'val.acuracy'"):
        fit(Model(make_spec({"checkpoint": {"monitor": "val.acuracy"}})), blobs(), val_data=0.25, log=quiet,
            progress=False)


def test_sum_losses_are_reported_per_sample():
    """reduction: sum grows with the batch; train (batch 16) and val (batch ≥ 256) report it per sample."""
    layers = BASE["layers"][:-1] + [{"op": "cross_entropy", "name": "loss", "in": ["fc2", "label"],
                                     "reduction": "sum"}]
    g = make_spec({"epochs": 1, "optimizer": {"type": "sgd", "lr": 0.0}}, layers=layers)
    data = blobs(200)
    m = Model(g)
    h = fit(m, data, val_data=data, log=quiet, progress=False)
    res = evaluate(m, data, config=g.train)
    m.eval()
    logits = m(outputs=["fc2"], image=data["image"])["fc2"].astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    per_sample = -logp[np.arange(200), data["label"]].mean()
    assert res["loss"] == pytest.approx(per_sample, rel=1e-5)
    assert h[0]["val.loss"] == pytest.approx(per_sample, rel=1e-5)
    assert h[0]["train.loss"] == pytest.approx(per_sample, rel=0.2)      # dropout in training: near, not equal


def topic_corpus(n_sentences, topics=10, per_topic=50, function=20, seed=0):
    """Token ids of a toy corpus: 8-word sentences, each about one topic (its words Zipf-distributed), 30%
    function words shared by all topics. Words of a topic share contexts, so embeddings should cluster."""
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, per_topic + 1)
    zipf /= zipf.sum()
    topic = np.repeat(rng.integers(topics, size=n_sentences), 8)
    words = function + topic * per_topic + rng.choice(per_topic, size=topic.size, p=zipf)
    tokens = np.where(rng.random(topic.size) < 0.3, rng.integers(function, size=topic.size), words)
    return tokens.astype(np.int64), function + topics * per_topic


def test_word2vec_defaults_train_visibly():
    """The example's defaults (embedding init N(0, 0.1²), Adam lr 1e-2, 5 epochs) move the word vectors away
    from their initial values and group a topic's words; with PyTorch's N(0, 1) init and lr 1e-3 a short
    run left them at cosine 0.98-0.99 to where they started."""
    tokens, vocab = topic_corpus(500)
    idx = np.arange(2, len(tokens) - 2)
    data = {"context": np.stack([tokens[idx + o] for o in (-2, -1, 1, 2)], 1), "center": tokens[idx]}
    g = compiler.compile_file("specs/word2vec_cbow.yaml", params={"vocab": vocab, "dim": 32})
    m = Model(g, seed=g.train.seed)
    w0 = m.state_dict()["embeddings.weight"].copy()
    fit(m, data, log=quiet, progress=False)
    w1 = m.state_dict()["embeddings.weight"]
    cos = (w0 * w1).sum(1) / np.linalg.norm(w0, axis=1) / np.linalg.norm(w1, axis=1)
    assert cos.mean() < 0.8
    frequent = np.arange(20, 520, 50)[:, None] + np.arange(3)                   # each topic's 3 commonest words
    w = w1[20:] / np.linalg.norm(w1[20:], axis=1, keepdims=True)
    sims = w @ w.T
    np.fill_diagonal(sims, -2)
    nearest = np.argmax(sims[frequent.ravel() - 20], 1)
    assert np.mean(nearest // 50 == (frequent.ravel() - 20) // 50) >= 0.8      # chance: 0.1


def test_json_schema_accepts_train_expressions_and_checkpoint():
    jsonschema = pytest.importorskip("jsonschema")
    from compiler.schema import json_schema
    validator = jsonschema.Draft202012Validator(json_schema())
    doc = yaml.safe_load(TRAIN_EXPR_SPEC)
    doc["train"].update(optimizer={"type": "adam", "lr": "${base_lr}"}, checkpoint={"monitor": "val.loss"})
    assert not list(validator.iter_errors(doc))
    doc["train"]["checkpoint"] = {"monitr": "val.loss"}
    assert list(validator.iter_errors(doc))
