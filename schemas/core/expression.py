"""Safe arithmetic expressions of ``step``: torch's ``lr_lambda`` written as text.

    >>> import numpy as np
    >>> f = compile_expression("0.95 ** (step // 10)")
    >>> f(np.array([0, 10, 25])).round(6).tolist()
    [1.0, 0.95, 0.9025]
    >>> compile_expression("1.0 if epoch < 2 else 0.1")(np.arange(4)).tolist()
    [1.0, 1.0, 0.1, 0.1]

The text is parsed once with ``ast.parse(mode="eval")``, every node is checked against a whitelist, and the
tree is compiled into nested numpy closures evaluated over the whole step array at once. User text is never
passed to ``eval``, ``exec`` or ``compile``.

Language (a Python expression, as the body of ``lambda step: ...``):

* names: ``step`` and its alias ``epoch`` (torch's ``LambdaLR`` calls ``lr_lambda(last_epoch)``, and the
  lambda's argument is conventionally called ``epoch``); the constants ``pi`` and ``e``;
* numbers (``True``/``False`` count as 1 and 0), ``+ - * / // % **``, unary ``-``/``+``, ``not``,
  comparisons ``< <= > >= == !=`` (chains included), ``and``/``or`` (Python's value semantics: ``a and b``
  gives ``a`` where ``a`` is 0, else ``b``), and ``a if cond else b``;
* functions ``sin cos tan tanh exp log log2 log10 sqrt floor ceil abs min max pow`` (``log(x, base)``;
  ``min``/``max`` of two or more values), also as ``math.cos``, ``math.pi``, ... so that a lambda's body
  pasted from Python works unchanged.

Everything else (attributes other than ``math.<name>``, subscripts, lambdas, comprehensions, keywords,
strings, containers, walrus, starred, bit operators, ``is``/``in``, unknown names) is refused with
``ExpressionError`` naming the construct. The work is bounded before anything runs: at most
``MAX_LENGTH`` characters, ``MAX_NODES`` expression nodes, nesting ``MAX_DEPTH`` deep, and literal
exponents of at most ``MAX_LITERAL_EXPONENT`` in magnitude.

Semantics. ``step`` enters as float64, so ``//``, ``%``, ``/`` and comparisons give exactly what Python's int
arithmetic gives for every integer intermediate below 2**53; ``**`` is computed in float64 (``2 ** -1`` is
0.5, ``9 ** 9 ** 9`` is inf, never a bignum). Transcendental functions and ``**`` are numpy's and may differ
from Python's ``math`` in the last bit or two. Where Python would raise (division by zero, a math domain
error, overflow, a complex power of a negative number) numpy gives inf or NaN instead; a branch that is not
taken (``1 / step if step > 0 else 1``) may hold such values harmlessly.

Non-finite results are never served: the compiled function raises ``ExpressionError`` naming the first step
whose value is inf or NaN. ``check_expression`` (for pydantic validators) also evaluates the expression at
``probe`` steps (step 0 by default: torch's ``LambdaLR`` calls the lambda at step 0 when it is built) so that
``1 / step`` or ``log(step)`` is refused when the spec is submitted, not when the LR is first asked for.
Negative values pass through unchanged, as in torch (``1 - step / 1000`` past step 1000); clip them in the
expression (``max(0, 1 - step / 1000)``) where the run may go on that long.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lrserve.schemas.core.schedule import Steps
from lrserve.schemas.errors import ExpressionError

FloatArray = npt.NDArray[np.float64]
ExpressionFn = Callable[[Steps], FloatArray]
# A compiled node: the step array (float64) -> a float64 array or scalar broadcastable to it.
_Node = Callable[[FloatArray], Any]

MAX_LENGTH = 1000
MAX_NODES = 200
MAX_DEPTH = 32
MAX_LITERAL_EXPONENT = 1e4

STEP_NAMES = ("step", "epoch")
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _py_min(*xs: Any) -> Any:
    # Python's min keeps the first of equals and compares with `<`: min(1, nan) is 1, min(nan, 1) is nan.
    out = xs[0]
    for x in xs[1:]:
        out = np.where(x < out, x, out)
    return out


def _py_max(*xs: Any) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = np.where(x > out, x, out)
    return out


def _log(x: Any, base: Any = None) -> Any:
    return np.log(x) if base is None else np.log(x) / np.log(base)


# name -> (fewest args, most args (None: any), implementation)
FUNCTIONS: dict[str, tuple[int, int | None, Callable[..., Any]]] = {
    "sin": (1, 1, np.sin),
    "cos": (1, 1, np.cos),
    "tan": (1, 1, np.tan),
    "tanh": (1, 1, np.tanh),
    "exp": (1, 1, np.exp),
    "log": (1, 2, _log),
    "log2": (1, 1, np.log2),
    "log10": (1, 1, np.log10),
    "sqrt": (1, 1, np.sqrt),
    "floor": (1, 1, np.floor),
    "ceil": (1, 1, np.ceil),
    "abs": (1, 1, np.abs),
    "pow": (2, 2, np.power),
    "min": (2, None, _py_min),
    "max": (2, None, _py_max),
}
# What `math.<name>` may name: the math module's own functions and constants (not the builtins min/max/abs).
MATH_NAMES = frozenset(FUNCTIONS) - {"min", "max", "abs"} | frozenset(CONSTANTS)

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
    ast.Pow: np.power,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_SYMBOLS: dict[type[ast.AST], str] = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
# Refused constructs, in words (anything not listed is refused under its AST class name).
_REFUSED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Slice: "slices",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.Starred: "starred arguments (*x)",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_LAMBDA_HINT = ": give only its body, e.g. '0.95 ** epoch' for 'lambda epoch: 0.95 ** epoch'"


def _truthy(value: Any) -> Any:
    # Python's truth of a number: non-zero (NaN included) is true.
    return np.not_equal(value, 0)


def _as_float(value: Any) -> Any:
    return np.asarray(value, dtype=np.float64)


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text

    def refuse(self, node: ast.AST, what: str, hint: str = "") -> ExpressionError:
        segment = ast.get_source_segment(self.text, node) or ""
        if len(segment) > 40:
            segment = segment[:37] + "..."
        col = getattr(node, "col_offset", None)
        where = f" (column {col + 1}: {segment!r})" if col is not None and segment else ""
        return ExpressionError(detail=f"{what}{where}{hint}")

    def node(self, node: ast.AST, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise self.refuse(node, f"expression nested deeper than {MAX_DEPTH} levels")
        d = depth + 1
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Attribute):
            value = CONSTANTS.get(self.math_member(node))
            if value is None:
                raise self.refuse(node, f"math.{node.attr} is a function; call it")
            return _const(value)
        if isinstance(node, ast.BinOp):
            return self.binop(node, d)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, d)
        if isinstance(node, ast.Compare):
            return self.compare(node, d)
        if isinstance(node, ast.BoolOp):
            return self.boolop(node, d)
        if isinstance(node, ast.IfExp):
            test, body, orelse = self.node(node.test, d), self.node(node.body, d), self.node(node.orelse, d)
            return lambda x: np.where(_truthy(test(x)), body(x), orelse(x))
        if isinstance(node, ast.Call):
            return self.call(node, d)
        what = _REFUSED.get(type(node), type(node).__name__)
        hint = _LAMBDA_HINT if isinstance(node, ast.Lambda) else ""
        raise self.refuse(node, f"{what} not allowed", hint)

    def constant(self, node: ast.Constant) -> _Node:
        value = node.value
        if isinstance(value, str | bytes):
            raise self.refuse(node, "strings not allowed")
        if not isinstance(value, bool | int | float):
            raise self.refuse(node, f"constant {value!r} not allowed (numbers only)")
        try:
            number = float(value)
        except OverflowError:
            raise self.refuse(node, "number too large") from None
        if not math.isfinite(number):
            raise self.refuse(node, "number too large")
        return _const(number)

    def name(self, node: ast.Name) -> _Node:
        if node.id in STEP_NAMES:
            return lambda x: x
        if node.id in CONSTANTS:
            return _const(CONSTANTS[node.id])
        if node.id in FUNCTIONS:
            raise self.refuse(node, f"{node.id} is a function; call it")
        if node.id == "math":
            raise self.refuse(node, "math is only allowed as math.<name>")
        raise self.refuse(
            node,
            f"unknown name {node.id!r} (the step is 'step' or 'epoch'; constants: {', '.join(CONSTANTS)})",
        )

    def math_member(self, node: ast.Attribute) -> str:
        if not (isinstance(node.value, ast.Name) and node.value.id == "math"):
            raise self.refuse(node, "attribute access not allowed (only math.<name>)")
        if node.attr not in MATH_NAMES:
            raise self.refuse(node, f"math.{node.attr} not allowed; allowed: {', '.join(sorted(MATH_NAMES))}")
        return node.attr

    def binop(self, node: ast.BinOp, d: int) -> _Node:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise self.refuse(node, f"operator {_SYMBOLS.get(type(node.op), type(node.op).__name__)!r} not allowed")
        if isinstance(node.op, ast.Pow):
            exponent = _literal(node.right)
            if exponent is not None and abs(exponent) > MAX_LITERAL_EXPONENT:
                raise self.refuse(node, f"exponent larger than {MAX_LITERAL_EXPONENT:g}")
        left, right = self.node(node.left, d), self.node(node.right, d)
        return lambda x: op(left(x), right(x))

    def unary(self, node: ast.UnaryOp, d: int) -> _Node:
        operand = self.node(node.operand, d)
        if isinstance(node.op, ast.USub):
            return lambda x: np.negative(operand(x))
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Not):
            return lambda x: _as_float(np.equal(operand(x), 0))
        raise self.refuse(node, f"operator {_SYMBOLS.get(type(node.op), type(node.op).__name__)!r} not allowed")

    def compare(self, node: ast.Compare, d: int) -> _Node:
        ops = []
        for op in node.ops:
            fn = _COMPARE.get(type(op))
            if fn is None:
                raise self.refuse(node, f"comparison {_SYMBOLS.get(type(op), type(op).__name__)!r} not allowed")
            ops.append(fn)
        operands = [self.node(n, d) for n in (node.left, *node.comparators)]

        def run(x: FloatArray) -> Any:
            values = [f(x) for f in operands]
            result = np.ones(x.shape, dtype=bool)
            for i, fn in enumerate(ops):
                result = result & fn(values[i], values[i + 1])
            return _as_float(result)

        return run

    def boolop(self, node: ast.BoolOp, d: int) -> _Node:
        parts = [self.node(v, d) for v in node.values]
        is_and = isinstance(node.op, ast.And)

        def run(x: FloatArray) -> Any:
            # Fold from the right: `a and rest` is rest where a is true, else a; `a or rest` the reverse.
            out = parts[-1](x)
            for part in reversed(parts[:-1]):
                v = part(x)
                out = np.where(_truthy(v), out, v) if is_and else np.where(_truthy(v), v, out)
            return out

        return run

    def call(self, node: ast.Call, d: int) -> _Node:
        if isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            name = node.func.id
        elif isinstance(node.func, ast.Attribute):
            name = self.math_member(node.func)
            if name not in FUNCTIONS:
                raise self.refuse(node, f"math.{name} is a constant, not a function")
        elif isinstance(node.func, ast.Name):
            raise self.refuse(node, f"unknown function {node.func.id!r}; allowed: {', '.join(sorted(FUNCTIONS))}")
        else:
            raise self.refuse(node, "only the listed functions may be called")
        if node.keywords:
            raise self.refuse(node, "keyword arguments not allowed")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg, "starred arguments (*x) not allowed")
        low, high, impl = FUNCTIONS[name]
        n = len(node.args)
        if n < low or (high is not None and n > high):
            expected = f"{low}" if low == high else f"{low} or more" if high is None else f"{low} to {high}"
            raise self.refuse(node, f"{name}() takes {expected} arguments, got {n}")
        args = [self.node(a, d) for a in node.args]
        return lambda x: impl(*(a(x) for a in args))


def _const(value: float) -> _Node:
    v = np.float64(value)
    return lambda x: v


def _literal(node: ast.AST) -> float | None:
    """The value of a numeric literal, possibly signed; None for anything else."""
    sign = 1.0
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        try:
            return sign * float(node.value)
        except OverflowError:
            return math.inf
    return None


def _parse(text: str) -> tuple[ast.expr, int]:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(detail=f"expression longer than {MAX_LENGTH} characters ({len(text)})")
    if not text.strip():
        raise ExpressionError(detail="expression is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(detail=f"not a Python expression: {exc.msg} (column {exc.offset})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(detail=f"not a Python expression: {exc}") from None
    nodes = sum(1 for n in ast.walk(tree) if isinstance(n, ast.expr))
    if nodes > MAX_NODES:
        raise ExpressionError(detail=f"expression too large: {nodes} nodes (at most {MAX_NODES})")
    return tree.body, nodes


def compile_expression(text: str) -> ExpressionFn:
    """Compile ``text`` into ``fn(steps) -> values``: int steps ``(N,)`` to float64 values ``(N,)``.

    Raises ``ExpressionError`` for refused text; the returned function raises ``ExpressionError`` where a
    value is inf or NaN. Pure, so compiled functions are cached by text.
    """
    if not isinstance(text, str):
        raise ExpressionError(detail=f"an expression must be a string, not {type(text).__name__}")
    return _compile(text)


@dataclass(frozen=True)
class CompiledExpression:
    """A compiled expression: call it on steps; ``nodes`` (its expression nodes) is its cost per element."""

    text: str
    nodes: int
    fn: ExpressionFn

    def __call__(self, steps: Steps) -> FloatArray:
        return self.fn(steps)


def expression_cost(fn: Callable[[Steps], Any]) -> int:
    """Operations per element of evaluating ``fn``: its node count if compiled here, else 1."""
    return fn.nodes if isinstance(fn, CompiledExpression) else 1


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> CompiledExpression:
    body, nodes = _parse(text)
    root = _Compiler(text.strip()).node(body, 0)

    def evaluate(steps: Steps) -> FloatArray:
        arr = np.asarray(steps)
        x = arr.astype(np.float64)
        with np.errstate(all="ignore"):
            out = np.array(np.broadcast_to(root(x), x.shape), dtype=np.float64)
        bad = ~np.isfinite(out)
        if bad.any():
            i = int(np.argmax(bad))
            raise ExpressionError(
                detail=f"expression {text!r} gives {out[i]} at step {arr[i]}: schedule values must be finite",
                extra={"step": int(arr[i])},
            )
        return out

    return CompiledExpression(text=text, nodes=nodes, fn=evaluate)


def check_expression(text: str, probe: Sequence[int] = (0,)) -> str:
    """Pydantic-validator form: returns ``text``, or raises ``ValueError`` with the sandbox's message.

    ``probe``: steps at which the value must be finite (``LambdaLR`` evaluates at step 0; ``MultiplicativeLR``
    first at step 1).
    """
    try:
        fn = compile_expression(text)
        if len(probe):
            fn(np.asarray(probe, dtype=np.int64))
    except ExpressionError as exc:
        raise ValueError(exc.detail) from None
    return text
