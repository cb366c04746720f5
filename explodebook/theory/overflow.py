"""How many multiplications overflow a floating-point format, computed exactly."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

from explodebook.theory._args import _finite_float

__all__ = ["FLOAT_LIMITS", "overflow_steps"]

#: Largest finite value of each floating-point format.
#: bfloat16 keeps float32's 8 exponent bits and 7 mantissa bits, so its
#: maximum is ``(2 - 2**-7) * 2**127``; numpy has no bfloat16, hence the
#: constant (it equals ``ml_dtypes.finfo(ml_dtypes.bfloat16).max`` and
#: ``torch.finfo(torch.bfloat16).max``).
FLOAT_LIMITS: dict[str, float] = {
    "float16": float(np.finfo(np.float16).max),  # 65504
    "bfloat16": (2.0 - 2.0**-7) * 2.0**127,  # ≈ 3.39e38
    "float32": float(np.finfo(np.float32).max),  # ≈ 3.40e38
    "float64": float(np.finfo(np.float64).max),  # ≈ 1.80e308
}


def overflow_steps(
    growth_factor: float, start: float = 1.0, dtype: str = "float32"
) -> int | None:
    """Multiplications by ``growth_factor`` until a value passes ``dtype``'s maximum.

    The smallest ``n >= 0`` with ``start · growth_factorⁿ > FLOAT_LIMITS[dtype]``,
    computed exactly (not by a float loop, whose rounding can be off by one).
    E.g. a gradient multiplied by 2 at every layer passes float16's 65504
    after 16 layers and float32's ≈3.4e38 after 128.

    This counts the exact value; a computation carried out *in* ``dtype``
    rounds at every step and turns a value into ``inf`` only once it is
    half a unit in the last place above the maximum, so it can overflow a
    step later (or sooner, through accumulated rounding).

    Args:
        growth_factor: the factor, ``> 0``.
        start: the initial magnitude, ``> 0``.
        dtype: ``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"``.

    Returns:
        the number of multiplications (0 if ``start`` already exceeds the
        maximum), or ``None`` if ``growth_factor <= 1`` and ``start`` does
        not exceed it: the value then never overflows.
    """
    if not isinstance(dtype, str) or dtype not in FLOAT_LIMITS:
        raise ValueError(f"dtype={dtype!r} is not allowed: choose one of {list(FLOAT_LIMITS)}")
    g = _finite_float("growth_factor", growth_factor, positive=True)
    s = _finite_float("start", start, positive=True)
    limit = FLOAT_LIMITS[dtype]
    if s > limit:
        return 0
    if g <= 1.0:
        return None
    # n = floor(log(limit / s) / log(g)) + 1, in 50-digit decimal arithmetic
    # (every float converts to Decimal exactly).
    with localcontext() as ctx:
        ctx.prec = 50
        ratio = (Decimal(limit) / Decimal(s)).ln() / Decimal(g).ln()
        n = int(ratio.to_integral_value(rounding="ROUND_FLOOR")) + 1
        near_tie = abs(ratio - ratio.to_integral_value()) < Decimal("1e-30")
    if near_tie:
        # s·gᵏ may equal the limit exactly (e.g. powers of two): decide with
        # exact rational arithmetic whether it *exceeds* it.
        exact_s, exact_g, exact_limit = Fraction(s), Fraction(g), Fraction(limit)
        n = max(n - 2, 0)
        while exact_s * exact_g**n <= exact_limit:
            n += 1
    return n
