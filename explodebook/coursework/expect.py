"""Answer-shape checks for the autograded exercises, with messages for students.

The checks in ``explodebook/coursework/checks/*.yml`` call these first, so
that an answer still left at ``...``, or of the wrong kind, fails with a
sentence saying what is expected instead of a Python traceback. Each
raises ``AssertionError`` (what otter-grader reports as a failed check) and
returns the answer converted, for the check to go on with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["answered", "number", "numbers", "boolean", "choice", "trace", "same_run"]


def answered(name: str, value: Any) -> None:
    """Fail if the answer cell still holds the placeholder ``...`` (or nothing)."""
    if value is Ellipsis or value is None:
        raise AssertionError(
            f"`{name}` is still {value!r}: replace the `...` in the answer cell with your "
            "answer and run the cell"
        )


def number(name: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    """The answer as one finite float, within ``[low, high]``."""
    answered(name, value)
    if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0:
        raise AssertionError(f"`{name}` should be one number, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise AssertionError(f"`{name}` should be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise AssertionError(f"`{name}` should be a finite number, got {result}")
    if not low <= result <= high:
        raise AssertionError(f"`{name}` = {result:g} is outside the sensible range [{low:g}, {high:g}]")
    return result


def numbers(name: str, value: Any, count: int) -> np.ndarray:
    """The answer as ``count`` finite floats (a list, tuple or array)."""
    answered(name, value)
    try:
        result = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise AssertionError(f"`{name}` should be {count} numbers, got {value!r}") from None
    if result.shape != (count,):
        raise AssertionError(
            f"`{name}` should hold {count} numbers in a list or array; got shape {result.shape}"
        )
    if not np.all(np.isfinite(result)):
        raise AssertionError(f"`{name}` should hold finite numbers, got {result.tolist()}")
    return result


def boolean(name: str, value: Any) -> bool:
    """The answer as ``True`` or ``False`` (numpy booleans accepted)."""
    answered(name, value)
    if not isinstance(value, (bool, np.bool_)):
        raise AssertionError(f"`{name}` should be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    """The answer as one of ``options`` (compared without case or spaces)."""
    answered(name, value)
    if not isinstance(value, str):
        raise AssertionError(f"`{name}` should be a string, one of {list(options)}; got {value!r}")
    normal = {o.lower().replace(" ", ""): o for o in options}
    key = value.lower().replace(" ", "")
    if key not in normal:
        raise AssertionError(f"`{name}` should be one of {list(options)}; got {value!r}")
    return normal[key]


def trace(name: str, value: Any) -> Any:
    """The answer as an `explodebook.trace.Trace` of the package's own runs (with a spec)."""
    from explodebook.trace import Trace

    answered(name, value)
    if not isinstance(value, Trace):
        raise AssertionError(
            f"`{name}` should be the Trace that run(...) returns, got {type(value).__name__}"
        )
    if value.spec is None:
        raise AssertionError(f"`{name}` should be a trace of run(spec), which has a spec")
    return value


def same_run(name: str, value: Any, *, rtol: float = 1e-3) -> Any:
    """The answer as a trace that is what ``run(spec, framework)`` gives.

    Grading re-runs the notebook, so a trace it holds was computed on the
    grading machine, as the checks' own seeded run is: a trace that
    differs was edited or made up, not run.
    """
    from explodebook import run

    result = trace(name, value)
    reference = run(result.spec, result.framework)
    same = (
        result.steps_run == reference.steps_run
        and result.first_nonfinite_step == reference.first_nonfinite_step
        and all(
            np.allclose(getattr(result, field), getattr(reference, field), rtol=rtol,
                        atol=1e-12, equal_nan=True)
            for field in ("loss", "grad_norm_total", "grad_norms", "weight_norms")
        )
    )
    if not same:
        raise AssertionError(
            f"`{name}` is not what run(...) gives for its own spec: keep the trace that run "
            "returns, unedited"
        )
    return result
