"""The README's commands and examples run, and its printed output matches what the code prints."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from edgesim.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    """The README's fenced code blocks whose info string is ``lang`` ("" for none)."""
    out, current, info = [], None, ""
    for line in README.splitlines():
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    out.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return out


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    first = _blocks("bash")[0].strip().splitlines()
    assert len(first) == 2
    assert first[0].endswith("edgesim run npu_small --model sigmab_r50")
    assert " -e " not in first[0]           # a normal install, not an editable one
    ci = (ROOT / ".ci" / "run").read_text()
    assert first[1] in ci


def test_every_edgesim_command_in_the_readme_parses():
    # every `edgesim ...` command in a table or text is a valid command line (no stale flags)
    commands = re.findall(r"`(?:python -m )?edgesim ((?:run|sweep|plot|models|configs|trace|"
                          r"finetune)\b[^`]*)`", README)
    assert len(commands) >= 8
    parser = build_parser()
    parsed = 0
    for cmd in commands:
        args = [a for a in shlex.split(cmd.replace("\\|", "|")) if "|" not in a]
        if any(a.startswith(("[", "...")) for a in args) or "CONFIG" in args:
            continue  # a usage synopsis, not a concrete command
        parser.parse_args(args)
        parsed += 1
    assert parsed >= 4


@pytest.mark.slow
def test_main_command_prints_what_the_readme_shows(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    shown = next(b for b in _blocks("") if b.startswith("# sigmab_r50")).splitlines()
    assert main(["run", "npu_small", "--model", "sigmab_r50"]) == 0
    printed = capsys.readouterr().out.splitlines()
    cols = next(i for i, line in enumerate(printed) if line.startswith("input"))
    # the header (model, params, stored bytes, config, stream) and the columns
    assert printed[:cols + 1] == shown[:cols + 1]
    # one row per input, each taking the README's path (seeded routing) and moving that
    # path's weight bytes (the paths differ in size)
    rows, rows_shown = printed[cols + 1:cols + 9], shown[cols + 1:cols + 9]
    assert [r.split()[0] for r in rows] == [str(i) for i in range(8)]
    assert [r.split()[1:3] for r in rows] == [r.split()[1:3] for r in rows_shown]


def test_the_readme_output_fits_a_terminal_and_cites_inside_the_repository():
    shown = next(b for b in _blocks("") if b.startswith("# sigmab_r50"))
    assert max(len(line) for line in shown.splitlines()) <= 100
    assert "../shared" not in README
    assert "REFERENCE.md" not in README
    assert (ROOT / "docs" / "references.md").is_file()
    assert "## Calibration" in README


@pytest.mark.slow
def test_python_api_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    code = _blocks("python")[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    r = scope["r"]
    assert len(r.inferences) == 16
    assert r.inferences.weight_dram_bytes.iloc[0] == r.model["stored_weight_bytes"]
