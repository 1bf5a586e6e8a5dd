"""Safe arithmetic expressions of ``step`` (torch's ``lr_lambda`` as text). Being written; API fixed:

``compile_expression(text: str) -> Callable[[Steps], Values1D]`` parses once into a whitelisted AST and
returns a vectorized numpy function of an int64 step array (shape (N,)) giving float64 values of shape (N,).
Raises ``lrserve.schemas.errors.ExpressionError`` (and, when called from a pydantic validator, ``ValueError``
via ``check_expression``) with a plain message.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from lrserve.schemas.core.schedule import Steps

ExpressionFn = Callable[[Steps], npt.NDArray[np.float64]]


def compile_expression(text: str) -> ExpressionFn:
    raise NotImplementedError


def check_expression(text: str) -> str:
    """Pydantic-validator form: returns the text or raises ValueError with the sandbox's message."""
    compile_expression(text)
    return text
