"""Quantities derived from a `Trace`, each defined once.

The chapters, their tests, the plots, the widgets and ``diagnose`` read
these numbers off traces; defining each here, and testing it once against
a hand computation (``tests/test_metrics.py``), means a chapter's test
checks what the chapter computed, not a copy of it.

Shapes: ``n`` steps, ``L`` layers (`Trace`'s attributes).
"""

from __future__ import annotations

import numpy as np

from explodebook.checks import expect_trace, is_real
from explodebook.trace import Trace

__all__ = [
    "status",
    "phase",
    "first_positive",
    "relative_to_first",
    "log_loss_changes",
    "update_factor",
    "swing",
    "loss_change_stats",
    "growth",
    "clipped_steps",
    "fraction_clipped",
    "last_clipped_step",
    "first_layer_gradient",
    "first_to_last",
    "total_weight_norm",
]

#: Clipping counts as having shrunk a layer's gradient when the norm after
#: it is below this fraction of the norm before (float32 rounding aside).
CLIPPED_BELOW = 1 - 1e-6


def status(trace: Trace) -> str:
    """``"non-finite at step k"`` for a run that diverged, else ``"final loss x"``.

    Step ``k`` is ``Trace.first_nonfinite_step`` (counted from 0): the first
    step whose loss, a gradient or a weight was NaN or infinite, whichever
    came first. The final loss is `Trace.final_loss` to 3 significant
    digits.
    """
    expect_trace(trace, "status()")
    if trace.diverged:
        return f"non-finite at step {trace.first_nonfinite_step}"
    return f"final loss {trace.final_loss():.3g}"


def phase(trace: Trace, trained_below: float, window: int = 50) -> str:
    """Where a run ended: ``"exploded"``, ``"trained"`` or ``"stalled"``.

    ``"exploded"`` when the run went non-finite (`Trace.diverged`);
    otherwise ``"trained"`` when `Trace.final_loss` (over the last
    ``window`` steps) is below ``trained_below``, else ``"stalled"``. The
    cells of a phase diagram (`explodebook.grid.Grid.verdicts`).

    Raises:
        ValueError: ``trained_below`` is not a positive number.
    """
    expect_trace(trace, "phase()")
    if isinstance(trained_below, bool) or not is_real(trained_below) or not trained_below > 0:
        raise ValueError(
            f"phase(trained_below={trained_below!r}) is not allowed: give the positive "
            "loss under which a finite run counts as trained"
        )
    if trace.diverged:
        return "exploded"
    return "trained" if trace.final_loss(window) < trained_below else "stalled"


def first_positive(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's first finite, positive value, and the step where it is.

    Args:
        values: ``(n, k)`` with ``n >= 1``.

    Returns:
        ``(steps, reference)``, both ``(k,)``: ``reference`` is NaN (and
        ``steps`` 0) for a column with no finite, positive value.
    """
    usable = np.isfinite(values) & (values > 0)
    steps = np.argmax(usable, axis=0)
    reference = values[steps, np.arange(values.shape[1])]
    return steps, np.where(usable.any(axis=0), reference, np.nan)


def relative_to_first(values: np.ndarray) -> np.ndarray:
    """Each column divided by its first finite, positive value (`first_positive`).

    Args:
        values: ``(n, k)``, e.g. per-layer weight or gradient norms.

    Returns:
        ``(n, k)`` float64; a column with no finite, positive value is NaN.
        ``+inf`` stays ``+inf`` (an overflow counts as growth).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] == 0:
        return values.copy()
    _, reference = first_positive(values)
    with np.errstate(all="ignore"):
        return values / reference


def log_loss_changes(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The natural-log change of the loss at each update, where it is finite.

    Args:
        loss: ``(n,)``, a trace's ``loss``.

    Returns:
        ``(changes, steps)``: ``log(L[t] / L[t-1])`` for the steps ``t``
        (from 1) where both losses are finite and positive, and those ``t``.
    """
    with np.errstate(all="ignore"):
        change = np.diff(np.log(np.asarray(loss, dtype=np.float64)))
    steps = np.arange(1, len(loss))
    ok = np.isfinite(change)
    return change[ok], steps[ok]


def update_factor(trace: Trace) -> np.ndarray:
    """How much each update multiplied or divided the loss, ``>= 1``.

    Returns:
        ``(n - 1,)``: ``exp(|log(L[t+1] / L[t])|)``; NaN or infinite where
        a loss is not finite.
    """
    with np.errstate(all="ignore"):
        return np.exp(np.abs(np.diff(np.log(trace.loss))))


def swing(trace: Trace) -> float:
    """Median ``|log10(L[t+1] / L[t])|`` over the run's finite losses.

    Non-finite losses are dropped first, so the ratio then spans the gap.
    NaN for fewer than two finite losses.
    """
    loss = trace.loss[np.isfinite(trace.loss)]
    if loss.size < 2:
        return float("nan")
    with np.errstate(all="ignore"):
        return float(np.median(np.abs(np.diff(np.log10(loss)))))


def loss_change_stats(trace: Trace, jump: float = 10.0) -> tuple[float, float]:
    """``diagnose``'s two numbers for an unstable loss.

    Args:
        trace: the run.
        jump: an update that multiplies the loss by at least this is a jump.

    Returns:
        ``(median factor, share of jumps)``: the median of
        `update_factor` over finite changes, and the share of those updates
        that multiply the loss by ``jump`` or more. NaN, NaN without any.
    """
    change, _ = log_loss_changes(trace.loss)
    if change.size == 0:
        return float("nan"), float("nan")
    return float(np.exp(np.median(np.abs(change)))), float(np.mean(change >= np.log(jump)))


def growth(trace: Trace) -> float:
    """Largest global gradient norm before the first non-finite step, over step 0's."""
    norms = trace.grad_norm_total[: trace.first_nonfinite_step]
    if norms.size == 0:
        return float("nan")
    with np.errstate(all="ignore"):
        return float(norms.max() / norms[0])


def clipped_steps(trace: Trace) -> np.ndarray:
    """Whether clipping shrank some layer's gradient, at each step.

    Returns:
        ``(n,)`` bool.
    """
    shrunk = trace.clipped_grad_norms < trace.grad_norms * CLIPPED_BELOW
    return shrunk.any(axis=1)


def fraction_clipped(trace: Trace) -> float:
    """Share of steps at which clipping shrank some layer's gradient."""
    return float(clipped_steps(trace).mean()) if trace.steps_run else float("nan")


def last_clipped_step(trace: Trace) -> int | None:
    """The last step at which clipping shrank a gradient, or ``None``."""
    steps = np.flatnonzero(clipped_steps(trace))
    return int(steps[-1]) if steps.size else None


def first_layer_gradient(trace: Trace) -> float:
    """Gradient norm of the first (input-side) layer at step 0."""
    return float(trace.grad_norms[0, 0])


def first_to_last(trace: Trace) -> float:
    """First hidden layer's gradient norm over the last hidden layer's, at step 0.

    The last layer of an MLP's trace is its output layer, so "the last
    hidden layer" is the one before it (``grad_norms[0, -2]``).
    """
    return float(trace.grad_norms[0, 0] / trace.grad_norms[0, -2])


def total_weight_norm(trace: Trace) -> np.ndarray:
    """L2 norm of all the weights together, at every step.

    Returns:
        ``(n,)``: ``sqrt(sum over layers of weight_norms**2)``.
    """
    return np.sqrt((trace.weight_norms**2).sum(axis=1))
