"""The memory guard (issue 13, item 3): a tensor that cannot fit in the available memory is refused, before
NumPy allocates it, with the size it would need; a checkpoint or array file whose header claims more data
than it holds is refused from its header. Exit 1, one message, never a MemoryError traceback."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import compiler
import runtime
from cli.main import main
from runtime import memory
from runtime.memory import MemoryLimitError

SPEC = """\
name: wide
inputs:
  x: [N, 4]
  label: {shape: [N], dtype: int64}
layers:
  - {op: linear, name: fc, out_features: WIDTH}
  - {op: linear, name: head, out_features: 3}
  - {op: cross_entropy, name: loss, in: [head, label]}
outputs: [head]
train:
  objective: loss
  optimizer: {type: sgd, lr: 0.1}
  batch_size: 8
  epochs: 1
  data: {train: train.npz}
"""


def specc(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "MemoryError" not in err
    return code, err


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A small spec with trained-looking weights and data, and a 10^6-wide twin whose fc.weight is 16 MB."""
    (tmp_path / "small.yaml").write_text(SPEC.replace("WIDTH", "5"))
    (tmp_path / "wide.yaml").write_text(SPEC.replace("WIDTH", "1000000"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", x=rng.standard_normal((16, 4)).astype(np.float32),
             label=rng.integers(0, 3, 16))
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    runtime.save(runtime.Model(compiler.compile_file(tmp_path / "small.yaml")), tmp_path / "w.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _npy(shape, data: bytes = b"", dtype: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _forged_checkpoint(path, claim=(10**10,)):
    """The small spec's checkpoint with fc.weight's header claiming 10^10 floats (40 GB) over 64 bytes."""
    with np.load(path.parent / "w.npz") as z:
        real = {k: z[k] for k in z.files}
    with zipfile.ZipFile(path, "w") as out:
        for k, v in real.items():
            buf = io.BytesIO()
            np.save(buf, v)
            out.writestr(k + ".npy", _npy(claim, b"\0" * 64) if k == "fc.weight" else buf.getvalue())


# ------------------------------------------------------------------------------ measuring and wording

def test_available_memory_reads_meminfo_and_the_override(monkeypatch, tmp_path):
    monkeypatch.delenv("SPECC_MEMORY_LIMIT", raising=False)
    assert memory._meminfo_available() is None or memory._meminfo_available() > 0
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 22_100_000_000)
    monkeypatch.setattr(memory, "_cgroup_room", lambda: None)
    assert memory.available_bytes() == 22_100_000_000
    monkeypatch.setattr(memory, "_cgroup_room", lambda: 1_000_000_000)           # a container's limit wins
    assert memory.available_bytes() == 1_000_000_000
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "3.5G")
    assert memory.available_bytes() == 3_500_000_000
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "nonsense")                        # ignored, measured instead
    assert memory.available_bytes() == 1_000_000_000


def test_the_guard_message_gives_both_sizes(monkeypatch):
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "22.1G")
    with pytest.raises(MemoryLimitError) as e:
        memory.ensure_fits(3_600_000_000_000, "input 'x'", " at batch 1")
    assert e.value.message == "input 'x' needs 3.6 TB at batch 1; this machine has 22.1 GB available"
    memory.ensure_fits(22_100_000_000, "input 'x'")                             # exactly what is there: fine
    assert [memory.fmt_bytes(n) for n in (512, 1500, 2.5e6, 1e15 * 1234)] == ["512 B", "1.5 kB", "2.5 MB",
                                                                               "1,234 PB"]


# ------------------------------------------------------------------------------ the runtime refuses in time

def test_model_refuses_parameters_that_cannot_fit(monkeypatch):
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "10M")
    g = compiler.compile_text(SPEC.replace("WIDTH", "1000000"))
    with pytest.raises(MemoryLimitError, match=r"parameter 'fc.weight' \[1000000, 4\] needs 16 MB; this "
                                               r"machine has 10 MB available"):
        runtime.Model(g)


def test_model_refuses_an_activation_that_cannot_fit_before_running(monkeypatch):
    g = compiler.compile_text("name: t\ninputs: {x: [N, 4]}\nlayers:\n"
                              "  - {op: expand, name: e, shape: [1000, 1000, N, 4]}\n  - {op: relu, name: r}\n"
                              "  - {op: tanh, name: t}\n")
    m = runtime.Model(g)
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "40M")
    x = np.ones((2, 4), np.float32)
    assert m(x=x)["t"].shape == (1000, 1000, 2, 4)                   # 32 MB per output (expand's a view): fits
    with pytest.raises(MemoryLimitError, match=r"a training step of 't' .* needs 64 MB at N=2"):
        m.forward(x=runtime.Tensor(x, requires_grad=True))           # kept for backward: 2 × 32 MB do not
    with pytest.raises(MemoryLimitError, match=r"the output of node 'r' \(relu\) \[1000×1000×N×4\] needs "
                                               r"64 MB at N=4"):
        m(x=np.ones((4, 4), np.float32))


@pytest.mark.parametrize("command", ["train", "eval", "run", "compile"])
def test_commands_refuse_weights_that_cannot_fit(project, capsys, monkeypatch, command):
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "10M")
    argv = {"train": ["train", "wide.yaml", "--out", "run"],
            "eval": ["eval", "wide.yaml", "--weights", "w.npz", "--data", "train.npz"],
            "run": ["run", "wide.yaml", "--weights", "w.npz", "--input", "x=x.npy"],
            "compile": ["compile", "wide.yaml", "-o", "wide.onnx"]}[command]
    code, err = specc(capsys, *argv)
    assert code == 1
    assert "error: parameter 'fc.weight' [1000000, 4] needs 16 MB; this machine has 10 MB available" in err
    assert not (project / "run").exists() and not (project / "wide.onnx").exists()


def test_compile_verify_refuses_a_huge_input_before_drawing_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "22.1G")
    spec = tmp_path / "huge.yaml"
    spec.write_text("name: huge\ninputs: {x: [N, 1000000, 1000000]}\nlayers:\n  - {op: relu, name: r}\n")
    code, err = specc(capsys, "compile", spec, "-o", tmp_path / "huge.onnx", "--verify")
    assert code == 1
    assert "error: input 'x' [N×1000000×1000000] needs 8 TB at N=2; this machine has 22.1 GB available" in err
    assert not (tmp_path / "huge.onnx").exists()


# ------------------------------------------------------------------------------ headers are checked first

@pytest.mark.parametrize("command", ["eval", "run", "compile", "resume"])
def test_a_checkpoint_header_claiming_1e10_floats_is_refused_from_its_header(project, capsys, command):
    _forged_checkpoint(project / "forged.npz")
    argv = {"eval": ["eval", "small.yaml", "--weights", "forged.npz", "--data", "train.npz"],
            "run": ["run", "small.yaml", "--weights", "forged.npz", "--input", "x=x.npy"],
            "compile": ["compile", "small.yaml", "--weights", "forged.npz", "-o", "s.onnx"],
            "resume": ["train", "small.yaml", "--resume", "forged.npz", "--out", "run"]}[command]
    code, err = specc(capsys, *argv)
    assert code == 1
    assert "'forged.npz' is corrupt: array 'fc.weight' claims shape [10000000000] float32 (40 GB) but the file " \
           "holds 64 B of data for it" in err


def test_an_input_npy_header_claiming_too_much_is_refused(project, capsys):
    (project / "big.npy").write_bytes(_npy((2, 10**10), b"\0" * 32))
    code, err = specc(capsys, "run", "small.yaml", "--weights", "w.npz", "--input", "x=big.npy")
    assert code == 1 and "input file 'big.npy' is corrupt: array 'big' claims shape [2, 10000000000]" in err


def test_an_intact_file_too_big_for_memory_is_refused_before_reading(project, capsys, monkeypatch):
    np.save(project / "x.npy", np.ones((1000, 4), np.float32))         # 16 kB of data, intact
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "10k")
    code, err = specc(capsys, "run", "small.yaml", "--weights", "w.npz", "--input", "x=x.npy")
    assert code == 1 and "input file 'x.npy' (1 array) needs 16 kB; this machine has 10 kB available" in err


# ------------------------------------------------------------------------------ a full disk during training

def test_a_full_disk_reports_the_checkpoint_that_failed_first_and_keeps_the_previous_run(project, capsys,
                                                                                        monkeypatch):
    """Issue 13: with the disk full, `train --out` reported curves.png, hiding that best.npz failed first."""
    import errno
    import tempfile

    code, _ = specc(capsys, "train", "small.yaml", "--out", "run", "--epochs", "1")
    assert code == 0
    before = {p.name: p.read_bytes() for p in (project / "run").iterdir()}
    assert {"best.npz", "last.npz", "history.csv"} <= set(before)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tempfile, "mkstemp", full)              # every file specc writes goes through it
    code, err = specc(capsys, "train", "small.yaml", "--out", "run", "--epochs", "2")
    assert code == 1
    assert "error: cannot write 'run/best.npz': No space left on device" in err
    assert "curves.png" not in err and "last.npz" not in err
    assert {p.name: p.read_bytes() for p in (project / "run").iterdir()} == before


@pytest.mark.parametrize("command", ["train", "eval"])
def test_train_and_eval_refuse_an_input_too_big_at_the_batch_size(project, capsys, monkeypatch, command):
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "22.1G")
    (project / "huge.yaml").write_text(SPEC.replace("x: [N, 4]", "x: [N, 1000000, 1000000, 4]")
                                       .replace("WIDTH", "5").replace("- {op: linear, name: fc",
                                                                      "- {op: mean, name: m, dim: [1, 2]}\n"
                                                                      "  - {op: linear, name: fc"))
    argv = ["train", "huge.yaml", "--out", "run"] if command == "train" else \
        ["eval", "huge.yaml", "--weights", "w.npz", "--data", "train.npz"]
    code, err = specc(capsys, *argv)
    assert code == 1
    assert "error: input 'x' [N×1000000×1000000×4] needs 128 TB at batch 8; this machine has 22.1 GB " \
           "available" in err


def test_views_allocate_nothing_and_the_guard_can_be_turned_off(monkeypatch):
    g = compiler.compile_text("name: t\ninputs: {x: [N, 10, 100]}\nlayers:\n  - {op: flatten, name: f}\n"
                              "  - {op: select, name: s, dim: 1, index: 0}\n  - {op: relu, name: r, in: f}\n"
                              "outputs: [s, r]\n")
    m = runtime.Model(g)
    x = np.ones((2, 10, 100), np.float32)                              # 8 kB, already in memory
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "5k")
    assert m(outputs=["s"], x=x)["s"].shape == (2,)                   # flatten and select are views
    with pytest.raises(MemoryLimitError, match=r"node 'r' \(relu\) \[N×1000\] needs 8 kB at N=2"):
        m(x=x)
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "off")
    assert memory.available_bytes() is None
    assert m(x=x)["r"].shape == (2, 1000)


def test_compile_verify_sizes_activations_before_onnxruntime_runs(tmp_path, capsys, monkeypatch):
    """The NumPy reference runs first, so its guard speaks before onnxruntime tries to allocate."""
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "22.1G")
    spec = tmp_path / "blow.yaml"
    spec.write_text("name: blow\ninputs: {x: [N, 4]}\nlayers:\n"
                    "  - {op: expand, name: e, shape: [100000, 100000, N, 4]}\n  - {op: relu, name: r}\n")
    code, err = specc(capsys, "compile", spec, "-o", tmp_path / "blow.onnx", "--verify")
    assert code == 1
    assert "error: the output of node 'r' (relu) [100000×100000×N×4] needs 320 GB at N=2; this machine has " \
           "22.1 GB available" in err


def test_run_on_onnxruntime_sizes_activations_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPECC_MEMORY_LIMIT", "22.1G")
    spec = tmp_path / "blow.yaml"
    spec.write_text("name: blow\ninputs: {x: [N, 4]}\nlayers:\n"
                    "  - {op: expand, name: e, shape: [100000, 100000, N, 4]}\n  - {op: relu, name: r}\n")
    runtime.save(runtime.Model(compiler.compile_file(spec)), tmp_path / "w.npz")
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
    code, err = specc(capsys, "run", spec, "--weights", tmp_path / "w.npz", "--input", f"x={tmp_path / 'x.npy'}",
                      "--backend", "onnxruntime")
    assert code == 1 and "(relu) [100000×100000×N×4] needs 480 GB at N=3; this machine has 22.1 GB" in err
