"""`specc graph`: --depth, attributes in boxes, --rankdir, .pdf, large graphs collapsed by default."""
from __future__ import annotations

import re
import shutil

import pytest

from compiler import compile_file
from cli.main import main
from compiler.graphviz import MAX_BOXES, default_depth, to_dot


def boxes(dot: str) -> list[str]:
    return re.findall(r"^\s+(n_\w+) \[label=", dot, re.M)


def test_attributes_in_boxes_and_rankdir(tmp_path, capsys):
    out = tmp_path / "l.dot"
    assert main(["graph", "specs/lenet5.yaml", "-o", str(out), "--rankdir", "LR"]) == 0
    text = out.read_text()
    assert "rankdir=LR;" in text
    assert 'n_conv2d_1 [label="conv2d_1\\nconv2d\\nout=6 k=5 pad=2"]' in text
    assert 'n_logits [label="logits\\nlinear\\nout=10"]' in text


def test_depth_collapses_and_keeps_edges(capsys):
    g = compile_file("specs/resnet18.yaml")
    dot = to_dot(g, depth=1)
    names = boxes(dot)
    assert "n_layer1" in names and not any(n.startswith("n_layer1_0") for n in names)
    assert 'n_layer1 [label="layer1\\n14 nodes\\nN×64×56×56\\n147,968 params"' in dot
    assert "n_maxpool -> n_layer1 [" in dot and "n_layer1 -> n_layer2 [" in dot
    assert "n_layer1 -> n_layer1" not in dot                  # edges inside a group are not drawn
    full = to_dot(g)
    assert len(boxes(full)) == len(g.nodes) + len(g.inputs) + len(g.outputs)


def test_large_graph_collapsed_by_default(tmp_path, capsys):
    g = compile_file("specs/resnet18.yaml")
    assert len(g.nodes) > MAX_BOXES and default_depth(g) == 2
    assert default_depth(compile_file("specs/lenet5.yaml")) is None
    out = tmp_path / "r.dot"
    assert main(["graph", "specs/resnet18.yaml", "-o", str(out)]) == 0
    cap = capsys.readouterr().out
    assert "collapsed at --depth 2 (15 boxes)" in cap and "--full" in cap
    assert len(boxes(out.read_text())) == 15 + 2 + 1
    assert main(["graph", "specs/resnet18.yaml", "-o", str(out), "--full"]) == 0
    assert len(boxes(out.read_text())) == len(g.nodes) + 3


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_pdf_and_png(tmp_path, capsys):
    assert main(["graph", "specs/resnet18.yaml", "-o", str(tmp_path / "r.pdf")]) == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    assert main(["graph", "specs/resnet18.yaml", "-o", str(tmp_path / "r.png")]) == 0
    from PIL import Image
    w, h = Image.open(tmp_path / "r.png").size
    assert h < 3000, (w, h)                                   # 7280 px tall when every node was drawn


def test_missing_dot_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["graph", "specs/lenet5.yaml", "-o", str(tmp_path / "l.pdf")]) == 1
    err = capsys.readouterr().err
    assert "needs Graphviz's `dot` program" in err and "install graphviz" in err
    assert not (tmp_path / "l.pdf").exists()


def test_mermaid_depth(tmp_path, capsys):
    out = tmp_path / "r.mmd"
    assert main(["graph", "specs/resnet18.yaml", "-o", str(out), "--depth", "1", "--rankdir", "LR"]) == 0
    text = out.read_text()
    assert text.startswith("flowchart LR") and 'n_layer2["layer2: 16 nodes · N×128×28×28 · 525,568 params"]' in text
