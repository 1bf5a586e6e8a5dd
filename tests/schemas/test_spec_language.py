"""The spec language as documents: the exported JSON Schema, YAML/JSON text, and round trips."""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrserve.schemas import RunSpec, load_spec_text, parse_spec, schedule_type_names
from lrserve.schemas.errors import SpecInvalid
from tests.schemas import strategies as torch_st
from tests.schemas import strategies_keras as keras_st
from tests.schemas.strategies_plateau import keras_plateau, torch_plateau

SCHEMA = RunSpec.model_json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

KERAS_SCHEDULES = [
    keras_st.exponential_decay(),
    keras_st.piecewise_constant_decay(),
    keras_st.polynomial_decay(),
    keras_st.inverse_time_decay(),
    keras_st.cosine_decay(),
    keras_st.cosine_decay_restarts(),
    keras_st.linear_cosine_decay(),
    keras_st.linear_cosine_decay(noisy=True),
    keras_st.caffe_spec(),
    keras_st.range_test_spec(),
]


@st.composite
def any_run_spec(draw: st.DrawFn) -> dict[str, Any]:
    """A valid RunSpec mapping in any dialect, with or without a plateau block (torch or Keras rules)."""
    if draw(st.booleans()):
        spec = draw(torch_st.run_specs(draw(st.sampled_from(sorted(torch_st.SCHEDULES)))))
    else:
        n = draw(st.integers(1, 3))
        spec = {"param_groups": [{"name": f"g{i}"} for i in range(n)], "schedule": draw(st.one_of(KERAS_SCHEDULES))}
    n = len(spec["param_groups"])
    plateau = draw(st.sampled_from([None, "torch", "keras"]))
    if plateau == "torch":
        spec["plateau"] = {"metric": "val_loss", **draw(torch_plateau(n))}
    elif plateau == "keras":
        spec["plateau"] = {"style": "keras", "monitor": "val_loss", **draw(keras_plateau())}
    return spec


ROUND_TRIP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_json_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA
    assert set(SCHEMA["properties"]) == {"param_groups", "schedule", "plateau"}
    assert SCHEMA["additionalProperties"] is False


def test_json_schema_lists_every_schedule_type() -> None:
    consts = {
        d["properties"]["type"].get("const")
        for d in SCHEMA["$defs"].values()
        if isinstance(d.get("properties", {}).get("type"), dict)
    }
    assert set(schedule_type_names()) <= consts


def test_json_schema_carries_the_field_descriptions() -> None:
    plateau = SCHEMA["$defs"]["PlateauSpec"]["properties"]
    assert "monitor" in plateau  # Keras' name is part of the documented language, not only an alias
    assert all(p.get("description") for p in plateau.values())


@ROUND_TRIP
@given(any_run_spec())
def test_specs_valid_for_pydantic_are_valid_for_the_schema(data: dict[str, Any]) -> None:
    spec = parse_spec(data)
    VALIDATOR.validate(data)
    VALIDATOR.validate(spec.model_dump(mode="json"))


@pytest.mark.parametrize(
    "data",
    [
        {"schedule": {"type": "Nope"}},
        {"schedule": {"type": "StepLR", "step_size": 2, "stepsize": 2}},
        {"schedule": {"type": "StepLR", "step_size": 2}, "foo": 1},
        {"schedule": {"type": "StepLR", "step_size": 0}},
        {"schedule": {"type": "StepLR", "step_size": 2}, "plateau": {"mode": "sideways"}},
    ],
)
def test_what_the_schema_can_express_it_refuses_too(data: dict[str, Any]) -> None:
    with pytest.raises(SpecInvalid):
        parse_spec(data)
    assert not VALIDATOR.is_valid(data)


@ROUND_TRIP
@given(any_run_spec())
def test_round_trips_through_json_and_yaml(data: dict[str, Any]) -> None:
    spec = parse_spec(data)
    dumped = spec.model_dump(mode="json")
    assert parse_spec(dumped) == spec
    assert load_spec_text(spec.model_dump_json()) == spec
    assert load_spec_text(yaml.safe_dump(dumped)) == spec
    assert parse_spec(json.loads(json.dumps(data))) == spec


YAML = """
param_groups:
  - {name: backbone, lr: 0.01}
  - {name: head, lr: 0.1}
schedule:
  type: OneCycleLR
  max_lr: [0.1, 1.0]
  total_steps: 10000
plateau: {style: keras, monitor: val_accuracy, factor: 0.5, patience: 3}
"""


def test_yaml_text_loads() -> None:
    spec = load_spec_text(YAML)
    assert spec.group_names == ["backbone", "head"]
    assert spec.plateau is not None
    assert (spec.plateau.metric, spec.plateau.resolved_mode) == ("val_accuracy", "max")
    assert load_spec_text(json.dumps(yaml.safe_load(YAML))) == spec  # JSON is YAML


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("param_groups: [{name: a, lr: .nan}]\nschedule: {type: StepLR, step_size: 2}", "param_groups.0.lr", "finite"),
        ("param_groups: [{name: a, lr: 0.1}]\nschedule: {type: StepLR, step_size: 2, gamma: .inf}", "schedule.gamma",
         "finite"),
        ("- 1\n- 2", "", "valid dictionary"),
        ("", "", "valid dictionary"),
    ],
)  # fmt: skip
def test_yaml_errors_name_the_field(text: str, path: str, fragment: str) -> None:
    with pytest.raises(SpecInvalid) as info:
        load_spec_text(text)
    assert any(e.path() == path and fragment in e.msg for e in info.value.errors), info.value.errors


def test_text_that_is_not_yaml_is_refused() -> None:
    with pytest.raises(SpecInvalid, match="not valid YAML/JSON"):
        load_spec_text("schedule: {type: StepLR, step_size: [")


def test_nan_survives_nowhere() -> None:
    """JSON has no NaN: the dump of a valid spec never holds one, so any JSON encoder can carry it."""
    spec = parse_spec({"param_groups": [{"name": "a", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 2}})
    text = spec.model_dump_json()
    assert "NaN" not in text
    assert not any(isinstance(v, float) and math.isnan(v) for v in json.loads(text)["param_groups"][0].values())
