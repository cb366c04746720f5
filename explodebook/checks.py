"""Argument checks shared by the public API, so every refusal reads the same.

A wrong argument should fail at the call that received it, with a message
that names the function and argument, says what is allowed and shows what
was given (its type and a short repr), instead of an ``AttributeError``
from deep inside numpy or matplotlib. Two kinds of refusal, as in the rest
of the package:

* ``TypeError`` when the argument is the wrong kind of object
  (`expect`, `expect_spec`, `expect_trace`, `expect_path`):
  ``diagnose() expects a Trace (from explodebook.run or a monitor), got
  str 'abc'``;
* ``ValueError`` when a name or number is outside what is allowed
  (`check_framework`, `expect_int`), in the ``name=value is not allowed:
  ...`` form that `explodebook.spec.SpecError` uses too:
  ``framework='jax' is not allowed: choose one of ['torch', 'keras']``.

`plain` turns numpy scalars (``np.int64(3)``, ``np.float32(0.5)``, a 0-d
array) into the Python numbers they stand for, so values taken from
``np.arange`` or ``np.linspace`` are accepted wherever Python numbers are.

This module imports nothing from the rest of the package at import time
(`explodebook.spec` and `explodebook.trace` use it themselves).
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from explodebook.spec import RunSpec
    from explodebook.trace import Trace

__all__ = [
    "describe",
    "expect",
    "expect_spec",
    "expect_trace",
    "expect_path",
    "expect_int",
    "is_real",
    "check_framework",
    "check_frameworks",
    "plain",
]

# Short reprs: a message should show what was given, not a 10,000-element
# array or a whole dict of traces.
_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def describe(value: Any) -> str:
    """What was given, for an error message: type name and a short repr.

    ``describe("abc")`` is ``"str 'abc'"``; ``describe(None)`` is ``"None"``.
    """
    if value is None:
        return "None"
    return f"{type(value).__name__} {_REPR.repr(value)}"


def expect(value: Any, types: type | tuple[type, ...], where: str, expected: str) -> Any:
    """Return ``value`` if it is an instance of ``types``, else raise ``TypeError``.

    Args:
        value: the argument to check.
        types: the allowed class(es), as for ``isinstance``.
        where: the function and argument, e.g. ``"diagnose()"`` for the
            main argument or ``"diagnose(thresholds=...)"`` for another.
        expected: what is allowed, e.g. ``"a Thresholds or None"``.

    Raises:
        TypeError: ``"<where> expects <expected>, got <type> <repr>"``.
    """
    if not isinstance(value, types):
        raise TypeError(f"{where} expects {expected}, got {describe(value)}")
    return value


def expect_spec(value: Any, where: str) -> RunSpec:
    """Return ``value`` if it is a `RunSpec`, else raise a ``TypeError`` saying so."""
    from explodebook.spec import RunSpec

    return expect(value, RunSpec, where, "a RunSpec (e.g. RunSpec(depth=3))")


def expect_trace(value: Any, where: str) -> Trace:
    """Return ``value`` if it is a `Trace`, else raise a ``TypeError`` saying so."""
    from explodebook.trace import Trace

    return expect(value, Trace, where, "a Trace (from explodebook.run or a monitor)")


def expect_path(value: Any, where: str) -> str | bytes | os.PathLike[str]:
    """Return ``value`` if it names a file (``str``, ``bytes``, ``os.PathLike``).

    An ``int`` is refused on purpose: ``open(3)`` would silently use file
    descriptor 3 instead of a file called ``3``.
    """
    return expect(value, (str, bytes, os.PathLike), where, "a file path (str or pathlib.Path)")


def is_real(value: Any) -> bool:
    """True for a real number (Python or numpy), False for bools and the rest.

    ``True`` is an ``int`` to Python, but passing it where a number belongs
    is almost always a mistake, so it does not count.
    """
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def expect_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    """``value`` as a Python ``int`` in ``[low, high]``, or a ``ValueError``.

    Numpy integers are accepted; bools and floats (even ``3.0``) are not.

    Args:
        value: the argument.
        name: how the message names it, e.g. ``"window"``.
        low, high: the allowed range (``high=None``: no upper bound).

    Raises:
        ValueError: ``"<name>=<value> is not allowed: expected an integer
            >= <low>"`` (or ``between <low> and <high>``).
    """
    value = plain(value)
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name}={value!r} is not allowed: expected an integer {bounds}")
    return value


def check_framework(name: Any, argument: str = "framework") -> str:
    """Return ``name`` as a plain ``str`` if it is one of `explodebook.trace.FRAMEWORKS`.

    Args:
        name: the framework name given.
        argument: how the message names the argument, e.g.
            ``"Trace.framework"``.

    Raises:
        ValueError: ``"framework='jax' is not allowed: choose one of
            ['torch', 'keras']"``.
    """
    from explodebook.trace import FRAMEWORKS

    name = plain(name)
    # The isinstance test comes first: `in` on an array or a list would
    # compare element-wise or by equality, not ask "is this a name?".
    if not (isinstance(name, str) and name in FRAMEWORKS):
        raise ValueError(f"{argument}={name!r} is not allowed: choose one of {list(FRAMEWORKS)}")
    return str(name)


def check_frameworks(value: str | Iterable[str], where: str) -> tuple[str, ...]:
    """One framework name or several, as a tuple of distinct names.

    Args:
        value: ``"torch"``, or an iterable such as ``("torch", "keras")``.
        where: the function and argument, e.g. ``"explore(frameworks=...)"``.

    Raises:
        TypeError: ``value`` is neither a string nor an iterable.
        ValueError: a name is not a framework (as `check_framework`), none
            is given, or one is given twice.
    """
    from explodebook.trace import FRAMEWORKS

    if isinstance(value, str):
        return (check_framework(value),)
    expect(value, Iterable, where, f"a framework name or a list of them, from {list(FRAMEWORKS)}")
    names = tuple(check_framework(name) for name in value)
    if not names:
        raise ValueError(f"{where} is empty: give at least one of {list(FRAMEWORKS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: {list(names)} names a framework twice")
    return names


def plain(value: Any) -> Any:
    """A numpy scalar or 0-d array as the Python value it holds; anything else as is.

    ``np.int64(3)`` -> ``3``, ``np.float32(0.5)`` -> ``0.5``,
    ``np.bool_(True)`` -> ``True``, ``np.str_("tanh")`` -> ``"tanh"``,
    ``np.array(2.0)`` -> ``2.0``. Callers still check the result: this
    only removes the difference between a numpy and a Python value, so a
    numpy bool becomes a Python bool and is refused where bools are.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.str_):
        return str(value)
    return value
