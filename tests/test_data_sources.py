"""Data sources (runtime/data): npy folders, CSV/TSV tables, image folders, text, graphs — read, mapped
onto a spec's inputs, derived data saved with the checkpoint and reused by eval/run."""
from __future__ import annotations

import csv
import textwrap

import numpy as np
import pytest

import compiler
import runtime
from cli.main import main
from compiler.errors import SpecError, UserError
from runtime import data as D
from runtime.checkpoint import read_meta
from runtime.data.columns import LazyColumn, MappedColumn


def spec(tmp_path, text: str, name: str = "s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


MLP = """\
    specc: 1
    name: mlp
    inputs: {x: [N, 6], label: {shape: [N], dtype: int64}}
    layers:
      - {op: linear, name: fc, in: x, out_features: 3}
      - {op: cross_entropy, name: loss, in: [fc, label]}
    outputs: [fc]
    train: {objective: loss, epochs: 2, batch_size: 16, optimizer: {type: sgd, lr: 0.1}, data: {train: DATA}}
"""


# -- arrays -----------------------------------------------------------------------------------------
def test_npy_folder_is_memory_mapped_and_trains_as_the_same_npz(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 6)).astype(np.float32), rng.integers(0, 3, 100)
    (tmp_path / "arr").mkdir()
    np.save(tmp_path / "arr" / "x.npy", x)
    np.save(tmp_path / "arr" / "label.npy", y)
    np.savez(tmp_path / "d.npz", x=x, label=y)
    g = compiler.compile_file(spec(tmp_path, MLP.replace("DATA", "arr")))
    splits = D.load_splits(g, g.train.data.model_copy(update={"val": 0.2}), tmp_path, seed=0)
    assert isinstance(splits.train.columns["x"], MappedColumn)          # subsets stay maps
    assert len(splits.train) == 80 and len(splits.val) == 20
    assert D.as_dataset(g, splits.train) is splits.train               # checked once, not re-read by fit
    np.testing.assert_array_equal(splits.val.column("x"), x[np.sort(D.dataset.held_out(100, 0.2, 0)[1])])
    states = []
    for data in (str(tmp_path / "arr"), str(tmp_path / "d.npz")):
        m = runtime.Model(g, seed=0)
        runtime.fit(m, data, log=None, progress=False)
        states.append(m.state_dict())
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k])


def test_npy_folder_problems(tmp_path):
    g = compiler.compile_file(spec(tmp_path, MLP.replace("DATA", "arr")))
    (tmp_path / "arr").mkdir()
    np.save(tmp_path / "arr" / "x.npy", np.zeros((4, 6), np.float32))
    np.save(tmp_path / "arr" / "label.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="pickled"):
        D.load(g, str(tmp_path / "arr"))
    with pytest.raises(UserError, match="single .npy array"):
        D.load(g, str(tmp_path / "arr" / "x.npy"))


# -- tables -----------------------------------------------------------------------------------------
HOUSES = """\
    specc: 1
    name: houses
    inputs: {features: [N, 5], price: [N, 1]}
    layers:
      - {op: linear, name: out, in: features, out_features: 1}
      - {op: mse_loss, name: loss, in: [out, price]}
    outputs: [out]
    train:
      objective: loss
      epochs: 1
      data: {train: {csv: houses.csv, features: [age, rooms, city], categorical: [city], label: price}}
"""


def write_csv(path, rows, header=("age", "rooms", "city", "price")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_csv_columns_become_features_categories_and_label(tmp_path):
    write_csv(tmp_path / "houses.csv", [(30, 2, "Paris", 310.5), (12, 4, "Lyon", 280), (50, 1, "Nice", 150),
                                        (7, 3, "Lyon", 300)])
    p = spec(tmp_path, HOUSES)
    g = compiler.compile_file(p)
    ds = D.load_splits(g, g.train.data, tmp_path).train
    # categories sorted: Lyon 0, Nice 1, Paris 2, one-hot in place of the city column
    np.testing.assert_array_equal(ds.column("features"), np.array(
        [[30, 2, 0, 0, 1], [12, 4, 1, 0, 0], [50, 1, 0, 1, 0], [7, 3, 1, 0, 0]], np.float32))
    np.testing.assert_allclose(ds.column("price")[:, 0], [310.5, 280, 150, 300])
    assert ds.meta["derived"]["categories"] == {"city": ["Lyon", "Nice", "Paris"]}
    out = tmp_path / "run"
    assert main(["train", str(p), "--out", str(out)]) == 0
    assert read_meta(out / "best.npz")["data"]["categories"] == {"city": ["Lyon", "Nice", "Paris"]}
    import json
    assert json.loads((out / "data.json").read_text())["categories"] == {"city": ["Lyon", "Nice", "Paris"]}
    # eval on a file with only Paris (alone it would be category 0): the training mapping is reused
    write_csv(tmp_path / "paris.csv", [(30, 2, "Paris", 310.5)])
    m = runtime.Model(g, seed=0)
    meta = runtime.checkpoint.load(m, out / "best.npz")
    ev = D.load(g, str(tmp_path / "paris.csv"), role="test", derived=meta["data"], like=g.train.data.train)
    np.testing.assert_array_equal(ev.column("features"), [[30, 2, 0, 0, 1]])
    write_csv(tmp_path / "rome.csv", [(30, 2, "Rome", 1)])
    with pytest.raises(UserError, match=r"rome.csv:2: column 'city': 'Rome' is not a category seen"):
        D.load(g, str(tmp_path / "rome.csv"), role="test", derived=meta["data"], like=g.train.data.train)


def test_csv_bad_cell_names_file_row_and_column(tmp_path, capsys):
    rows = [(30, 2, "Paris", 310.5)] * 5
    rows[3] = ("n/a", 2, "Paris", 310.5)
    write_csv(tmp_path / "houses.csv", rows)
    assert main(["train", str(spec(tmp_path, HOUSES)), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "houses.csv:5: column 'age': 'n/a' is not a number" in err and "Traceback" not in err
    write_csv(tmp_path / "houses.csv", [(30, 2, "Paris", "")])
    with pytest.raises(UserError, match=r"houses.csv:2: column 'price': '' is empty"):
        g = compiler.compile_file(spec(tmp_path, HOUSES))
        D.load_splits(g, g.train.data, tmp_path)
    write_csv(tmp_path / "houses.csv", [(30, 2, "Paris", 1)], header=("age", "rooms", "town", "price"))
    with pytest.raises(UserError, match="no column 'city'") as e:
        D.load_splits(g, g.train.data, tmp_path)
    assert "'town'" not in e.value.message


def test_tsv_string_source_and_label_classes(tmp_path):
    (tmp_path / "iris.tsv").write_text("a\tb\tspecies\n1\t2\tsetosa\n3\t4\tvirginica\n5\t6\tsetosa\n")
    g = compiler.compile_file(spec(tmp_path, MLP.replace("[N, 6]", "[N, 2]").replace("DATA", "{tsv: iris.tsv, label: species}")))
    ds = D.load_splits(g, g.train.data, tmp_path).train
    np.testing.assert_array_equal(ds.column("x"), [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(ds.column("label"), [0, 1, 0])
    assert ds.meta["derived"]["categories"]["species"] == ["setosa", "virginica"]


# -- images -----------------------------------------------------------------------------------------
IMAGES = """\
    specc: 1
    name: pets
    inputs: {image: [N, C, 6, 5], label: {shape: [N], dtype: int64}}
    layers:
      - {op: flatten, name: flat, in: image}
      - {op: linear, name: fc, out_features: 2}
      - {op: cross_entropy, name: loss, in: [fc, label]}
    outputs: [fc]
    train: {objective: loss, epochs: 1, batch_size: 4, data: {train: pets}}
"""


def make_pets(root):
    from PIL import Image
    colours = {"cat": (255, 0, 0), "dog": (0, 0, 255)}
    for cls, rgb in colours.items():
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (10, 7), rgb).save(root / cls / f"{i}.{'png' if i % 2 else 'jpg'}", quality=100)
    return colours


def test_image_folder_decodes_resizes_and_converts_batch_by_batch(tmp_path):
    pytest.importorskip("PIL")
    make_pets(tmp_path / "pets")
    for c in (3, 1):
        g = compiler.compile_file(spec(tmp_path, IMAGES.replace("C", str(c))))
        ds = D.load_splits(g, g.train.data, tmp_path).train
        assert isinstance(ds.columns["image"], LazyColumn) and ds.shape("image") == (6, c, 6, 5)
        x, y = ds.column("image"), ds.column("label")
        np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1])
        assert ds.meta["derived"]["classes"] == ["cat", "dog"]
        if c == 3:      # solid red and blue survive decoding (JPEG within 2/255), channels first
            np.testing.assert_allclose(x[:3].mean(axis=(2, 3)), [[1, 0, 0]] * 3, atol=2 / 255)
            np.testing.assert_allclose(x[3:].mean(axis=(2, 3)), [[0, 0, 1]] * 3, atol=2 / 255)
        else:           # ITU-R 601 luma, as Pillow's "L" conversion: 0.299 R, 0.114 B
            np.testing.assert_allclose(x[:3].mean(axis=(1, 2, 3)), 76 / 255, atol=2 / 255)
            np.testing.assert_allclose(x[3:].mean(axis=(1, 2, 3)), 29 / 255, atol=2 / 255)
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "s.yaml"), "--out", str(out)]) == 0
    assert read_meta(out / "last.npz")["data"]["classes"] == ["cat", "dog"]


def test_image_folder_problems(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    make_pets(tmp_path / "pets")
    (tmp_path / "pets" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    g = compiler.compile_file(spec(tmp_path, IMAGES.replace("C", "3")))
    ds = D.load_splits(g, g.train.data, tmp_path).train
    with pytest.raises(UserError, match=r"image '.*broken.png' cannot be decoded"):
        list(D.prefetch(ds.batches(4)))                     # raised in the main thread, as is
    with pytest.raises(UserError, match="class folder 'dog' is not one of the classes"):
        D.load(g, str(tmp_path / "pets"), derived={"classes": ["cat", "bird"]})
    import sys
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(UserError, match="needs Pillow") as e:
        D.load(g, str(tmp_path / "pets"))
    assert "specc[images]" in e.value.hint


# -- text -------------------------------------------------------------------------------------------
TEXT = """\
    specc: 1
    name: reviews
    inputs:
      tokens: {shape: [N, T], dtype: int64}
      padding_mask: {shape: [N, T], dtype: bool}
      label: {shape: [N], dtype: int64}
    layers:
      - {op: embedding, name: emb, in: tokens, num_embeddings: 40, embedding_dim: 4, padding_idx: 0}
      - {op: multi_head_attention, name: att, in: [emb, emb, emb, padding_mask], num_heads: 1}
      - {op: mean, name: pool, dim: 1}
      - {op: linear, name: fc, out_features: 2}
      - {op: cross_entropy, name: loss, in: [fc, label]}
    outputs: [fc]
    train: {objective: loss, epochs: 1, batch_size: 2, data: {train: {text: r.tsv}, val: 0.25}}
"""


def test_text_vocabulary_from_training_rows_padding_and_mask(tmp_path):
    lines = ["good film\tpos", "bad, bad film\tneg", "good good good fun\tpos", "zebra only here\tneg"]
    (tmp_path / "r.tsv").write_text("text\tlabel\n" + "\n".join(lines) + "\n")
    p = spec(tmp_path, TEXT)
    g = compiler.compile_file(p)
    s = D.load_splits(g, g.train.data, tmp_path)
    val_rows = D.dataset.held_out(4, 0.25, 0)[1]
    assert list(val_rows) == [3]                               # the zebra line is held out...
    vocab = s.train.meta["derived"]["vocab"]
    assert vocab[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and "zebra" not in vocab   # ...so not in the vocab
    assert vocab[4:] == ["good", "bad", "film", ",", "fun"]   # by frequency, ties alphabetical
    batch = next(s.train.batches(2))
    ids = {w: i for i, w in enumerate(vocab)}
    np.testing.assert_array_equal(batch["tokens"], [[ids["good"], ids["film"], 0, 0],
                                                    [ids["bad"], ids[","], ids["bad"], ids["film"]]])
    np.testing.assert_array_equal(batch["padding_mask"], batch["tokens"] == 0)
    assert batch["padding_mask"].dtype == bool
    np.testing.assert_array_equal(s.val.column("tokens"), [[1, 1, 1]])          # <unk> <unk> <unk>
    np.testing.assert_array_equal(s.train.column("label"), [1, 0, 1])          # neg 0, pos 1
    out = tmp_path / "run"
    assert main(["train", str(p), "--out", str(out)]) == 0
    assert read_meta(out / "best.npz")["data"]["vocab"] == vocab


def test_text_fixed_length_cut_and_bos_eos(tmp_path):
    (tmp_path / "c.txt").write_text("a b c d e f\nb a\n")
    text = TEXT.replace("[N, T]", "[N, 4]").replace("{text: r.tsv}, val: 0.25",
                                                    "{text: c.txt, task: lines, bos: true, eos: true}")
    text = text.replace("      label: {shape: [N], dtype: int64}\n", "").replace(
        "      - {op: cross_entropy, name: loss, in: [fc, label]}", "      - {op: sum, name: loss, in: fc}")
    g = compiler.compile_file(spec(tmp_path, text))
    ds = D.load_splits(g, g.train.data, tmp_path).train
    v = {w: i for i, w in enumerate(ds.meta["derived"]["vocab"])}
    np.testing.assert_array_equal(ds.column("tokens"), [[2, v["a"], v["b"], v["c"]], [2, v["b"], v["a"], 3]])


W2V = """\
    specc: 1
    name: w2v
    params: {vocab: 12}
    inputs: {center: {shape: [N], dtype: int64}, context: CONTEXT}
    layers:
      - {op: embedding, name: emb, in: center, num_embeddings: "${vocab}", embedding_dim: 3}
      - {op: linear, name: out, out_features: "${vocab}", bias: false}
      - {op: cross_entropy, name: loss, in: [out, TARGET]}
    train: {objective: loss, epochs: 1, data: {train: SOURCE}}
"""


def test_skipgram_and_cbow_pairs(tmp_path):
    (tmp_path / "c.txt").write_text("a b c d\nb c\n")
    sg = W2V.replace("CONTEXT", "{shape: [N], dtype: int64}").replace("TARGET", "context").replace(
        "SOURCE", "{text: c.txt, window: 2}")
    g = compiler.compile_file(spec(tmp_path, sg))
    ds = D.load_splits(g, g.train.data, tmp_path).train
    words = ds.meta["derived"]["vocab"]
    pairs = sorted((words[c], words[x]) for c, x in zip(ds.column("center"), ds.column("context")))
    want = sorted([("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("c", "d"), ("d", "c"),        # offset 1
                   ("a", "c"), ("c", "a"), ("b", "d"), ("d", "b"),                              # offset 2
                   ("b", "c"), ("c", "b")])                                                     # line 2
    assert pairs == want
    (tmp_path / "c.txt").write_text("a b c d e\nb c\n")
    cb = W2V.replace("CONTEXT", "{shape: [N, 4], dtype: int64}").replace("TARGET", "context").replace(
        "SOURCE", "c.txt").replace("in: center", "in: context").replace(
        "embedding_dim: 3}", "embedding_dim: 3}\n      - {op: mean, name: bag, dim: 1}").replace(
        "[out, context]", "[out, center]")
    g = compiler.compile_file(spec(tmp_path, cb, "cbow.yaml"))
    ds = D.load_splits(g, g.train.data, tmp_path).train
    words = ds.meta["derived"]["vocab"]
    assert [words[i] for i in ds.column("center")] == ["c"]                     # one full window of 2 + 2
    assert [words[i] for i in ds.column("context")[0]] == ["a", "b", "d", "e"]


# -- graphs -----------------------------------------------------------------------------------------
GCN = """\
    specc: 1
    name: gcn
    inputs: {x: [6, 2], adj: [6, 6], label: {shape: [6], dtype: int64}, train_mask: [6]}
    layers:
      - {op: gcn_conv, name: conv, in: [x, adj], out_features: 2}
      - {op: cross_entropy, name: nl, in: [conv, label], reduction: none}
      - {op: mul, name: masked, in: [nl, train_mask]}
      - {op: sum, name: loss}
    outputs: [conv]
    train:
      objective: loss
      epochs: 2
      data: {train: {graph: SOURCE, nodes: nodes.csv, features: [f], categorical: [f], label: club, split: part}}
"""


def test_graph_edge_list_and_node_table(tmp_path, capsys):
    nx = pytest.importorskip("networkx")
    edges = [("n1", "n2"), ("n2", "n3"), ("n4", "n5"), ("n5", "n6"), ("n3", "n1")]
    (tmp_path / "e.csv").write_text("src,dst\n" + "".join(f"{a},{b}\n" for a, b in edges))
    (tmp_path / "nodes.csv").write_text("id,f,club,part\nn1,u,A,train\nn2,v,A,val\nn3,u,,test\n"
                                        "n4,v,B,train\nn5,u,B,test\nn6,v,B,\n")
    g = compiler.compile_file(spec(tmp_path, GCN.replace("SOURCE", "e.csv")))
    s = D.load_splits(g, g.train.data, tmp_path)
    ref = nx.Graph(edges)
    ref.add_nodes_from(["n6"])
    want = nx.to_numpy_array(ref, nodelist=[f"n{i}" for i in range(1, 7)], dtype=np.float32)
    np.testing.assert_array_equal(s.train.column("adj"), want)
    np.testing.assert_array_equal(s.train.column("x"), [[1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1]])
    np.testing.assert_array_equal(s.train.column("label"), [0, 0, 0, 1, 1, 1])
    # the spec's one mask input gets the mask of the split fed; an unlabelled node is in no mask
    np.testing.assert_array_equal(s.train.column("train_mask"), [1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(s.val.column("train_mask"), [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(s.test.column("train_mask"), [0, 0, 0, 0, 1, 0])
    # a file networkx reads, node attributes as columns
    gx = nx.Graph(edges)
    gx.add_node("n6")
    nx.write_graphml(gx, tmp_path / "g.graphml")
    g2 = compiler.compile_file(spec(tmp_path, GCN.replace("SOURCE", "g.graphml"), "g2.yaml"))
    np.testing.assert_array_equal(D.load_splits(g2, g2.train.data, tmp_path).train.column("adj"), want)
    assert main(["train", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")]) == 0
    assert "test set" in capsys.readouterr().out
    # eval --data EDGES: read like the spec's graph, its node table still the spec's (relative to the spec)
    assert main(["eval", str(tmp_path / "s.yaml"), "--weights", str(tmp_path / "o" / "best.npz"),
                 "--data", str(tmp_path / "e.csv")]) == 0
    assert "(test nodes)" in capsys.readouterr().out


# -- the spec's data section ------------------------------------------------------------------------
def test_source_mapping_is_validated_with_did_you_mean(tmp_path):
    bad = MLP.replace("DATA", "{csv: a.csv, featurs: [a]}")
    with pytest.raises(SpecError) as e:
        compiler.compile_file(spec(tmp_path, bad))
    assert "unknown key 'featurs' in train.data.train" in e.value.render() and "did you mean 'features'" in e.value.render()
    with pytest.raises(SpecError, match="window does not apply to a csv source"):
        compiler.compile_file(spec(tmp_path, MLP.replace("DATA", "{csv: a.csv, window: 2}")))
    with pytest.raises(SpecError, match="exactly one file or folder"):
        compiler.compile_file(spec(tmp_path, MLP.replace("DATA", "{csv: a.csv, npz: b.npz}")))
    with pytest.raises(SpecError, match="a data source is a path"):
        compiler.compile_file(spec(tmp_path, MLP.replace("DATA", "[a.csv]")))


def test_inputs_mapping_names_fields(tmp_path):
    write_csv(tmp_path / "t.csv", [(1, 2, 3, 0), (4, 5, 6, 2)], header=("a", "b", "c", "kind"))
    g = compiler.compile_file(spec(tmp_path, MLP.replace("[N, 6]", "[N, 3]").replace(
        "DATA", "{csv: t.csv, label: kind, inputs: {x: features}}")))
    ds = D.load_splits(g, g.train.data, tmp_path).train
    np.testing.assert_array_equal(ds.column("x"), [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(ds.column("label"), [0, 2])
    g = compiler.compile_file(spec(tmp_path, MLP.replace("DATA", "{csv: t.csv, inputs: {x: featurs}}")))
    with pytest.raises(UserError, match="inputs maps 'x' to 'featurs'") as e:
        D.load_splits(g, g.train.data, tmp_path)
    assert "did you mean 'features'" in e.value.hint


# -- the command line: eval and run read a path like the spec's own source, with the training's categories
def test_eval_and_run_with_a_data_path(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rows = [(int(rng.integers(1, 60)), int(rng.integers(1, 5)), str(rng.choice(["Lyon", "Nice", "Paris"])),
             float(rng.normal(200, 30))) for _ in range(40)]
    write_csv(tmp_path / "houses.csv", rows)
    p = str(spec(tmp_path, HOUSES))
    ck = str(tmp_path / "o" / "best.npz")
    assert main(["train", p, "--out", str(tmp_path / "o")]) == 0
    write_csv(tmp_path / "new.csv", [(r[0], r[1], r[2]) for r in rows[:3]], header=("age", "rooms", "city"))
    capsys.readouterr()
    assert main(["run", p, "--weights", ck, "--data", str(tmp_path / "new.csv"), "-o", str(tmp_path / "y.npz")]) == 0
    got = np.load(tmp_path / "y.npz")["out"]
    # the same as the model on the training file's first rows, one-hot with the training's categories
    g = compiler.compile_file(p)
    m = runtime.Model(g)
    runtime.checkpoint.load(m, ck)
    m.eval()
    x = D.load_splits(g, g.train.data, tmp_path).train.column("features")[:3]
    np.testing.assert_allclose(got, m(features=x)["out"], rtol=1e-6)
    assert main(["eval", p, "--weights", ck, "--data", str(tmp_path / "houses.csv")]) == 0
    assert "(40 samples)" in capsys.readouterr().out
    assert main(["run", p, "--weights", ck, "--data", str(tmp_path / "new.csv"), "--input", "x=y.npy"]) == 2


def test_shipped_word2vec_and_gcn_specs_train_from_files(tmp_path, capsys):
    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "specs"
    (tmp_path / "c.txt").write_text("the cat eats the fish\nthe dog eats the bread\n" * 20)
    for name in ("word2vec_skipgram", "word2vec_cbow"):
        assert main(["train", str(root / f"{name}.yaml"), "--data", str(tmp_path / "c.txt"), "--set", "vocab=12",
                     "--set", "dim=4", "--epochs", "1", "--out", str(tmp_path / name)]) == 0
        assert read_meta(tmp_path / name / "best.npz")["data"]["vocab"][4] == "the"
    (tmp_path / "e.csv").write_text("s,t\na,b\nb,c\nc,a\nd,e\n")
    (tmp_path / "n.csv").write_text("id,label,split\na,x,train\nb,x,val\nc,y,test\nd,y,train\ne,y,test\n")
    gs = (root / "gcn.yaml").read_text() + "  data: {train: {graph: e.csv, nodes: n.csv}}\n"
    (tmp_path / "gcn.yaml").write_text(gs)
    capsys.readouterr()
    assert main(["train", str(tmp_path / "gcn.yaml"), "--set", "nodes=5", "--set", "features=5", "--set", "classes=2",
                 "--set", "labelled=2", "--epochs", "2", "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "validating on 1" in out and "test set" in out and "(test nodes)" in out
