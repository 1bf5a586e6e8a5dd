"""``lrserve validate`` and ``preview`` at the edges: booleans, values infinite at a step, hostile YAML; never a
traceback (the ``lrserve`` fixture re-raises any exception a user would have seen as one)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.cli.conftest import Run

Write = Callable[[str, str], str]
GROUPS = "param_groups: [{name: all, lr: 0.1}]\n"


def _errors(lrserve: Run, path: str) -> list[dict[str, str]]:
    result = lrserve("validate", "--json", path)
    assert result.exit_code == 1, result.stdout
    report = json.loads(result.stdout)
    assert report[0]["valid"] is False
    errors: list[dict[str, str]] = report[0]["errors"]
    return errors


def test_validate_refuses_a_boolean_lr(lrserve: Run, write: Write) -> None:
    path = write("bool.yaml", "param_groups: [{name: all, lr: true}]\nschedule: {type: StepLR, step_size: 10}\n")
    errors = _errors(lrserve, path)
    assert [e["path"] for e in errors] == ["param_groups.0.lr"]
    assert "boolean" in errors[0]["msg"]
    human = lrserve("validate", path)
    assert human.exit_code == 1 and "✓" not in human.stdout


@pytest.mark.parametrize("field", ["gamma: true", "step_size: false"])
def test_validate_refuses_a_boolean_schedule_parameter(lrserve: Run, write: Write, field: str) -> None:
    path = write("bool.yaml", GROUPS + f"schedule: {{type: StepLR, step_size: 10, {field}}}\n")
    errors = _errors(lrserve, path)
    assert [e["path"] for e in errors] == [f"schedule.{field.split(':')[0]}"]


def test_validate_refuses_an_lr_infinite_at_step_5(lrserve: Run, write: Write) -> None:
    path = write("div0.yaml", GROUPS + "schedule: {type: LambdaLR, lr_lambda: '1/(step-5)'}\n")
    errors = _errors(lrserve, path)
    assert [e["path"] for e in errors] == ["schedule.lr_lambda"]
    assert "step 5" in errors[0]["msg"]


def test_preview_prints_the_error_instead_of_a_traceback(lrserve: Run, write: Write) -> None:
    path = write("div0.yaml", GROUPS + "schedule: {type: LambdaLR, lr_lambda: '1/(step-5)'}\n")
    result = lrserve("preview", path, "--steps", "10")
    assert result.exit_code == 1
    assert "schedule.lr_lambda" in result.stderr and "step 5" in result.stderr


def test_preview_past_the_check_grid_still_fails_cleanly(lrserve: Run, write: Write) -> None:
    # a scan is checked only up to the work bound: the infinity at step 5,000,000 lies beyond it
    path = write("far.yaml", GROUPS + "schedule: {type: MultiplicativeLR, lr_lambda: '1 + 1/(step-5000000)'}\n")
    assert lrserve("validate", path).exit_code == 0
    result = lrserve("preview", path, "--start", "4999990", "--steps", "20", "--no-plot")
    assert result.exit_code == 1
    assert "5000000" in result.stderr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("schedule: !!set {a, b}\n", "!!set"),
        ("x: 2001-12-14\n", "!!timestamp"),
        (GROUPS + "schedule: {type: StepLR, step_size: 99999999999999999999999}\n", "outside int64"),
        ('a: &a ["x"]\n' + "".join(f"a{i}: &a{i} [{','.join(['*a' if i == 1 else f'*a{i - 1}'] * 9)}]\n"
                                   for i in range(1, 9)), "MAX_YAML_NODES"),
    ],
)  # fmt: skip
def test_validate_refuses_hostile_yaml(lrserve: Run, write: Write, text: str, fragment: str) -> None:
    errors = _errors(lrserve, write("bad.yaml", text))
    assert fragment in errors[0]["msg"]
