"""The lr_lambda sandbox: parity with Python's own evaluation, and an escape corpus that must be refused."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrserve.schemas.core.expression import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_NODES,
    check_expression,
    compile_expression,
)
from lrserve.schemas.errors import ExpressionError, InvalidInput

STEPS = np.concatenate([np.arange(0, 3000), np.array([10_000, 65_536, 1_000_003, 2**31 + 7, 2**40])])

# (expression, the lambda a torch user would write for it)
PARITY: list[tuple[str, Callable[[int], Any]]] = [
    ("0.95 ** (step // 10)", lambda step: 0.95 ** (step // 10)),
    ("0.95 ** epoch", lambda epoch: 0.95**epoch),
    (
        "min(1, (step+1)/500) * 0.5 * (1 + cos(pi * step / 10000))",
        lambda step: min(1, (step + 1) / 500) * 0.5 * (1 + math.cos(math.pi * step / 10000)),
    ),
    (
        "0.5 * (1 + math.cos(math.pi * epoch / 100))",
        lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / 100)),
    ),
    ("1.0 if step < 100 else 0.1", lambda step: 1.0 if step < 100 else 0.1),
    (
        "(step + 1) / 100 if step < 100 else 0.1 ** (step // 1000)",
        lambda step: (step + 1) / 100 if step < 100 else 0.1 ** (step // 1000),
    ),
    ("max(0, 1 - step / 1000) ** 0.9", lambda step: max(0, 1 - step / 1000) ** 0.9),
    ("1 - step / 1000", lambda step: 1 - step / 1000),
    ("step % 3 / 2 + step // 7 % 5", lambda step: step % 3 / 2 + step // 7 % 5),
    ("1 / sqrt(max(step, 1000))", lambda step: 1 / math.sqrt(max(step, 1000))),
    (
        "min(1.0, step / 500) * 1000 ** 0.5 / sqrt(max(step, 500))",
        lambda step: min(1.0, step / 500) * 1000**0.5 / math.sqrt(max(step, 500)),
    ),
    ("exp(-step / 2000)", lambda step: math.exp(-step / 2000)),
    ("log(step + 2) / log(2)", lambda step: math.log(step + 2) / math.log(2)),
    (
        "log(step + 2, 10) + log2(step + 1) + log10(step + 1)",
        lambda step: math.log(step + 2, 10) + math.log2(step + 1) + math.log10(step + 1),
    ),
    (
        "tanh(step / 300) + sin(step) * tan(0.1)",
        lambda step: math.tanh(step / 300) + math.sin(step) * math.tan(0.1),
    ),
    ("floor(step / 3) * 0.5 + ceil(step / 7)", lambda step: math.floor(step / 3) * 0.5 + math.ceil(step / 7)),
    ("abs(500 - step) / 500", lambda step: abs(500 - step) / 500),
    ("pow(0.5, step // 100) + math.pow(2, -1)", lambda step: pow(0.5, step // 100) + math.pow(2, -1)),
    ("2 ** -1 + 2 ** (-(step % 4))", lambda step: 2**-1 + 2 ** (-(step % 4))),
    ("(step < 10) * 2 + (step >= 10) * 0.5", lambda step: (step < 10) * 2 + (step >= 10) * 0.5),
    ("1 if 10 <= step < 20 else 0.5", lambda step: 1 if 10 <= step < 20 else 0.5),
    ("1 if step == 0 or step == 5 else 0.25", lambda step: 1 if step == 0 or step == 5 else 0.25),
    ("step % 2 and 0.5 or 2", lambda step: (step % 2 and 0.5) or 2),
    ("(step % 3 or 7) + (step % 5 and 11)", lambda step: (step % 3 or 7) + (step % 5 and 11)),
    ("1 if not step % 10 else 0.5", lambda step: 1 if not step % 10 else 0.5),
    (
        "min(1, 2, step, 0.5 * step) + max(step, 3, -1)",
        lambda step: min(1, 2, step, 0.5 * step) + max(step, 3, -1),
    ),
    ("1 / step if step > 0 else 1", lambda step: 1 / step if step > 0 else 1),
    ("True + False * step + 1e-3", lambda step: True + False * step + 1e-3),
    ("-(-step) + +step - 1.5e2", lambda step: -(0 - step) + +step - 1.5e2),
    ("0x10 + 0o7 + 0b11 + 1_000", lambda step: 0x10 + 0o7 + 0b11 + 1_000),
    ("min(1, 10 ** 400)", lambda step: min(1, 10**400)),
    ("step % 7.5 + step // 0.1", lambda step: step % 7.5 + step // 0.1),
    ("e ** (-step / 1e4) * math.e", lambda step: math.e ** (-step / 1e4) * math.e),
]


def _python_values(fn: Callable[[int], Any], steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Python's value at each step, and a mask of the steps where Python gives a finite real number."""
    out = np.zeros(steps.shape[0])
    ok = np.zeros(steps.shape[0], dtype=bool)
    for i, s in enumerate(steps.tolist()):
        try:
            v = fn(s)
        except (ArithmeticError, ValueError):
            continue
        if isinstance(v, complex):
            continue
        v = float(v)
        if math.isfinite(v):
            out[i], ok[i] = v, True
    return out, ok


@pytest.mark.parametrize(("text", "fn"), PARITY, ids=[t for t, _ in PARITY])
def test_parity_with_python_lambda(text: str, fn: Callable[[int], Any]) -> None:
    expected, ok = _python_values(fn, STEPS)
    assert ok.any()
    got = compile_expression(text)(STEPS[ok])
    assert got.dtype == np.float64
    assert got.shape == (int(ok.sum()),)
    # Transcendental functions and ** are numpy's: within a few ulps of Python's math.
    np.testing.assert_allclose(got, expected[ok], rtol=1e-13, atol=0)


EXACT_PARITY = [
    ("step % 3 / 2 + step // 7 % 5", lambda step: step % 3 / 2 + step // 7 % 5),
    ("(step * step) // 9 - step * 3 % 11", lambda step: (step * step) // 9 - step * 3 % 11),
    ("step / 3", lambda step: step / 3),
    ("step % 7.5 + step // 0.1", lambda step: step % 7.5 + step // 0.1),
    ("1 if 10 <= step < 20 else (step or 4) / 9", lambda step: 1 if 10 <= step < 20 else (step or 4) / 9),
]


@pytest.mark.parametrize(("text", "fn"), EXACT_PARITY, ids=[t for t, _ in EXACT_PARITY])
def test_integer_semantics_are_exact(text: str, fn: Callable[[int], Any]) -> None:
    """Without transcendental functions the values are bit-for-bit Python's (int steps below 2**53)."""
    steps = np.concatenate([np.arange(0, 5000), np.array([2**31 - 1, 2**40 + 3, 2**52 - 1])])
    expected = np.array([float(fn(s)) for s in steps.tolist()])
    assert compile_expression(text)(steps).tolist() == expected.tolist()


# Random expressions: each strategy draws (text, python function) built side by side from the same tree, so
# the Python side is plain Python arithmetic, never eval. "Exact" expressions use only operations that are
# correctly rounded in IEEE arithmetic (so numpy must agree bit for bit); "smooth" ones add the transcendental
# functions and ** on top, compared to within a few ulps.


class _SkipError(Exception):
    """An integer intermediate beyond 2**53: Python's exact bignum and float64 legitimately part ways."""


def _int_guard(v: Any) -> Any:
    if isinstance(v, int) and abs(v) > 2**53:
        raise _SkipError
    return v


Expr = tuple[str, Callable[[int], Any]]

_leaf: st.SearchStrategy[Expr] = st.one_of(
    st.sampled_from([("step", lambda s: s), ("epoch", lambda s: s)]),
    st.integers(0, 50).map(lambda n: (str(n), lambda s, n=n: n)),
    st.sampled_from([0.5, 0.1, 2.5, 1e-3, 7.25]).map(lambda f: (repr(f), lambda s, f=f: f)),
)

_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
}
_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _exact_nodes(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    def binop(op: str, a: Expr, b: Expr) -> Expr:
        f = _ARITH[op]
        return f"({a[0]} {op} {b[0]})", lambda s: _int_guard(f(a[1](s), b[1](s)))

    def cmp(op: str, a: Expr, b: Expr) -> Expr:
        f = _CMP[op]
        return f"({a[0]} {op} {b[0]})", lambda s: f(a[1](s), b[1](s))

    def ifexp(a: Expr, c: Expr, b: Expr) -> Expr:
        return f"({a[0]} if {c[0]} else {b[0]})", lambda s: a[1](s) if c[1](s) else b[1](s)

    def boolop(op: str, a: Expr, b: Expr) -> Expr:
        if op == "and":
            return f"({a[0]} and {b[0]})", lambda s: a[1](s) and b[1](s)
        return f"({a[0]} or {b[0]})", lambda s: a[1](s) or b[1](s)

    def call(name: str, args: list[Expr]) -> Expr:
        fn: Callable[..., Any] = {"min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil}[name]
        return f"{name}({', '.join(a[0] for a in args)})", lambda s: _int_guard(fn(*(a[1](s) for a in args)))

    return st.one_of(
        st.builds(binop, st.sampled_from(sorted(_ARITH)), children, children),
        st.builds(cmp, st.sampled_from(sorted(_CMP)), children, children),
        st.builds(ifexp, children, children, children),
        st.builds(boolop, st.sampled_from(["and", "or"]), children, children),
        st.builds(call, st.sampled_from(["min", "max"]), st.lists(children, min_size=2, max_size=3)),
        st.builds(call, st.sampled_from(["abs", "floor", "ceil"]), st.lists(children, min_size=1, max_size=1)),
        children.map(lambda a: (f"(-{a[0]})", lambda s: -a[1](s))),
        children.map(lambda a: (f"(not {a[0]})", lambda s: not a[1](s))),
    )


exact_expressions = st.recursive(_leaf, _exact_nodes, max_leaves=8)

_SMOOTH: dict[str, Callable[[float], float]] = {
    "sin": math.sin,
    "cos": math.cos,
    "tanh": math.tanh,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
}


def _smooth(name: str, inner: Expr, outer: Expr) -> Expr:
    f = _SMOOTH[name]
    return f"({outer[0]}) * {name}({inner[0]})", lambda s: outer[1](s) * f(inner[1](s))


def _power(base: Expr, exponent: float, outer: Expr) -> Expr:
    return f"({outer[0]}) * ({base[0]}) ** {exponent!r}", lambda s: outer[1](s) * base[1](s) ** exponent


smooth_expressions = st.one_of(
    st.builds(_smooth, st.sampled_from(sorted(_SMOOTH)), exact_expressions, exact_expressions),
    st.builds(_power, exact_expressions, st.sampled_from([-1.5, -1.0, 0.5, 0.9, 2.0, 3.0]), exact_expressions),
)

HYP_STEPS = np.array([0, 1, 2, 3, 5, 7, 10, 11, 99, 100, 101, 997, 1000, 4096, 12345, 10**6 + 1])


def _check_random(text: str, fn: Callable[[int], Any], exact: bool) -> None:
    def guarded(s: int) -> Any:
        try:
            return fn(s)
        except _SkipError:
            return math.nan

    expected, ok = _python_values(guarded, HYP_STEPS)
    if not ok.any():
        return
    got = compile_expression(text)(HYP_STEPS[ok])
    if exact:
        assert got.tolist() == expected[ok].tolist(), text
    else:
        np.testing.assert_allclose(got, expected[ok], rtol=1e-12, atol=0, err_msg=text)


@settings(max_examples=400, deadline=None)
@given(exact_expressions)
def test_random_exact_expressions_match_python(expr: Expr) -> None:
    _check_random(expr[0], expr[1], exact=True)


@settings(max_examples=300, deadline=None)
@given(smooth_expressions)
def test_random_smooth_expressions_match_python(expr: Expr) -> None:
    _check_random(expr[0], expr[1], exact=False)


def test_constant_expression_broadcasts_and_returns_a_fresh_array() -> None:
    fn = compile_expression("0.5")
    steps = np.arange(4, dtype=np.int64)
    out = fn(steps)
    assert out.tolist() == [0.5] * 4
    out[0] = 9.0  # writable, not a broadcast view
    assert fn(steps).tolist() == [0.5] * 4
    assert fn(np.array([], dtype=np.int64)).shape == (0,)


def test_compiled_functions_are_cached_by_text() -> None:
    assert compile_expression("step * 0.5") is compile_expression("step * 0.5")


@pytest.mark.parametrize(
    ("text", "bad_step"),
    [("1 / step", 0), ("log(step)", 0), ("1 / (step - 5)", 5), ("exp(step)", 710), ("sqrt(100 - step)", 101)],
)
def test_non_finite_values_raise_naming_the_step(text: str, bad_step: int) -> None:
    fn = compile_expression(text)
    fn(np.arange(bad_step))
    with pytest.raises(ExpressionError, match=f"at step {bad_step}") as info:
        fn(np.arange(bad_step + 3))
    assert info.value.extra["step"] == bad_step
    assert isinstance(info.value, InvalidInput)


def test_comments_and_line_breaks_are_harmless() -> None:
    assert compile_expression("(step\n * 2)  # twice")(np.array([3])).tolist() == [6.0]


def test_negative_values_pass_through_as_in_torch() -> None:
    assert compile_expression("1 - step / 1000")(np.array([2000])).tolist() == [-1.0]


def test_check_expression_probes_step_zero_by_default() -> None:
    assert check_expression("0.95 ** step") == "0.95 ** step"
    with pytest.raises(ValueError, match="at step 0"):
        check_expression("1 / step")
    # MultiplicativeLR calls its lambda from step 1 on.
    assert check_expression("1 / step", probe=(1,)) == "1 / step"
    assert check_expression("1 / step", probe=()) == "1 / step"


def test_bounds_are_enforced_before_anything_runs() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        compile_expression("1" + " " * MAX_LENGTH)
    terms = " + ".join(["min(step, 1)"] * 60)
    assert len(terms) < MAX_LENGTH
    with pytest.raises(ExpressionError, match="too large"):
        compile_expression(terms)
    with pytest.raises(ExpressionError, match="nested deeper"):
        compile_expression("-" * (MAX_DEPTH + 5) + "step")
    # Realistic expressions are far inside the bounds.
    compile_expression("+".join(["1"] * (MAX_DEPTH // 2)))
    assert MAX_NODES >= 100


ESCAPES = [
    "__import__('os')",
    "__import__('os').system('touch PWNED')",
    "().__class__.__bases__",
    "().__class__.__bases__[0].__subclasses__()",
    "step.__class__",
    "(1).__class__",
    "math.__dict__",
    "math.sys",
    "math.cos.__globals__",
    "[x for x in ()]",
    "{x for x in ()}",
    "{x: 1 for x in ()}",
    "sum(x for x in range(10))",
    "lambda: 1",
    "(lambda: 1)()",
    "lambda step: step",
    "open('PWNED', 'w')",
    "globals()",
    "locals()",
    "vars()",
    "exec('1')",
    "eval('1')",
    "compile('1', 'x', 'eval')",
    "getattr(step, 'real')",
    "breakpoint()",
    "input()",
    "print(1)",
    "9**9**9",
    "10 ** 100000",
    "2 ** -100000",
    "(" * 500 + "1" + ")" * 500,
    "-" * 5000 + "1",
    "1" + "+1" * 5000,
    "step + " * 2000 + "1",
    'f"{step}"',
    "f'{().__class__}'",
    "(x := 1)",
    "*a",
    "min(*[1, 2])",
    "min(**{})",
    "step[0]",
    "step[0:1]",
    '"a" * 10**9',
    "b'a'",
    "'a'",
    "[1, 2]",
    "(1, 2)",
    "{1: 2}",
    "{1}",
    "...",
    "None",
    "1j",
    "1e999",
    "1" + "0" * 400,
    "step @ step",
    "step << 100000",
    "step | 1",
    "~step",
    "step is 1",
    "step in step",
    "x",
    "cos",
    "math",
    "cos(1, 2)",
    "pow(2, 3, 5)",
    "cos(x=1)",
    "min()",
    "log()",
    "round(step)",
    "int(step)",
    "float('nan')",
    "await step",
    "(yield)",
    "step if",
    "import os",
    "step = 1",
    "1; 2",
    "",
    "   ",
    "\x00",
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ESCAPES, ids=[repr(t)[:40] for t in ESCAPES])
def test_escape_corpus_is_refused(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExpressionError):
        compile_expression(text)(np.arange(10))
    with pytest.raises(ValueError, match=r"\S"):
        check_expression(text)
    assert os.listdir(tmp_path) == []


@pytest.mark.timeout(10)
def test_tower_of_powers_is_inf_not_a_bignum() -> None:
    """``step ** step ** step`` is legal text; it is float64 work, so step 5 gives inf and an error, fast."""
    fn = compile_expression("step ** step ** step")
    assert fn(np.arange(4)).tolist() == [0.0, 1.0, 16.0, 3.0**27]
    with pytest.raises(ExpressionError, match="at step 5"):
        fn(np.arange(10**6))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("step.__class__", "attribute access"),
        ("step[0]", "subscripts"),
        ("lambda epoch: 0.9 ** epoch", "give only its body"),
        ("[x for x in ()]", "comprehensions"),
        ("open('x')", "unknown function 'open'"),
        ("cos(x=1)", "keyword arguments"),
        ("'a'", "strings"),
        ('f"{step}"', "f-strings"),
        ("(x := 1)", "assignment expressions"),
        ("min(*a)", "starred"),
        ("x + 1", "unknown name 'x'"),
        ("step & 1", "'&'"),
        ("step in step", "'in'"),
        ("2 ** 20000", "exponent"),
        ("math.foo", "math.foo not allowed"),
        ("math.pi()", "constant, not a function"),
        ("math.cos", "is a function"),
        ("1e999", "too large"),
        ("None", "numbers only"),
        ("step +", "not a Python expression"),
    ],
)
def test_refusals_name_the_construct(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=None) as info:
        compile_expression(text)
    assert fragment in info.value.detail
