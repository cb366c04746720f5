"""The six checks behind `explodebook.diagnose`: one row per sign in ``SIGNS``.

Each row holds the sign's machine name, its title, the phrase the summary
uses, whether it is conclusive (one of the article's "less subtle" signs)
and its check. A check reads a trace's arrays (``Arrays``) and the
`explodebook.diagnose.Thresholds`, and returns what it found: whether the
sign is present, from which step, and one sentence of evidence with the
numbers. `explodebook.diagnose.diagnose` turns the findings into `Sign` s
and a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from explodebook.metrics import first_positive, log_loss_changes, relative_to_first

if TYPE_CHECKING:
    from explodebook.diagnose import Thresholds

# Nothing here is API: `explodebook.diagnose` is.
__all__: list[str] = []


class Arrays(NamedTuple):
    """What the checks read from a trace, as float64 arrays."""

    loss: np.ndarray  # (n,)
    grad_norms: np.ndarray  # (n, L)
    weight_norms: np.ndarray  # (n, L)
    layers: list[str]
    stop: int | None  # the first step with a non-finite value, if any


# What a check finds: present, first step, evidence.
Finding = tuple[bool, int | None, str]


def stop_step(loss: np.ndarray, grad_norms: np.ndarray, weight_norms: np.ndarray) -> int | None:
    """The first step with a non-finite loss, gradient or weight norm, if any."""
    # Recomputed from the arrays (not read from trace.first_nonfinite_step)
    # so hand-built traces are judged on what they hold.
    bad = ~np.isfinite(loss)
    if grad_norms.size:
        bad |= ~np.isfinite(grad_norms).all(axis=1)
    if weight_norms.size:
        bad |= ~np.isfinite(weight_norms).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def _steps(count: int, noun: str = "step") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _all(count: int) -> str:
    return "the one recorded step" if count == 1 else f"all {count} recorded steps"


def _what(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")


def _poor_loss(run: Arrays, t: Thresholds) -> Finding:
    loss, stop = run.loss, run.stop
    finite = loss[np.isfinite(loss)]
    if stop is not None:
        before = loss[:stop][np.isfinite(loss[:stop])]
        history = (
            f"before that it went from {before[0]:.3g} to at best {before.min():.3g}"
            if before.size
            else "it never had a finite value"
        )
        what = (
            f"the loss was {_what(loss[stop])}"
            if not np.isfinite(loss[stop])
            else "a gradient or weight became non-finite"
        )
        return (
            True,
            stop,
            f"The run diverged at step {stop} ({what}), so it ended without a usable "
            f"model; {history}.",
        )
    if finite.size < max(2, t.min_steps):
        return (
            False,
            None,
            f"Only {_steps(finite.size, 'finite loss value')}: too few to judge traction "
            f"(at least {max(2, t.min_steps)} needed).",
        )
    k = max(1, min(t.window, finite.size // 4))
    start, end = float(np.median(finite[:k])), float(np.median(finite[-k:]))
    # A loss already at 0 cannot fall further: that is not a lack of traction.
    ratio = end / start if start > 0 else (0.0 if end <= start else math.inf)
    present = bool(ratio >= t.traction_fraction)
    return (
        present,
        None,
        f"The median loss of the last {_steps(k)} ({end:.3g}) is {ratio:.3g}x that of "
        f"the first {_steps(k)} ({start:.3g}); poor means at least {t.traction_fraction:g}x.",
    )


def _unstable_loss(run: Arrays, t: Thresholds) -> Finding:
    loss = run.loss
    change, steps = log_loss_changes(loss)
    if change.size == 0:
        return (
            False,
            None,
            "Fewer than two consecutive finite, positive losses: nothing to compare.",
        )
    typical = float(np.exp(np.median(np.abs(change))))
    is_jump = change >= math.log(t.jump_ratio)
    jumps = float(is_jump.mean())
    present = bool(typical >= t.unstable_ratio or jumps >= t.jump_fraction)
    if is_jump.any():
        first = int(steps[np.argmax(is_jump)])
    else:
        big = np.abs(change) >= math.log(t.unstable_ratio)
        first = int(steps[np.argmax(big)]) if big.any() else None
    return (
        present,
        first if present else None,
        f"The median update changes the loss by a factor of {typical:.3g} "
        f"(unstable from {t.unstable_ratio:g}), and {jumps:.0%} of {change.size} updates "
        f"multiply it by {t.jump_ratio:g} or more (unstable from {t.jump_fraction:.0%}).",
    )


def _nan_loss(run: Arrays, t: Thresholds) -> Finding:
    loss, stop = run.loss, run.stop
    bad = ~np.isfinite(loss)
    if bad.any():
        first = int(np.argmax(bad))
        return (
            True,
            first,
            f"The loss was {_what(loss[first])} at step {first}; {int(bad.sum())} of "
            f"{_steps(loss.size, 'recorded step')} had a non-finite loss.",
        )
    return (
        False,
        None,
        f"The loss stayed finite in {_all(loss.size)}{_stopped(stop)}.",
    )


def _stopped(stop: int | None) -> str:
    if stop is None:
        return ""
    return f" (a gradient or weight became non-finite at step {stop})"


def _growing_weights(run: Arrays, t: Thresholds) -> Finding:
    weight_norms, layers = run.weight_norms, run.layers
    n = weight_norms.shape[0]
    # Each layer is compared with its first finite, positive norm; +inf
    # (an overflowed weight) counts as growth, NaN does not.
    usable = np.isfinite(weight_norms) & (weight_norms > 0)
    has_ref = usable.any(axis=0) if n else np.zeros(len(layers), bool)
    if not has_ref.any():
        return (
            False,
            None,
            "No layer has a finite, positive weight norm to measure growth from.",
        )
    ref_step, reference = first_positive(weight_norms)
    growth = relative_to_first(weight_norms)
    growth = np.where(np.isnan(growth), -np.inf, growth)  # NaN never counts
    peak = growth.max(axis=0)
    layer = int(np.argmax(peak))
    crossed = growth >= t.weight_growth
    if crossed.any():
        first = int(np.argmax(crossed.any(axis=1)))
        layer = int(np.argmax(np.where(crossed[first], growth[first], -np.inf)))
        grown = float(growth[first, layer])
        return (
            True,
            first,
            f"{layers[layer]}'s weight norm grew {grown:.3g}x (from "
            f"{reference[layer]:.3g} to {weight_norms[first, layer]:.3g}) within "
            f"{_steps(int(first - ref_step[layer]))}; the threshold is {t.weight_growth:g}x.",
        )
    return (
        False,
        None,
        f"The largest growth of a weight norm is {peak[layer]:.3g}x ({layers[layer]}), "
        f"below the {t.weight_growth:g}x threshold.",
    )


def _nan_weights(run: Arrays, t: Thresholds) -> Finding:
    weight_norms, layers, stop = run.weight_norms, run.layers, run.stop
    bad = ~np.isfinite(weight_norms)
    if bad.any():
        first = int(np.argmax(bad.any(axis=1)))
        names = [layers[i] for i in np.flatnonzero(bad[first])]
        return (
            True,
            first,
            f"The weights of {', '.join(names)} were non-finite at step {first} "
            f"(norm {_what(float(weight_norms[first, bad[first]][0]))}).",
        )
    if stop is not None:
        why = (
            f"; the run stopped at step {stop}, when the loss or a gradient became "
            "non-finite, before an update could spread it to the weights"
        )
    else:
        why = ""
    return (
        False,
        None,
        f"Every weight norm stayed finite in {_all(weight_norms.shape[0])}{why}.",
    )


def _grad_norm_above(run: Arrays, t: Thresholds) -> Finding:
    grad_norms, layers = run.grad_norms, run.layers
    # Steps where some layer's norm is NaN say nothing either way; +inf is
    # certainly above the threshold.
    judged = ~np.isnan(grad_norms).any(axis=1) if grad_norms.size else np.zeros(0, bool)
    norms = grad_norms[judged]
    if norms.shape[0] == 0:
        return (
            False,
            None,
            "No step has a gradient norm for every layer.",
        )
    above = norms > t.grad_norm
    every = above.all(axis=1)
    fraction = float(every.mean())
    long_enough = norms.shape[0] >= t.min_steps
    present = bool(long_enough and fraction >= t.grad_fraction)
    too_short = (
        "" if long_enough else f" Too few steps to call it consistent (at least {t.min_steps})."
    )
    per_layer = ", ".join(f"{name} {f:.0%}" for name, f in zip(layers, above.mean(axis=0)))
    first = int(np.flatnonzero(judged)[np.argmax(every)]) if present else None
    return (
        present,
        first,
        f"In {fraction:.0%} of {_steps(norms.shape[0])} every layer's gradient norm "
        f"exceeded {t.grad_norm:g} (consistently means at least {t.grad_fraction:.0%}); "
        f"per layer: {per_layer}.{too_short}",
    )


class SignCheck(NamedTuple):
    """One row of ``SIGNS``: a sign's names, its kind and its check."""

    name: str
    title: str  # may use {grad_norm:g}
    phrase: str  # for the summary sentence; may use {grad_norm:g}
    conclusive: bool
    check: Callable[[Arrays, Thresholds], Finding]


# The six signs in the article's order. The first three are "subtle" (dig
# deeper), the last three "less subtle": they confirm exploding gradients.
SIGNS = (
    SignCheck("poor_loss", "Poor loss (no traction)", "poor loss", False, _poor_loss),
    SignCheck(
        "unstable_loss",
        "Unstable loss (large changes per update)",
        "unstable loss",
        False,
        _unstable_loss,
    ),
    SignCheck("nan_loss", "Loss goes to NaN", "NaN loss", False, _nan_loss),
    SignCheck(
        "growing_weights", "Weights grow very large", "fast-growing weights", True, _growing_weights
    ),
    SignCheck("nan_weights", "Weights go to NaN", "NaN weights", True, _nan_weights),
    SignCheck(
        "grad_norm_above_1",
        "Gradient norm above {grad_norm:g} in every layer",
        "gradient norms consistently above {grad_norm:g}",
        True,
        _grad_norm_above,
    ),
)
