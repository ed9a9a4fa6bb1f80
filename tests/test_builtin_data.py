"""Built-in data sets (runtime/data/builtin*.py): declared arrays and sizes, determinism, value properties,
option errors, the mapping onto a spec's inputs (digits resized to the spec), `specc data list`."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import yaml

import compiler
from cli.main import main
from compiler.errors import UserError
from runtime import data as D
from runtime.data import builtin as B
from runtime.data import builtin_seq as S
from runtime.data import builtin_text as TXT

ROOT = Path(__file__).resolve().parent.parent
FAST = [n for n in B.BUILTINS if n not in ("digits", "digit_sum", "digit_max", "karate")]


def make(name, part="train", **opts):
    b = B.registry()[name]
    return b.make({**b.defaults(), **opts}, part)


def compile_inputs(inputs, layers=None, train=None):
    spec = {"specc": 1, "name": "t", "inputs": inputs, "layers": layers or [{"op": "identity", "name": "out"}],
            "outputs": ["out"]}
    if train:
        spec["train"] = train
    return compiler.compile_text(yaml.safe_dump(spec, sort_keys=False))


# -- every set: declared arrays, sizes, determinism ---------------------------------------------------
@pytest.mark.parametrize("name", B.BUILTINS)
def test_sets_give_their_declared_arrays_and_sizes(name):
    pytest.importorskip("sklearn")
    b = B.registry()[name]
    opts = b.defaults()
    sizes = b.sizes(opts)
    declared = {a.name: a for a in b.arrays(opts)}
    for part in ("train", "test", "all"):
        arrays = b.make(opts, part)
        assert set(arrays) == set(declared), (name, part)
        n = sizes["train"] + sizes["test"] if part == "all" else sizes[part]
        for k, v in arrays.items():
            want = declared[k].shape if b.static else (n, *declared[k].shape)
            assert v.shape == want and v.dtype == np.dtype(declared[k].dtype), (name, part, k, v.shape, v.dtype)
            if v.dtype.kind == "f":
                assert np.isfinite(v).all()
    again = b.make(opts, "train")
    assert all(np.array_equal(v, again[k]) for k, v in b.make(opts, "train").items())     # deterministic


@pytest.mark.parametrize("name", FAST)
def test_generated_sets_follow_their_seed_and_keep_train_when_n_test_changes(name):
    b = B.registry()[name]
    if "seed" not in b.defaults():
        return
    a, other = make(name), make(name, seed=1)
    assert any(not np.array_equal(v, other[k]) for k, v in a.items())
    bigger = make(name, n_test=b.defaults()["n_test"] + 7)
    assert all(np.array_equal(v, bigger[k]) for k, v in a.items())
    test = make(name, "test")
    first = next(iter(a))
    assert not np.array_equal(a[first][: len(test[first])], test[first])           # the parts differ


# -- value properties ----------------------------------------------------------------------------------
def _symbols(ids):
    return [int(i) - S.SPECIALS for i in ids if i >= S.SPECIALS]


def test_seq2seq_targets_with_bos_eos_and_padding():
    for task, fn in (("copy", list), ("reverse", lambda v: v[::-1]), ("sort", sorted)):
        d = make(task, length=6, min_length=2, vocab=9, n=300)
        assert d["src"].max() < 9 and set(np.unique(d["src"])) <= {0, *range(3, 9)}
        assert (d["tgt_in"][:, 0] == S.BOS).all()
        for src, mask, tin, tout in zip(d["src"], d["padding_mask"], d["tgt_in"], d["tgt_out"]):
            m = int((~mask).sum())
            assert 2 <= m <= 6 and (src[m:] == S.PAD).all() and mask[m:].all()
            y = [v + S.SPECIALS for v in fn(_symbols(src))]
            assert list(tout[:m]) == y and tout[m] == S.EOS and (tout[m + 1:] == S.PAD).all()
            assert list(tin[1:m + 1]) == y and (tin[m + 1:] == S.PAD).all()
    s = make("sort")
    assert (np.diff(s["tgt_out"][:, :-1], axis=1) >= 0).all() and (s["tgt_out"][:, -1] == S.EOS).all()
    lengths = (~make("copy", min_length=3, n=2000)["padding_mask"]).sum(axis=1)
    assert lengths.min() == 3 and lengths.max() == 10


def test_sequence_classification_labels():
    v = make("sum", vocab=7, n=500)
    assert np.array_equal(v["label"], (v["tokens"] - 3).sum(axis=1) % 4) and v["label"].max() == 3
    p = make("parity", length=12)
    assert set(np.unique(p["tokens"])) == {3, 4}
    assert np.array_equal(p["label"], (p["tokens"] == 4).sum(axis=1) % 2)
    m = make("memory", vocab=8, length=30)
    assert np.array_equal(m["label"], m["tokens"][:, 0] - 3) and m["tokens"].shape == (2000, 30)
    assert np.bincount(m["label"]).min() > 300                                   # 5 classes, balanced-ish


def test_toy_sets():
    for name in ("moons", "circles", "blobs", "spirals"):
        d = make(name, n=1000)
        k = int(d["label"].max()) + 1
        counts = np.bincount(d["label"])
        assert len(counts) == k and counts.max() - counts.min() <= 1                # balanced
        if "target" in d:
            assert np.array_equal(d["target"][:, 0], d["label"])
    b = make("blobs", classes=2, n=5000)
    assert ((b["x"][:, 0] < 0) == (b["label"] == 1)).all()                      # linearly separable
    c = make("circles", noise=0.0)
    r = np.hypot(*c["x"].T)
    assert np.allclose(r, np.where(c["label"] == 0, 1.0, 0.5), atol=1e-6)
    assert make("spirals", classes=4)["label"].max() == 3 and "target" not in make("spirals", classes=4)


def test_digit_sets_are_sums_and_maxima_of_their_images():
    pytest.importorskip("sklearn")
    digits = D.digits("test")
    d = make("digit_sum", "test", n_test=50, set_size=5)
    sums = d["digits"].sum(axis=1)
    assert np.array_equal(d["target"][:, 0], sums) and np.array_equal(d["label"], sums)
    flat = digits["image"].reshape(len(digits["label"]), 64)
    for s, ds in zip(d["set"][:10], d["digits"][:10]):                   # each element is a test image of its digit
        for img, digit in zip(s, ds):
            hits = np.flatnonzero((flat == img).all(axis=1))
            assert len(hits) and (digits["label"][hits] == digit).all()
    m = make("digit_max", n=200)
    assert np.array_equal(m["target"][:, 0], m["digits"].max(axis=1))
    # permutation invariance: permuting a set's images leaves the digits (so the target) as they were
    perm = np.random.default_rng(0).permutation(4)
    again = {tuple(sorted(x)) for x in m["digits"][:, perm]}
    assert again == {tuple(sorted(x)) for x in m["digits"]}
    small = make("digit_sum", size=4, n=5)
    assert small["set"].shape == (5, 4, 16)


def test_karate_club():
    nx = pytest.importorskip("networkx")
    d = make("karate")
    g = nx.karate_club_graph()
    assert d["adj"].shape == (34, 34) and d["adj"].sum() == 2 * 78 == 2 * g.number_of_edges()
    assert np.array_equal(d["adj"], d["adj"].T) and not np.diag(d["adj"]).any()
    assert d["label"].tolist() == [int(g.nodes[i]["club"] != "Mr. Hi") for i in range(34)]
    assert np.flatnonzero(d["train_mask"]).tolist() == [0, 33] and d["label"][[0, 33]].tolist() == [0, 1]
    assert np.array_equal(d["test_mask"], 1 - d["train_mask"])
    assert np.array_equal(d["x"], np.eye(34))
    deg = make("karate", features="degree")["x"]
    assert deg.shape == (34, 1) and deg[0, 0] == g.degree(0) == 16


def test_text_pairs_and_vocabulary():
    vocab = TXT.vocabulary()
    assert vocab[:2] == ["<pad>", "<unk>"] and len(vocab) == len(set(vocab)) > 100
    ids = TXT.stream("train")
    assert ids.min() >= 2 and len(ids) + len(TXT.stream("test")) == len(TXT.stream("all"))
    sg = make("skipgram", window=3)
    pairs = set(zip(sg["center"].tolist(), sg["context"].tolist()))
    want = {(int(ids[i]), int(ids[j])) for i in range(200) for j in range(max(0, i - 3), i + 4) if j != i}
    assert want <= pairs
    cb = make("cbow", window=2)
    assert np.array_equal(cb["center"][:50], ids[2:52])
    assert np.array_equal(cb["context"][0], ids[[0, 1, 3, 4]])
    assert "king" in vocab and "queen" in vocab


def test_word_pairs_follow_a_smaller_embedding_table():
    """A word2vec spec whose table has fewer rows than the corpus vocabulary keeps its most frequent words;
    the rest become <unk> (id 1), so every id fits the table."""
    g = compiler.compile_file(str(ROOT / "specs" / "word2vec_skipgram.yaml"), params={"vocab": 12})
    arrays, _ = B.read("builtin:skipgram/test", "test", g, list(g.inputs))
    full = make("skipgram", part="test")
    assert arrays["center"].max() == 11 and arrays["context"].max() == 11
    keep = full["center"] < 12
    assert np.array_equal(arrays["center"][keep], full["center"][keep])
    assert (arrays["center"][~keep] == 1).all() and (~keep).any()
    explicit = make("skipgram", part="test", vocab=50)
    assert explicit["center"].max() == 49


def test_shipped_corpus_is_the_generators_output():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "tools" / "make_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = TXT.CORPUS.read_text(encoding="utf-8")
    assert text == mod.corpus() and len(text.encode()) < 200_000


def test_resize_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    from runtime.data.builtin_images import resize
    x = np.random.default_rng(0).random((3, 2, 8, 8)).astype(np.float32)
    for size in (4, 28, 32):
        want = torch.nn.functional.interpolate(torch.tensor(x), size=(size, size), mode="bilinear",
                                               align_corners=False).numpy()
        np.testing.assert_allclose(resize(x, size), want, atol=1e-5)


# -- sources: options, parts, errors -------------------------------------------------------------------
@pytest.mark.parametrize("source,message", [
    ("builtin:moon", "did you mean 'moons'"),
    ("builtin:moons/tests", "parts train, test and all"),
    ("builtin:moons?nois=0.2", "did you mean 'noise'"),
    ("builtin:moons?noise=loud", "expected a number"),
    ("builtin:moons?n=1.5", "expected an integer"),
    ("builtin:moons?n=0", "out of range: 1..10,000,000"),
    ("builtin:moons?n=5,n=6", "given twice"),
    ("builtin:moons?n", "expected NAME=VALUE"),
    ("builtin:moons?n=5&noise=0.1", "not &"),
    ("builtin:karate?features=pagerank", "identity, degree"),
    ("builtin:digits?channels=2", "expected one of 1, 3"),
    ("builtin:memory?n=5000000,length=200", "would take 8.4 GB of arrays"),
    ("builtin:parity?vocab=7", "its options: length"),
    ("builtin:copy?length=4,min_length=6", "longer than length=4"),
])
def test_option_errors_are_clear(source, message):
    with pytest.raises(UserError) as e:
        D.read(source)
    assert message in e.value.render(), e.value.render()


def test_parts_and_roles():
    g = compile_inputs({"x": ["N", 2], "label": {"shape": ["N"], "dtype": "int64"}})
    tr = D.load(g, "builtin:moons?n=100", role="train")
    te = D.load(g, "builtin:moons?n_test=30", role="test")
    al = D.load(g, "builtin:moons/all?n=100,n_test=30")
    assert (len(tr), len(te), len(al)) == (100, 30, 130)
    assert te.source == "builtin:moons/test?n_test=30" and tr.source == "builtin:moons/train?n=100"
    te2 = D.load(g, "builtin:moons/test?n=100,n_test=30")
    np.testing.assert_array_equal(al.arrays["x"], np.concatenate([tr.arrays["x"], te2.arrays["x"]]))
    with pytest.raises(UserError, match="overlap"):
        D.load(g, "builtin:moons", role="val")


def test_arrays_are_mapped_onto_other_input_names_by_dtype_and_shape():
    g = compile_inputs({"points": ["N", 2], "y": {"shape": ["N"], "dtype": "int64"}})
    ds = D.load(g, "builtin:spirals")
    assert set(ds.arrays) == {"points", "y"} and ds.arrays["points"].shape == (800, 2)
    g = compile_inputs({"pixels": ["N", 64]})
    assert D.load(g, "builtin:digits").arrays["pixels"].shape == (1438, 64)


def test_digits_follow_the_spec_image_size_with_one_note(capsys):
    pytest.importorskip("sklearn")
    g = compiler.compile_file(ROOT / "specs" / "lenet5.yaml")
    B._noted.clear()
    tr = D.load(g, "builtin:digits", ["image", "label"])
    te = D.load(g, "builtin:digits", ["image", "label"], role="test")
    err = capsys.readouterr().err
    assert err.count("note: builtin:digits") == 1 and "1×28×28" in err and "builtin:digits?size=28" in err
    assert tr.arrays["image"].shape == (1438, 1, 28, 28) and te.source == "builtin:digits/test?size=28"
    assert 0 <= tr.arrays["image"].min() and tr.arrays["image"].max() <= 1
    g = compile_inputs({"image": ["N", 3, 32, 32]})
    img = D.load(g, "builtin:digits").arrays["image"]
    assert img.shape == (1438, 3, 32, 32) and np.array_equal(img[:, 0], img[:, 2])
    signed = D.load(g, "builtin:digits?signed=true").arrays["image"]
    assert signed.min() == -1 and signed.max() == 1 and np.allclose(signed, img * 2 - 1)
    with pytest.raises(UserError, match="1×8×8 images"):
        D.load(compiler.compile_file(ROOT / "specs" / "lenet5.yaml"), "builtin:digits?size=8")


def test_what_fits_which_spec():
    fits = {}
    for name in ("lenet5", "seq2seq", "word2vec_cbow", "word2vec_skipgram", "deep_sets", "perceptron",
                 "transformer_classifier", "gcn"):
        g = compiler.compile_file(ROOT / "specs" / f"{name}.yaml")
        fits[name] = set(D.suggest(g, list(g.inputs)))
    assert "digits" in fits["lenet5"] and {"copy", "reverse", "sort"} <= fits["seq2seq"]
    assert "cbow" in fits["word2vec_cbow"] and "skipgram" not in fits["word2vec_cbow"]
    assert "skipgram" in fits["word2vec_skipgram"] and {"digit_sum", "digit_max"} <= fits["deep_sets"]
    assert {"moons", "circles"} <= fits["perceptron"] and "blobs" not in fits["perceptron"]  # 3 blobs by default
    assert "sum" in fits["transformer_classifier"]
    assert fits["gcn"] == set()                                                  # Cora-sized: 2708 nodes
    g = compiler.compile_file(ROOT / "specs" / "gcn.yaml", params={"nodes": 34, "features": 34})
    assert "karate" in D.suggest(g, list(g.inputs))


def test_example_specs_train_data_fits():
    """Every example spec that names a built-in set in train.data gets arrays for every input it reads."""
    pytest.importorskip("sklearn")
    from runtime.model import Model
    from runtime.train import make_plan
    named = 0
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        g = compiler.compile_file(path)
        src = g.train.data.train if g.train else None
        if not (src or "").startswith("builtin:"):
            continue
        named += 1
        plan = make_plan(Model(g), g.train)
        s = D.load_splits(g, g.train.data, path.parent, plan.needed, seed=0)
        assert len(s.train) and (s.test is None or len(s.test)), path.name
        assert s.test is not None or path.name == "dcgan.yaml", path.name        # a GAN has nothing to test
    assert named >= 16


# -- specc data list -----------------------------------------------------------------------------------
def test_data_list_command(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in B.BUILTINS:
        assert f"builtin:{name} — " in out
    assert "image  float32  [N, 1, 8, 8]" in out and "train 1,438 · test 359" in out
    assert "adj         float32  [34, 34]" in out and "tgt_out       int64    [N, 11]" in out
    assert "size=8  (int, 8..64)" in out and "follows the spec's input" in out
    assert main(["data", "list", "builtin:karate", "cbow"]) == 0
    out = capsys.readouterr().out
    assert "karate" in out and "cbow" in out and "moons" not in out
    assert main(["data", "list", "moon"]) == 2
    assert "did you mean 'moons'" in capsys.readouterr().err


def test_sets_are_listed_in_order():
    assert list(B.registry()) == list(B.BUILTINS)
    assert len(set(itertools.chain(B.BUILTINS))) == len(B.BUILTINS)


def test_no_data_message_names_sets_that_fit(tmp_path, capsys):
    spec = tmp_path / "p.yaml"
    spec.write_text("specc: 1\nname: p\ninputs:\n  x: [N, 2]\n  y: {shape: [N], dtype: int64}\nlayers:\n"
                    "  - {op: linear, name: fc, out_features: 2}\n  - {op: cross_entropy, name: loss, in: [fc, y]}\n"
                    "train: {objective: loss}\n")
    assert main(["train", str(spec), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "or builtin:moons, builtin:circles, builtin:blobs (and 1 more: specc data list)" in err
