"""Every flag of every command has help text, and `specc completion` completes every command and flag:
both found by walking the argparse parser, so commands added later are covered."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from cli.main import build_parser, main
from cli.completion import commands, script, walk

TREE = commands(walk(build_parser()))


def test_every_option_has_help():
    missing = [f"specc {' '.join(c.path)} {'/'.join(a.option_strings)}" for c in TREE for a in c.options
               if not (a.help or "").strip()]
    assert not missing, "options without help text: " + ", ".join(missing)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_names_every_command_and_flag(shell, capsys):
    assert main(["completion", shell]) == 0
    text = capsys.readouterr().out
    for c in TREE:
        for name in c.subs:
            assert name in text, f"{shell}: command '{name}' missing"
        for a in c.options:
            for o in a.option_strings:
                want = o if shell != "fish" else (f"-l {o[2:]}" if o.startswith("--") else f"-s {o[1:]}")
                assert want in text, f"{shell}: {' '.join(c.path)} {o} missing"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("words,want,unwanted", [
    (["specc", "ch"], {"check"}, {"compile"}),
    (["specc", "weights", ""], {"convert"}, set()),
    (["specc", "weights", "convert", "w.pt", "--map-by", ""], {"name", "order", "shape"}, set()),
    (["specc", "weights", "convert", "w.pt", "--dr"], {"--dry-run"}, set()),
    (["specc", "check", "--"], {"--batch", "--json", "--set"}, {"--epochs"}),
    (["specc", "train", "x.yaml", "--ep"], {"--epochs"}, set()),
    (["specc", "init", "c"], {"classifier", "cnn"}, {"gnn"}),
])
def test_bash_completion_completes(tmp_path, words, want, unwanted):
    (tmp_path / "c.bash").write_text(script("bash"))
    prog = ('source c.bash; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _specc; '
            'printf "%s\\n" "${COMPREPLY[@]}"')
    res = subprocess.run(["bash", "-c", prog, "bash", *words], cwd=tmp_path, capture_output=True, text=True,
                         timeout=20)
    got = set(res.stdout.split())
    assert res.returncode == 0 and want <= got and not (unwanted & got), (res.stdout, res.stderr)
