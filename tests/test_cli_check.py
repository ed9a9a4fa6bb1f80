"""`specc check` (table, totals, --batch, --json, --set, several specs, exit codes), `specc schema`,
and tools/shape_check.py (the batch checker) run as a user runs it."""
from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import compiler
from cli.main import main
from compiler.ops import OPS

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.yaml")
PERCEPTRON = str(ROOT / "specs" / "perceptron.yaml")
BAD = ROOT / "tests" / "specs" / "bad"
SHAPE_CHECK = ROOT / "tools" / "shape_check.py"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:                         # argparse usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def memory_bytes(text: str) -> float:
    m = re.search(r"estimated training memory at batch \d+: ([\d.]+)([kMGT]?)B", text)
    assert m, text
    return float(m[1]) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m[2]]


# --------------------------------------------------------------------------------------------
# specc check
# --------------------------------------------------------------------------------------------
def test_check_prints_a_row_per_node_and_totals():
    code, out, err = run("check", LENET)
    assert code == 0 and err == ""
    g = compiler.compile_file(LENET)
    lines = out.splitlines()
    assert lines[0].startswith("lenet5: 13 nodes")
    assert re.match(r"name\s+op\s+output shape\s+params\s+MACs", lines[1])
    for n in g.nodes:
        row = next((ln for ln in lines if ln.split() and ln.split()[0] == n.name), None)
        assert row is not None, f"no row for {n.name}"
        assert n.op in row.split()
    conv1 = next(ln for ln in lines if ln.startswith("conv2d_1 "))
    assert "N×6×28×28" in conv1 and "156" in conv1 and "117,600" in conv1
    assert "parameters: 61,706 (61,706 trainable, 0 frozen)" in out
    assert "MACs per sample: 429,342" in out
    assert "inputs:  image N×1×28×28, label N int64" in out
    assert "outputs: logits N×10" in out
    assert "estimated training memory at batch 1:" in out


def test_check_batch_changes_the_memory_estimate():
    _, one, _ = run("check", LENET)
    code, many, _ = run("check", LENET, "--batch", "64")
    assert code == 0
    assert "estimated training memory at batch 64:" in many
    assert memory_bytes(many) > memory_bytes(one)
    # parameters and MACs are per model / per sample: the batch does not change them
    assert re.search(r"parameters: .*", one)[0] == re.search(r"parameters: .*", many)[0]


def test_check_json_is_valid_and_complete():
    code, out, _ = run("check", LENET, "--json", "--batch", "8")
    assert code == 0
    data = json.loads(out)
    assert data["name"] == "lenet5" and data["file"] == LENET
    assert [n["name"] for n in data["nodes"]] == [n.name for n in compiler.compile_file(LENET).nodes]
    assert data["totals"]["params"] == 61_706 and data["totals"]["batch"] == 8
    assert data["totals"]["macs"] == 429_342
    assert data["outputs"]["logits"]["shape"] == ["N", 10]
    assert data["inputs"]["label"] == {"shape": ["N"], "dtype": "int64"}
    _, out1, _ = run("check", LENET, "--json")
    assert json.loads(out1)["totals"]["train_memory_bytes"] < data["totals"]["train_memory_bytes"]


FROZEN_SPEC = """specc: 1
name: frozen_demo
inputs:
  image: [N, 1, 8, 8]
  label: {shape: [N], dtype: int64}
layers:
  - {conv2d: {out_channels: 4, kernel_size: 3}, name: conv1}   # 4*1*3*3 + 4 = 40
  - {batch_norm: {}, name: bn1}                               # weight, bias 4 + 4; buffers 4 + 4 + 1
  - relu
  - flatten
  - {linear: 10, name: fc}                                    # 144*10 + 10 = 1,450
  - {op: cross_entropy, name: loss, in: [fc, label]}
outputs: [fc]
train:
  objective: loss
  optimizer: {type: adam, lr: 1.0e-3}
FREEZE"""


def test_check_totals_with_frozen_parameters(tmp_path):
    """train.freeze globs move parameters from trainable to frozen (buffers they match stay buffers), and
    frozen parameters need no gradient or Adam state in the memory estimate; text and --json agree."""
    frozen = tmp_path / "frozen.yaml"
    frozen.write_text(FROZEN_SPEC.replace("FREEZE", '  freeze: ["conv1.*", "bn1.*"]\n'))
    plain = tmp_path / "plain.yaml"
    plain.write_text(FROZEN_SPEC.replace("FREEZE", ""))
    code, out, err = run("check", str(frozen))
    assert code == 0 and err == ""
    assert "parameters: 1,498 (1,450 trainable, 48 frozen); buffers: 9" in out
    # 4 bytes x (1,498 params + 9 buffers + 1,450 x (gradient + 2 Adam moments) + 586 activations x batch 1)
    # + the inputs at batch 1: 64 float32 pixels and an int64 label
    assert "estimated training memory at batch 1: 26.04kB" in out
    code, out, _ = run("check", str(plain))
    assert code == 0 and "parameters: 1,498 (1,498 trainable, 0 frozen); buffers: 9" in out

    code, out, _ = run("check", str(frozen), "--json", "--batch", "4")
    assert code == 0
    t = json.loads(out)["totals"]
    assert {k: t[k] for k in ("params", "trainable", "frozen", "buffers", "activations_per_sample",
                              "inputs_per_sample", "batch")} == \
        {"params": 1498, "trainable": 1450, "frozen": 48, "buffers": 9, "activations_per_sample": 586,
         "inputs_per_sample": 65, "batch": 4}
    assert t["train_memory_bytes"] == 4 * (1498 + 9 + 1450 * 3 + 586 * 4) + 4 * (4 * 64 + 8 * 1)
    code, out, _ = run("check", str(plain), "--json", "--batch", "4")
    t0 = json.loads(out)["totals"]
    assert (t0["trainable"], t0["frozen"]) == (1498, 0)
    assert t0["train_memory_bytes"] - t["train_memory_bytes"] == 4 * 48 * 3


def test_check_set_overrides_params():
    code, out, _ = run("check", LENET, "--set", "classes=26")
    assert code == 0
    assert "outputs: logits N×26" in out
    assert "parameters: 63,066" in out                     # logits: (84 + 1) · 26 instead of (84 + 1) · 10
    code, out, _ = run("check", str(ROOT / "specs" / "googlenet.yaml"), "--set", "k5=5")
    assert code == 0 and "parameters: 7,005,832" in out


def test_check_set_unknown_param_is_reported_with_a_suggestion():
    code, _, err = run("check", LENET, "--set", "clases=3")
    assert code != 0
    assert "no param 'clases'" in err and "did you mean 'classes'?" in err
    assert "Traceback" not in err


def test_check_set_expression_error_names_the_flag_not_the_spec_line():
    """An expression given with --set that fails was reported at the spec's `classes: 10` line."""
    code, _, err = run("check", LENET, "--set", "classes=${log(0)}")
    assert code == 1
    assert err.startswith("error: --set classes=${log(0)}: log: its argument must be positive"), err
    assert "lenet5.yaml:5" not in err


def test_check_several_specs():
    code, out, _ = run("check", LENET, PERCEPTRON)
    assert code == 0
    assert "lenet5: 13 nodes" in out and "perceptron: 4 nodes" in out
    code, out, _ = run("check", LENET, PERCEPTRON, "--json")
    reports = json.loads(out)
    assert [r["name"] for r in reports] == ["lenet5", "perceptron"]
    assert [r["file"] for r in reports] == [LENET, PERCEPTRON]


def test_check_several_specs_one_bad_reports_both():
    bad = str(BAD / "channel_mismatch.yaml")
    code, out, err = run("check", LENET, bad, PERCEPTRON)
    assert code == 1
    assert "lenet5: 13 nodes" in out and "perceptron: 4 nodes" in out     # the good ones are still checked
    assert "channel_mismatch.yaml:8:44: error:" in err
    assert "channel_mismatch.yaml: 1 error" in err


@pytest.mark.parametrize("argv,code", [
    (["check", LENET], 0),
    (["check", str(BAD / "several_errors.yaml")], 1),
    (["check", str(ROOT / "specs" / "no_such_spec.yaml")], 1),       # a missing file, as everywhere
    (["check", LENET, "--set", "classes"], 2),                       # --set without '='
    (["check", LENET, "--batch", "many"], 2),
    (["check"], 2),                                                  # no spec
    (["check", LENET, "--frobnicate"], 2),
    (["frobnicate"], 2),
])
def test_check_exit_codes(argv, code):
    got, out, err = run(*argv)
    assert got == code, (out, err)
    assert "Traceback" not in out + err
    if argv[:1] == ["check"] and len(argv) > 1 and "no_such" in argv[1]:
        assert "no such spec file" in err


def test_check_a_missing_spec_among_others_checks_the_others():
    missing = str(ROOT / "specs" / "no_such_spec.yaml")
    code, out, err = run("check", LENET, missing, PERCEPTRON)
    assert code == 1 and "Traceback" not in err
    assert "lenet5: 13 nodes" in out and "perceptron: 4 nodes" in out
    assert f"error: no such spec file: '{missing}'" in err
    code, out, err = run("check", LENET, missing, "--json")
    assert code == 1
    reports = json.loads(out)
    assert [(r["file"], r["status"]) for r in reports] == [(LENET, "ok"), (missing, "error")]
    assert "no such spec file" in reports[1]["errors"][0]["message"]
    assert run("check", missing, "--set", "classes")[0] == 2          # a usage error stays one


def test_check_imports_no_onnx_runtime_or_networkx():
    """`specc check` stays light: no onnx, onnxruntime, runtime or torch, and no networkx (Graph.nx is
    built on first access)."""
    heavy = ("onnx", "onnxruntime", "runtime", "torch", "networkx")
    code = ("import sys, io, contextlib\n"
            "from cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['check', 'specs/resnet50.yaml', 'specs/transformer_classifier.yaml'])\n"
            f"print(rc, sorted(m for m in {heavy!r} if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "[]"]
    # as a user runs it, measured the way docs/benchmarks.md does
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli", "check", "specs/resnet50.yaml"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "numpy" not in imported and "pydantic" in imported          # the probe does see imports
    assert not imported & set(heavy), imported & set(heavy)


def test_check_rejects_a_non_positive_batch():
    assert run("check", LENET, "--batch", "0")[0] == 2


def test_check_errors_go_to_stderr_with_file_line_col():
    code, out, err = run("check", str(BAD / "several_errors.yaml"))
    assert code == 1 and out == ""
    heads = re.findall(r"several_errors\.yaml:(\d+):(\d+): error:", err)
    assert heads == [("8", "64"), ("10", "32"), ("12", "10")]
    assert "several_errors.yaml: 3 errors" in err


# --------------------------------------------------------------------------------------------
# specc schema
# --------------------------------------------------------------------------------------------
def test_schema_is_json_with_one_branch_per_op(tmp_path: Path):
    code, out, _ = run("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["type"] == "object" and "required" not in schema     # library files hold only blocks
    assert {"name", "inputs", "layers", "outputs", "train", "blocks", "imports", "params"} <= set(schema["properties"])
    branches = [v for k, v in schema["$defs"].items() if k.startswith("op.")]
    consts = [b["properties"]["op"]["const"] for b in branches]
    assert sorted(consts) == sorted(OPS)                  # every op exactly once
    conv = schema["$defs"]["op.conv2d"]
    assert {"out_channels", "kernel_size", "stride", "padding", "in", "name"} <= set(conv["properties"])
    assert conv["additionalProperties"] is False
    target = tmp_path / "schema.json"
    code, out, _ = run("schema", "-o", str(target))
    assert code == 0 and json.loads(target.read_text()) == schema


# --------------------------------------------------------------------------------------------
# tools/shape_check.py
# --------------------------------------------------------------------------------------------
def shape_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SHAPE_CHECK), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def rows_of(stdout: str) -> list[list[str]]:
    """The table's cells, cut at the columns the dashed rule under the header marks."""
    lines = stdout.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    body = []
    for ln in lines[2:]:
        if not ln.strip():
            break
        cells = [ln[a:b].strip() for a, b in spans[:-1]] + [ln[spans[-1][0]:].strip()]
        body.append(cells)
    return body


def example_specs() -> list[Path]:
    return sorted(p for p in (ROOT / "specs").rglob("*.yaml") if "lib" not in p.relative_to(ROOT / "specs").parts)


def test_shape_check_on_the_examples_passes():
    r = shape_check("specs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.match(r"file\s+name\s+status\s+parameters\s+MACs\s+outputs", r.stdout)
    rows = rows_of(r.stdout)
    assert [row[0] for row in rows] == [str(p.relative_to(ROOT)) for p in example_specs()]   # lib/ skipped
    assert all(row[2] == "ok" for row in rows)
    resnet = next(row for row in rows if row[0] == "specs/resnet18.yaml")
    assert resnet[1] == "resnet18" and resnet[3] == "11,689,512" and resnet[4] == "1.82G"
    assert resnet[5] == "logits N×1000"
    assert f"{len(rows)} specs checked: {len(rows)} ok, 0 failed" in r.stdout


def test_shape_check_on_the_bad_corpus_fails_with_one_row_per_file():
    r = shape_check("tests/specs/bad")
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    rows = rows_of(r.stdout)
    files = sorted(BAD.glob("*.yaml"))                     # imported/ holds libraries: skipped
    assert [row[0] for row in rows] == [str(p.relative_to(ROOT)) for p in files]
    assert all(row[2].startswith("FAIL (") for row in rows)
    several = next(row for row in rows if row[0].endswith("several_errors.yaml"))
    assert several[1:3] == ["several", "FAIL (3 errors)"]
    # the errors follow the table, as specc check prints them
    assert "== tests/specs/bad/several_errors.yaml: 3 errors" in r.stdout
    assert "tests/specs/bad/several_errors.yaml:10:32: error: unknown reference 'pol1'" in r.stdout
    assert f"{len(files)} specs checked: 0 ok, {len(files)} failed" in r.stdout


def test_shape_check_files_mixed_and_json():
    r = shape_check("specs/lenet5.yaml", "tests/specs/bad/channel_mismatch.yaml", "specs/lib/resnet.yaml", "--json")
    assert r.returncode == 1
    rows = json.loads(r.stdout)
    assert [(x["file"], x["status"]) for x in rows] == [("specs/lenet5.yaml", "ok"),
                                                        ("tests/specs/bad/channel_mismatch.yaml", "FAIL"),
                                                        ("specs/lib/resnet.yaml", "skipped")]
    assert rows[0]["parameters"] == 61_706 and rows[0]["outputs"] == {"logits": "N×10"}
    assert "expects 16 input channels" in rows[1]["report"] and rows[1]["errors"] == 1


def test_shape_check_set_applies_where_declared():
    r = shape_check("specs/googlenet.yaml", "specs/lenet5.yaml", "--set", "k5=5")
    assert r.returncode == 0, r.stderr
    assert "7,005,832" in r.stdout and "61,706" in r.stdout


@pytest.mark.parametrize("args", [[], ["specs/lib"], ["specs/lenet5.yaml", "--set", "classes"]])
def test_shape_check_usage_errors(args):
    r = shape_check(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["specs/no_such_folder"], ["specs/lenet5.yaml", "specs/no_such.yaml"]])
def test_shape_check_missing_paths_exit_1(args):
    r = shape_check(*args)
    assert r.returncode == 1 and "no such file or folder" in r.stderr
    assert "Traceback" not in r.stderr
    assert ("lenet5" in r.stdout) == ("specs/lenet5.yaml" in args)     # the other paths are still checked


def test_schema_accepts_every_shipped_spec():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    from compiler.schema import json_schema
    validator = jsonschema.Draft202012Validator(json_schema())
    for path in sorted(Path("specs").rglob("*.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path}: {errors[0].message[:200]}"
    bad = yaml.safe_load("inputs: {x: [N, 4]}\nlayers: [{op: linear, out_featurs: 3}]\n")
    assert list(validator.iter_errors(bad)), "a misspelt attribute must not validate"


def test_check_a_library_or_a_folder_says_what_to_do_instead():
    code, _, err = run("check", str(ROOT / "specs" / "lib" / "resnet.yaml"))
    assert code == 1 and err.count("error:") == 1 and "is a block library" in err
    assert 'imports: {resnet: "std:resnet"}' in err
    code, _, err = run("check", str(ROOT / "specs"))
    assert code == 1 and "is a folder, not a spec file" in err and "tools/shape_check.py" in err


def test_check_memory_estimate_counts_inputs_and_activations_at_their_size(tmp_path):
    """Issue 13: an input of 10^12 elements was estimated at "368B" (inputs and fixed-size activations were
    not counted). Now a tensor without a symbolic dimension counts once, one with a symbol `--batch` times,
    each element at its dtype's size."""
    spec = tmp_path / "huge.yaml"
    spec.write_text("name: huge\ninputs: {x: [1000000, 1000000], ids: {shape: [N, 5], dtype: int64}}\n"
                    "layers:\n  - {op: mean, name: m, in: x, dim: 1}\n  - {op: linear, name: fc, out_features: 3}\n"
                    "outputs: [fc]\n")
    code, out, _ = run("check", str(spec), "--json", "--batch", "8")
    assert code == 0
    t = json.loads(out)["totals"]
    params = 3 * 1000000 + 3
    # parameters x (value, gradient, 2 Adam moments); x once; ids x batch 8 at 8 bytes; m [10^6] and fc [3] once
    want = 4 * params * 4 + 4 * 10**12 + 8 * 5 * 8 + 4 * 10**6 + 4 * 3
    assert t["train_memory_bytes"] == want
    code, out, _ = run("check", str(spec))
    assert "estimated training memory at batch 1: 4.00TB" in out
