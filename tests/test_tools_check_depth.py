"""`specc check --depth K`, `--columns`, `--explain NODE`."""
from __future__ import annotations

import json
import re

import pytest

from compiler import compile_file
from cli.main import main
from compiler.summary import totals


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["check", *argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def table_rows(out: str) -> dict[str, list[str]]:
    lines = out.split("\n\n")[0].splitlines()[3:]
    return {ln.split()[0]: re.split(r"\s{2,}", ln.strip()) for ln in lines}


def test_depth_collapses_blocks_with_subtotals(capsys):
    code, out, _ = run(capsys, "specs/resnet18.yaml", "--depth", "1")
    rows = table_rows(out)
    assert code == 0 and list(rows)[:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    assert "69 nodes in 11 rows" in out
    g = compile_file("specs/resnet18.yaml")
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        members = [n for n in g.nodes if n.name.startswith(layer + ".")]
        params = sum(s.shape and __import__("math").prod(s.shape) for n in members for s in n.params if not s.buffer)
        macs = sum(n.macs for n in members)
        name, op, shape, p, m = rows[layer]
        assert op == f"[{len(members)} nodes]" and shape == str(members[-1].out)
        assert int(p.replace(",", "")) == params and int(m.replace(",", "")) == macs
    total_p = sum(int(r[-2].replace(",", "")) for r in rows.values())
    assert total_p == totals(g)["params"]                   # the subtotals add up to the totals line
    assert re.search(r"parameter size: 4[67]\.\d\dMB as float32", out)


def test_depth_two_and_json(capsys):
    _, out, _ = run(capsys, "specs/resnet18.yaml", "--depth", "2")
    rows = table_rows(out)
    assert "layer1.0" in rows and "layer1" not in rows and "layer1.0.conv1" not in rows
    code, out, _ = run(capsys, "specs/resnet18.yaml", "--depth", "1", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["depth"] == 1 and [r["name"] for r in doc["rows"]][4] == "layer1"
    assert sum(r["nodes"] for r in doc["rows"]) == len(doc["nodes"])


def test_columns(capsys):
    code, out, _ = run(capsys, "specs/lenet5.yaml", "--columns", "kernel,stride,padding")
    rows = table_rows(out)
    assert code == 0 and "kernel_size  stride  padding" in out
    assert rows["conv2d_1"][3:6] == ["5", "1", "2"] and rows["relu_1"][3] == "0"     # relu: blank columns
    code, _, err = run(capsys, "specs/lenet5.yaml", "--columns", "kernal_size")
    assert code == 2 and "did you mean 'kernel_size'" in err


def test_explain_conv_formula(capsys):
    code, out, _ = run(capsys, "specs/lenet5.yaml", "--explain", "conv2d_1")
    assert code == 0
    assert "H_out = floor((H_in + 2·padding − dilation·(kernel_size−1) − 1)/stride) + 1" in out
    assert "= floor((28 + 2·2 − 1·(5−1) − 1)/1) + 1 = 28" in out
    assert "28×28: H_in×W_in, dims 2.. of input 'image' (N×1×28×28)" in out
    assert "2×2: padding, set in the spec at line 10" in out and "1×1: stride, the default" in out


@pytest.mark.parametrize("spec,node,want", [
    ("specs/lenet5.yaml", "max_pool2d_2", "= floor((10 + 2·0 − 1·(2−1) − 1)/2) + 1 = 5"),
    ("specs/lenet5.yaml", "flatten_1", "16 · 5 · 5 = 400"),
    ("specs/lenet5.yaml", "linear_1", "400: in_features, the last dim of input 'flatten_1'"),
    ("specs/dcgan.yaml", "gen.3", "= (4 − 1)·2 − 2·1 + 1·(4−1) + 0 + 1 = 8"),
    ("specs/googlenet.yaml", "inception3a.cat", "64 + 128 + 32 + 32 = 256"),
    ("specs/resnet18.yaml", "layer1.0.add_1", "rule (add): a + b"),
])
def test_explain_other_ops(capsys, spec, node, want):
    code, out, _ = run(capsys, spec, "--explain", node)
    assert code == 0 and want in out, out


def test_explain_reshape_fills_minus_one(capsys, tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("inputs: {x: [N, 4, 6]}\nlayers:\n  - {op: reshape, name: r, shape: [N, -1, 3]}\n")
    code, out, _ = run(capsys, str(p), "--explain", "r")
    assert code == 0 and "-1 = (elements of the input) / (product of the other sizes) = N · 4 · 6 / N · 3 = 8" in out


def test_explain_unknown_node(capsys):
    code, _, err = run(capsys, "specs/lenet5.yaml", "--explain", "conv2d_3")
    assert code == 2 and "no node 'conv2d_3'" in err and "did you mean" in err
