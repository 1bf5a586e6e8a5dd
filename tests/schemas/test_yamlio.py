"""The one YAML loader (``schemas/yamlio.py``): JSON's types only, int64 integers, bounded depth and expansion."""

from __future__ import annotations

import tracemalloc

import pytest

from lrserve.schemas.errors import InvalidInput, SpecInvalid
from lrserve.schemas.limits import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES
from lrserve.schemas.validation import load_spec_text
from lrserve.schemas.yamlio import load_yaml


def billion_laughs(levels: int = 8) -> str:
    """``levels`` levels of nine aliases each: 9**levels leaves from a few hundred characters."""
    lines = ["a: &a [lol]"]
    for i in range(1, levels + 1):
        prev = "a" if i == 1 else f"a{i - 1}"
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _refused(text: str, *fragments: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load_yaml(text, loc=("text",))
    for fragment in fragments:
        assert fragment in info.value.detail, info.value.detail
    assert info.value.errors and info.value.errors[0].loc == ("text",)
    return info.value


def test_json_and_plain_yaml_load() -> None:
    assert load_yaml('{"a": [1, 2.5, true, null, "x"]}') == {"a": [1, 2.5, True, None, "x"]}
    assert load_yaml("a: 1e-3\nb: -9223372036854775808\n") == {"a": "1e-3", "b": -(2**63)}
    assert load_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n") == {"base": {"x": 1}, "other": {"x": 1, "y": 2}}
    assert load_yaml("") is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("!!set {a, b}", "!!set"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("x: 2001-12-14", "!!timestamp"),
        ("x: !!omap [{a: 1}]", "!!omap"),
        ("x: !custom 1", "!custom"),
        ("x: !!python/object:os.system ls", "python/object"),
    ],
)
def test_tags_beyond_json_are_refused_with_their_line(text: str, fragment: str) -> None:
    error = _refused("ok: 1\nx: " + text.removeprefix("x: "), fragment, "line 2")
    assert "not allowed" in error.detail


@pytest.mark.parametrize(
    "text",
    ["x: 99999999999999999999999", "x: 9223372036854775808", "x: -9223372036854775809", "x: " + "9" * 5000,
     "x: 0x" + "f" * 30],
)  # fmt: skip
def test_integers_outside_int64_are_refused(text: str) -> None:
    _refused(text, "outside int64", "line 1")


def test_depth_is_bounded() -> None:
    _refused("[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1), "MAX_YAML_DEPTH")
    deep = "[" * 100_000 + "]" * 100_000  # would exhaust the composer's recursion
    _refused(deep, "MAX_YAML_DEPTH")
    assert load_yaml("[" * 10 + "]" * 10) == [[[[[[[[[[]]]]]]]]]]


def test_size_is_bounded() -> None:
    _refused("x" * (MAX_YAML_BYTES + 1), "MAX_YAML_BYTES")


def test_recursive_aliases_are_refused() -> None:
    _refused("&a [*a]", "recursive")


def test_the_alias_bomb_is_refused_before_it_is_built() -> None:
    text = billion_laughs(8)
    assert len(text) < 420  # 9**8 = 43 million strings once expanded
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput) as info:
            load_yaml(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "MAX_YAML_NODES" in info.value.detail and str(MAX_YAML_NODES) in info.value.detail
    assert peak < 50 * 2**20


def test_small_alias_use_is_fine() -> None:
    assert load_yaml(billion_laughs(2))["a2"] == [[["lol"]] * 9] * 9


def test_spec_text_uses_the_loader() -> None:
    with pytest.raises(SpecInvalid, match="MAX_YAML_NODES"):
        load_spec_text(billion_laughs(8))
    with pytest.raises(SpecInvalid, match="outside int64"):
        load_spec_text("schedule: {type: StepLR, step_size: 99999999999999999999999}")
