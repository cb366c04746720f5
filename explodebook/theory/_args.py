"""Argument checks of the theory functions: matrices, counts and finite numbers."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from explodebook.checks import describe, expect_int, is_real


def _matrix(name: str, value: ArrayLike, *, square: bool = True) -> np.ndarray:
    """``value`` as a finite float64 2-D (square) array, or a clear error."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a 2-D array of numbers, got {describe(value)}") from e
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {a.shape}")
    if square and a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must contain only finite numbers (found NaN or inf)")
    return a


def _positive_int(name: str, value: object, low: int = 1) -> int:
    return expect_int(value, name, low)


def _floats(name: str, value: ArrayLike) -> np.ndarray:
    """``value`` as a float64 array (any shape), or a `TypeError` naming it."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of numbers, got {describe(value)}") from e


def _finite_float(name: str, value: object, *, positive: bool = False) -> float:
    if not is_real(value):
        raise ValueError(f"{name}={value!r} is not allowed: expected a finite number")
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0):
        kind = "finite number > 0" if positive else "finite number"
        raise ValueError(f"{name}={value!r} is not allowed: expected a {kind}")
    return v
