"""train.log (runtime/steplog.py): the spec keys, steps.csv / steps.jsonl / TensorBoard records, the
learning rate against the schedule, the gradient norm against the weights' own movement, resume, and a
fresh run replacing the previous run's records. Small synthetic problems (tests/test_train.py's)."""
from __future__ import annotations

import copy
import csv
import json
import struct
import sys

import numpy as np
import pytest
import yaml

import compiler
from compiler.errors import SpecError
from runtime import Model
from runtime.train import fit
from test_train import BASE, GAN, blobs, gan_data, make_spec, quiet, weights

NO_DROPOUT = [x for x in BASE["layers"] if not (isinstance(x, dict) and x.get("op") == "dropout")]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the spec -------------------------------------------------------------------------------------------
def test_log_section_keys_defaults_and_set_override():
    g = make_spec({"log": {"every": 5, "to": "jsonl"}})
    assert (g.train.log.every, g.train.log.to) == (5, ["jsonl"])
    assert make_spec().train.log is None                                  # no per-step log unless asked
    text = yaml.safe_dump(copy.deepcopy(BASE), sort_keys=False)
    g = compiler.compile_text(text, params={"train.log.every": 10})       # --set train.log.every=10
    assert (g.train.log.every, g.train.log.to) == (10, ["csv"])
    g = compiler.compile_text(text, params={"train.log.to": ["csv", "tensorboard"]})
    assert g.train.log.to == ["csv", "tensorboard"]


@pytest.mark.parametrize("log,message", [
    ({"evry": 5}, r"unknown key 'evry' in train.log[\s\S]*every"),
    ({"to": ["tensorbord"]}, r"train.log.to.0: .*'csv', 'jsonl' or 'tensorboard'"),
    ({"every": -1}, r"train.log.every: .*greater than or equal to 0"),
    ({"to": []}, r"train.log.to: empty: nothing would be recorded"),           # was silently no records
    ({"to": ["csv", "csv"]}, r"train.log.to: a sink is listed twice"),
    ({"every": True}, r"train.log.every: expected a number, got a boolean"),    # was read as every: 1
])
def test_bad_log_sections_are_spec_errors(log, message):
    with pytest.raises(SpecError, match=message):
        make_spec({"log": log})


def test_a_bad_sink_given_with_set_names_the_flag():
    with pytest.raises(SpecError, match=r"--set train.log.to=tensorbord: train.log.to.0: Input should be"):
        compiler.compile_text(yaml.safe_dump(BASE), params={"train.log.to": "tensorbord"})     # blames the flag


# -- records --------------------------------------------------------------------------------------------
def test_csv_and_jsonl_records_follow_the_schedule_and_lr_scale(tmp_path):
    """every: 1 with a step schedule (lr 0.1, x0.5 every 2 epochs) and lr_scale fc2.*: 0.1: the lr columns
    are the schedule's value for the record's epoch, and lr.fc2.* a tenth of it; history.csv's too."""
    g = make_spec({"epochs": 5, "batch_size": 16, "optimizer": {"type": "sgd", "lr": 0.1},
                   "schedule": {"type": "step", "step_size": 2, "gamma": 0.5}, "lr_scale": {"fc2.*": 0.1},
                   "log": {"every": 1, "to": ["csv", "jsonl"]}})
    h = fit(Model(g, seed=3), blobs(), out_dir=tmp_path, log=quiet, progress=False)   # 96 samples: 6 batches
    rows, objs = read_csv(tmp_path / "steps.csv"), read_jsonl(tmp_path / "steps.jsonl")
    assert list(rows[0]) == ["step", "epoch", "batch", "loss", "lr", "lr.fc2.*", "grad_norm", "clipped",
                             "samples_per_s", "step_time"]
    assert [int(r["step"]) for r in rows] == [o["step"] for o in objs] == list(range(1, 31))
    for r, o in zip(rows, objs):
        epoch = int(r["epoch"])
        want = 0.1 * 0.5 ** ((epoch - 1) // 2)
        assert float(r["lr"]) == pytest.approx(want, rel=1e-7) and o["lr"] == pytest.approx(want, rel=1e-12)
        assert o["lr.fc2.*"] == pytest.approx(0.1 * want, rel=1e-12)
        assert int(r["batch"]) == (int(r["step"]) - 1) % 6 + 1 and epoch == (int(r["step"]) - 1) // 6 + 1
        assert float(r["loss"]) == pytest.approx(o["loss"], rel=1e-7) and np.isfinite(o["loss"])
        assert o["grad_norm"] > 0 and o["clipped"] == 0 and o["samples_per_s"] > 0 and o["step_time"] > 0
    assert [r["lr"] for r in h] == [pytest.approx(0.1 * 0.5 ** ((e - 1) // 2)) for e in range(1, 6)]
    hist = read_csv(tmp_path / "history.csv")                 # the group's rate after the old columns
    assert list(hist[0])[-3:] == ["lr", "time", "lr.fc2.*"]
    assert [float(r["lr.fc2.*"]) for r in hist] == [pytest.approx(0.1 * r["lr"]) for r in h]
    for e in range(1, 6):                     # six batches of 16 per epoch: train.loss is their mean
        assert np.mean([o["loss"] for o in objs if o["epoch"] == e]) == pytest.approx(h[e - 1]["train.loss"], rel=1e-6)


def test_grad_norm_is_the_gradients_norm_before_clipping(tmp_path):
    """One full-batch SGD step (lr 0.5, no momentum): the weights move by -lr·g, so |g| = |move| / lr,
    measured from the weights alone. With max_norm below it, the record still has the norm before clipping,
    says clipped, and the weights move by lr·max_norm."""
    norms, moves = {}, {}
    for clip in (None, {"max_norm": 0.01}):
        g = make_spec({"epochs": 1, "batch_size": 1000, "optimizer": {"type": "sgd", "lr": 0.5},
                       "grad_clip": clip, "log": {"every": 1, "to": ["jsonl"]}}, layers=NO_DROPOUT)
        m = Model(g, seed=3)
        fit(m, blobs(), out_dir=tmp_path / str(bool(clip)), log=quiet, progress=False)
        before = weights(Model(g, seed=3))
        after = weights(m)
        moves[bool(clip)] = np.sqrt(sum(float(((after[k] - before[k]).astype(np.float64) ** 2).sum())
                                        for k in after if not k.startswith("norm.")))
        [rec] = read_jsonl(tmp_path / str(bool(clip)) / "steps.jsonl")
        norms[bool(clip)] = rec["grad_norm"], rec["clipped"]
    assert norms[False][0] == pytest.approx(moves[False] / 0.5, rel=1e-4) and norms[False][1] == 0
    assert norms[True][0] == pytest.approx(norms[False][0], rel=1e-6) and norms[True][1] == 1
    assert moves[True] == pytest.approx(0.5 * 0.01, rel=1e-3)


def test_terms_and_phases_get_their_own_columns(tmp_path):
    layers = BASE["layers"][:-1] + [{"op": "cross_entropy", "name": "loss", "in": ["fc2", "label"]},
                                    {"op": "mul", "name": "sq", "in": ["fc1", "fc1"]},
                                    {"op": "mean", "name": "aux", "in": "sq"}]
    g = make_spec({"objective": {"loss": 1.0, "aux": 0.3}, "epochs": 1, "log": {"every": 3}}, layers=layers)
    fit(Model(g), blobs(), out_dir=tmp_path / "terms", log=quiet, progress=False)
    rows = read_csv(tmp_path / "terms" / "steps.csv")
    assert {"loss.loss_term", "loss.aux"} <= set(rows[0])
    for r in rows:
        assert float(r["loss"]) == pytest.approx(float(r["loss.loss_term"]) + 0.3 * float(r["loss.aux"]), rel=1e-5)
    spec = copy.deepcopy(GAN)
    spec["train"]["log"] = {"every": 1}
    fit(Model(compiler.compile_text(yaml.safe_dump(spec))), gan_data(), out_dir=tmp_path / "gan", log=quiet,
        progress=False)
    rows = read_csv(tmp_path / "gan" / "steps.csv")
    assert list(rows[0]) == ["step", "epoch", "batch", "loss", "loss.d_loss", "loss.g_loss", "lr.d_loss",
                             "lr.g_loss", "grad_norm.d_loss", "grad_norm.g_loss", "clipped.d_loss",
                             "clipped.g_loss", "samples_per_s", "step_time"]
    assert len(rows) == 12 and float(rows[0]["lr.g_loss"]) == 0.05 and float(rows[0]["lr.d_loss"]) == 0.01
    assert all(float(r["grad_norm.d_loss"]) > 0 and float(r["grad_norm.g_loss"]) > 0 for r in rows)


# -- files: resume, replace -----------------------------------------------------------------------------
def test_resume_appends_and_continues_the_step_count(tmp_path):
    """A run interrupted after epoch 2 whose steps files also hold a record of the interrupted epoch 3
    (killed mid-epoch), resumed: the records are those of an uninterrupted run, each step once."""
    g = make_spec({"epochs": 4, "log": {"every": 2, "to": ["csv", "jsonl"]}})
    fit(Model(g, seed=3), blobs(), out_dir=tmp_path / "a", log=quiet, progress=False)

    def interrupt(epoch, rec):
        if epoch == 2:
            raise KeyboardInterrupt

    b = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        fit(Model(g, seed=3), blobs(), out_dir=b, log=quiet, progress=False, callback=interrupt)
    with open(b / "steps.csv", "a") as f:
        f.write("14,3,2,9.9,0.01,1.0,0,100,0.01\n")
    with open(b / "steps.jsonl", "a") as f:
        f.write('{"step": 14, "epoch": 3, "loss": 9.9}\n{"step": 16, "epo')      # cut short by the kill
    fit(Model(g, seed=99), blobs(), out_dir=b, resume=b / "last.npz", log=quiet, progress=False)
    full, res = read_csv(tmp_path / "a" / "steps.csv"), read_csv(b / "steps.csv")
    assert [r["step"] for r in res] == [r["step"] for r in full] == [str(s) for s in range(2, 25, 2)]
    assert [r["loss"] for r in res] == [r["loss"] for r in full]
    assert [r["grad_norm"] for r in res] == [r["grad_norm"] for r in full]
    assert ([o["loss"] for o in read_jsonl(b / "steps.jsonl")]
            == [o["loss"] for o in read_jsonl(tmp_path / "a" / "steps.jsonl")])


def test_a_fresh_run_replaces_the_previous_records_and_no_log_writes_none(tmp_path):
    (tmp_path / "steps.csv").write_text("old,run\n1,2\n")
    g = make_spec({"epochs": 1, "log": {"every": 100}})            # no step reaches 100: a header only
    fit(Model(g), blobs(), out_dir=tmp_path, log=quiet, progress=False)
    assert (tmp_path / "steps.csv").read_text().startswith("step,epoch,batch,loss,lr,")
    assert read_csv(tmp_path / "steps.csv") == []
    fit(Model(make_spec({"epochs": 1})), blobs(), out_dir=tmp_path / "plain", log=quiet, progress=False)
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["best.npz", "curves.png", "history.csv",
                                                                      "last.npz"]


# -- TensorBoard ----------------------------------------------------------------------------------------
def read_events(folder):
    """{tag: [(step, value)]} of every event file in `folder`, read as TFRecords (length, crc, data, crc)
    with tensorboardX's own Event protobuf."""
    from tensorboardX.proto.event_pb2 import Event
    out: dict = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        raw = path.read_bytes()
        i = 0
        while i < len(raw):
            (n,) = struct.unpack("<Q", raw[i:i + 8])
            ev = Event.FromString(raw[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def test_tensorboard_events_hold_the_step_and_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    g = make_spec({"epochs": 2, "log": {"every": 3, "to": ["csv", "tensorboard"]}})
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1.old").write_bytes(b"")          # a previous run's: replaced
    (tmp_path / "tb" / "notes.txt").write_text("mine")                        # not specc's: kept
    h = fit(Model(g, seed=3), blobs(), val_data=0.25, out_dir=tmp_path, log=quiet, progress=False)
    assert not (tmp_path / "tb" / "events.out.tfevents.1.old").exists() and (tmp_path / "tb" / "notes.txt").exists()
    ev = read_events(tmp_path / "tb")
    rows = read_csv(tmp_path / "steps.csv")
    for col in ("loss", "lr", "grad_norm"):
        assert ev[f"step/{col}"] == [(int(r["step"]), pytest.approx(float(r[col]), rel=1e-6)) for r in rows]
    assert [s for s, _ in ev["epoch/val.loss"]] == [5, 10]                  # 72 training samples: 5 batches
    assert [v for _, v in ev["epoch/val.loss"]] == [pytest.approx(r["val.loss"], rel=1e-6) for r in h]
    assert [v for _, v in ev["epoch/train.accuracy"]] == [pytest.approx(r["train.accuracy"], rel=1e-6) for r in h]


def test_tensorboard_without_tensorboardx_fails_before_training(tmp_path, monkeypatch, capsys):
    from cli.main import main
    spec = tmp_path / "tiny.yaml"
    d = copy.deepcopy(BASE)
    d["train"]["log"] = {"to": ["tensorboard"]}
    spec.write_text(yaml.safe_dump(d, sort_keys=False))
    np.savez(tmp_path / "d.npz", **blobs())
    monkeypatch.setitem(sys.modules, "tensorboardX", None)                    # import fails
    assert main(["train", str(spec), "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "tensorboardX package is not installed" in err and "specc[tensorboard]" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "last.npz").exists()


# -- the torch backend ----------------------------------------------------------------------------------
def test_torch_backend_writes_the_same_records(tmp_path):
    """The same run on both backends (no random nodes, grad_clip by value, lr_scale): the same columns,
    and per record the same loss, learning rates, clipped flag and gradient norm (float32 rounding apart)."""
    pytest.importorskip("torch")
    from runtime.torch_backend.trainer import fit_torch
    g = make_spec({"epochs": 2, "schedule": {"type": "step", "step_size": 1, "gamma": 0.5}, "lr_scale": {"fc1.*": 2.0},
                   "grad_clip": {"value": 0.05}, "log": {"every": 2, "to": ["csv", "jsonl"]}}, layers=NO_DROPOUT)
    fit(Model(g, seed=3), blobs(), out_dir=tmp_path / "np", log=quiet, progress=False)
    fit_torch(Model(g, seed=3), blobs(), out_dir=tmp_path / "torch", log=quiet, progress=False)
    a, b = read_csv(tmp_path / "np" / "steps.csv"), read_csv(tmp_path / "torch" / "steps.csv")
    assert list(a[0]) == list(b[0]) and "lr.fc1.*" in a[0] and len(a) == len(b) == 6
    for x, y in zip(a, b):
        for col in ("step", "epoch", "batch", "lr", "lr.fc1.*", "clipped"):
            assert x[col] == y[col], col
        for col in ("loss", "grad_norm"):
            assert float(y[col]) == pytest.approx(float(x[col]), rel=1e-4), col
    assert any(r["clipped"] == "1" for r in a)
    assert [o["step"] for o in read_jsonl(tmp_path / "torch" / "steps.jsonl")] == [2, 4, 6, 8, 10, 12]
