"""``lrserve validate`` and ``lrserve preview``: no server, field paths, exit codes, PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lrserve.cli.preview import key_points
from lrserve.schemas import evaluate, load_spec_text
from tests.cli.conftest import Run

GOOD = """\
param_groups:
  - {name: backbone, lr: 0.01}
  - {name: head, lr: 0.1}
schedule: {type: OneCycleLR, max_lr: [0.1, 1.0], total_steps: 10000}
plateau: {metric: val_loss, mode: min, factor: 0.1, patience: 10}
"""
BAD = """\
param_groups:
  - {name: backbone, lr: -0.01}
schedule: {type: OneCycleLR, max_lr: [0.1, 1.0], total_steps: 0}
"""
STEPS = """\
param_groups: [{name: all, lr: 0.1}]
schedule: {type: MultiStepLR, milestones: [300, 600], gamma: 0.1}
"""

Write = Callable[[str, str], str]


def test_validate_a_good_spec(lrserve: Run, write: Write) -> None:
    result = lrserve("validate", write("good.yaml", GOOD))
    assert result.exit_code == 0
    assert "✓" in result.stdout
    assert "OneCycleLR, 2 param group(s) (backbone, head), 10,000 steps, plateau on val_loss" in result.stdout


def test_validate_lists_every_error_with_its_path_and_exits_1(lrserve: Run, write: Write) -> None:
    result = lrserve("validate", write("good.yaml", GOOD), write("bad.yaml", BAD))
    assert result.exit_code == 1
    assert "bad.yaml: invalid spec (2 error(s))" in result.stdout
    assert "param_groups.0.lr" in result.stdout
    assert "schedule.total_steps" in result.stdout
    assert "greater than 0" in result.stdout


def test_validate_json_for_scripts(lrserve: Run, write: Write) -> None:
    result = lrserve("validate", "--json", write("good.yaml", GOOD), write("bad.yaml", BAD))
    assert result.exit_code == 1
    good, bad = json.loads(result.stdout)
    assert good["valid"] is True
    assert good["total_steps"] == 10000
    assert [e["path"] for e in bad["errors"]] == ["param_groups.0.lr", "schedule.total_steps"]


def test_validate_syntax_errors_wrapped_specs_stdin_and_missing_files(lrserve: Run, write: Write) -> None:
    syntax = lrserve("validate", write("syntax.yaml", "schedule: {type: StepLR, step_size: 10\n"))
    assert syntax.exit_code == 1
    assert "not valid YAML/JSON: line 2" in syntax.stdout
    body = json.dumps({"spec": {"schedule": {"type": "StepLR", "step_size": 0}}, "labels": {}})
    wrapped = lrserve("validate", write("body.json", body))
    assert wrapped.exit_code == 1
    assert "spec.schedule.step_size" in wrapped.stdout
    piped = lrserve("validate", "-", input=GOOD)
    assert piped.exit_code == 0
    assert "✓ -:" in piped.stdout
    empty = lrserve("validate", write("empty.yaml", ""))
    assert empty.exit_code == 1
    missing = lrserve("validate", "does-not-exist.yaml")
    assert missing.exit_code == 2
    assert "cannot read does-not-exist.yaml" in missing.stderr


def test_preview_table_and_terminal_plot(lrserve: Run, write: Write) -> None:
    result = lrserve("preview", write("steps.yaml", STEPS), "--steps", "1000")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "MultiStepLR, 1 param group(s), steps 0..999" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert "jump ×0.1" in rows["300"]
    assert "jump ×0.1" in rows["600"]
    assert "0.01" in rows["300"]
    assert "start" in rows["0"]
    assert "end" in rows["999"]
    assert any("\u2800" < ch <= "\u28ff" for ch in out)  # braille dots of the plot
    assert "(log y)" in out


def test_preview_json_key_points_match_the_core(lrserve: Run, write: Write) -> None:
    result = lrserve("preview", write("good.yaml", GOOD), "--json", "--steps", "5000")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    spec = load_spec_text(GOOD)
    steps = [p["step"] for p in data["key_points"]]
    expected = evaluate(spec, np.array(steps))
    np.testing.assert_allclose([p["lr"] for p in data["key_points"]], expected.T)
    assert data["key_points"][0]["momentum"] == [0.95, 0.95]
    assert any("peak" in p["note"] for p in data["key_points"])


def test_preview_simulates_plateau_metrics(lrserve: Run, write: Write) -> None:
    spec = "param_groups: [{name: g, lr: 1.0}]\nschedule: {type: ExponentialLR, gamma: 1.0}\n"
    spec += "plateau: {metric: loss, factor: 0.5, patience: 0}\n"
    result = lrserve("preview", write("p.yaml", spec), "-n", "100", "-m", "10:1.0", "-m", "20:2.0", "--json")
    assert result.exit_code == 0
    points = {p["step"]: p["lr"][0] for p in json.loads(result.stdout)["key_points"]}
    assert points[0] == 1.0
    assert points[99] == 0.5
    bad = lrserve("preview", write("p2.yaml", spec), "-m", "ten")
    assert bad.exit_code == 2
    assert "STEP:VALUE" in bad.stderr


def test_preview_of_an_invalid_spec_exits_1_with_paths(lrserve: Run, write: Write) -> None:
    result = lrserve("preview", write("bad.yaml", BAD))
    assert result.exit_code == 1
    assert "invalid spec" in result.stderr
    assert "schedule.total_steps: Input should be greater than 0" in result.stderr


def test_preview_png(lrserve: Run, write: Write, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    result = lrserve("preview", write("good.yaml", GOOD), "--png", str(png), "--no-plot")
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_preview_png_without_matplotlib_says_how_to_get_it(
    lrserve: Run, write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = lrserve("preview", write("good.yaml", GOOD), "--png", str(tmp_path / "x.png"))
    assert result.exit_code == 2
    assert "pip install 'lrserve[plot]'" in result.stderr


def test_key_points_pick_edges_extremes_and_isolated_jumps() -> None:
    values = np.concatenate([np.full(50, 1.0), np.full(50, 0.1)])[None, :]
    picked = dict(key_points(values))
    assert picked[0] == "start"
    assert picked[99] == "end"
    assert picked[50] == "lowest, jump ×0.1"
    smooth = np.cos(np.linspace(0, np.pi / 2, 200))[None, :]  # steep at the end, but no jump
    assert not any("jump" in note for _, note in key_points(smooth))


def test_the_real_command_fails_without_a_traceback(write: Write) -> None:
    """The installed entry point, as a user runs it."""
    command = [sys.executable, "-m", "lrserve.cli.main"]
    bad = subprocess.run([*command, "validate", write("bad.yaml", BAD)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "schedule.total_steps" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr
