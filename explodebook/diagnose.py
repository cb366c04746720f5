"""``diagnose(trace)``: the source article's six signs of exploding gradients.

The article lists three *subtle* signs that should make you dig deeper
(poor loss, unstable loss, NaN loss) and three *less subtle* signs that
confirm exploding gradients (weights that grow fast, NaN weights, gradient
norms consistently above 1.0). `diagnose` checks each one on a `Trace` and
says whether it is present, from which step, and why, with the numbers.

Every number the checks compare against lives in `Thresholds`, so a chapter
can show how a verdict depends on them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from explodebook import report
from explodebook.checks import expect, expect_trace, is_real, plain
from explodebook.metrics import first_positive, log_loss_changes, relative_to_first
from explodebook.trace import Trace

__all__ = ["Sign", "Thresholds", "Diagnosis", "diagnose", "SIGN_NAMES", "VERDICTS"]

#: Possible verdicts, from worst to best.
VERDICTS = ("exploding", "suspect", "healthy")

@dataclass(frozen=True)
class Sign:
    """One of the six signs, checked on one trace.

    Attributes:
        name: machine name, one of `SIGN_NAMES`.
        title: readable name for tables and figures.
        present: whether the trace shows the sign.
        first_step: the step at which the sign first showed, or ``None``
            when it is absent or is a property of the whole run.
        evidence: one sentence with the numbers behind the verdict.
        conclusive: ``True`` for the article's "less subtle" signs that
            confirm exploding gradients, ``False`` for the subtle ones.
    """

    name: str
    title: str
    present: bool
    first_step: int | None
    evidence: str
    conclusive: bool


@dataclass(frozen=True)
class Thresholds:
    """The numbers the six checks compare against.

    Override any of them with ``Thresholds(field=value)``,
    ``thresholds.replace(field=value)`` or ``diagnose(trace, field=value)``.
    The defaults were set on the book's own runs: they flag the classic
    diverging set-up (``RunSpec()``) and leave the standardized-target run
    (``RunSpec(task="regression-scaled")``) clean.

    Attributes:
        window: steps averaged at the start and at the end of the run to
            judge traction (``poor_loss``). It shrinks to a quarter of the
            finite steps on short runs, so the two windows never overlap.
            Default 20: long enough to average out minibatch noise.
        traction_fraction: ``poor_loss`` is present when the median loss of
            the last window is at least this fraction of the median loss of
            the first window (the median, not the mean, so one early spike
            does not fake progress). Default 0.5: a run that has not even
            halved its loss has no traction. A run whose loss became NaN or
            infinite also counts as poor, whatever it had learned.
        unstable_ratio: ``unstable_loss`` is present when the *median*
            update multiplies or divides the loss by at least this factor.
            Default 2.0: healthy minibatch SGD runs here change the loss by a
            median factor of about 1.3 per update; the classic diverging
            run by about 7.
        jump_ratio: an update that multiplies the loss by at least this
            factor is a jump upward. Default 10.0 (an order of magnitude;
            healthy runs here never jump more than about 4x).
        jump_fraction: ``unstable_loss`` is also present when at least this
            fraction of updates are jumps upward. Default 0.05.
        weight_growth: ``growing_weights`` is present when some layer's
            weight norm reaches this multiple of its initial value. Default
            100.0 (two orders of magnitude): fitting the unscaled regression
            target legitimately grows the output layer 10-15x, so 10 would
            flag runs that are learning.
        grad_norm: the gradient norm the article calls large: 1.0.
        grad_fraction: ``grad_norm_above_1`` is present when *every* layer's
            gradient norm exceeds ``grad_norm`` in at least this fraction of
            the steps with gradients ("consistently ... for each node and
            layer"). Default 0.9.
        min_steps: the fewest steps on which to judge a property of the whole
            run (traction, gradients "consistently" above the threshold);
            shorter traces are reported as too short for those two signs.
            Default 5.
    """

    window: int = 20
    traction_fraction: float = 0.5
    unstable_ratio: float = 2.0
    jump_ratio: float = 10.0
    jump_fraction: float = 0.05
    weight_growth: float = 100.0
    grad_norm: float = 1.0
    grad_fraction: float = 0.9
    min_steps: int = 5

    def __post_init__(self) -> None:
        _check_number(self, "window", low=1, integer=True)
        _check_number(self, "traction_fraction", low=0.0, low_open=True)
        _check_number(self, "unstable_ratio", low=1.0, low_open=True)
        _check_number(self, "jump_ratio", low=1.0, low_open=True)
        _check_number(self, "jump_fraction", low=0.0, low_open=True, high=1.0)
        _check_number(self, "weight_growth", low=1.0, low_open=True)
        _check_number(self, "grad_norm", low=0.0, low_open=True)
        _check_number(self, "grad_fraction", low=0.0, low_open=True, high=1.0)
        _check_number(self, "min_steps", low=1, integer=True)

    def replace(self, **changes: Any) -> Thresholds:
        """Return a copy with ``changes`` applied (and validated)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)


def _check_names(changes: dict[str, Any]) -> None:
    known = [f.name for f in dataclasses.fields(Thresholds)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ValueError(f"unknown Thresholds field(s) {unknown}; allowed: {known}")


def _check_number(
    thresholds: Thresholds,
    name: str,
    *,
    low: float,
    low_open: bool = False,
    high: float | None = None,
    integer: bool = False,
) -> None:
    # Numpy scalars are stored as the Python numbers they hold, as in RunSpec.
    value = plain(getattr(thresholds, name))
    object.__setattr__(thresholds, name, value)
    if integer:
        allowed = f"an integer >= {low}"
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and value >= low
    else:
        bounds = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        allowed = f"a finite number in {bounds}"
        ok = is_real(value) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (high is None or value <= high)
    if not ok:
        raise ValueError(f"Thresholds.{name}={value!r} is not allowed: expected {allowed}")


@dataclass(frozen=True)
class Diagnosis:
    """The six signs of one trace and the verdict they add up to.

    Attributes:
        signs: the six `Sign` s, in the article's order (`SIGN_NAMES`).
        verdict: ``"exploding"`` if a conclusive sign is present,
            ``"suspect"`` if only subtle signs are, ``"healthy"`` otherwise.
        summary: one sentence saying the verdict and why.
        thresholds: the `Thresholds` used.
    """

    signs: tuple[Sign, ...]
    verdict: str
    summary: str
    thresholds: Thresholds

    def __getitem__(self, name: str) -> Sign:
        for sign in self.signs:
            if sign.name == name:
                return sign
        raise KeyError(f"no sign named {name!r}; the signs are {list(SIGN_NAMES)}")

    def __iter__(self) -> Iterator[Sign]:
        return iter(self.signs)

    @property
    def present(self) -> list[str]:
        """Names of the signs present, in the article's order."""
        return [s.name for s in self.signs if s.present]

    def to_rows(self) -> list[dict[str, Any]]:
        """One plain dict per sign (the `Sign` fields), e.g. for a DataFrame."""
        return [dataclasses.asdict(s) for s in self.signs]

    def to_markdown(self) -> str:
        """The diagnosis as a Markdown table preceded by the summary."""
        return report.diagnosis_markdown(self)

    def _repr_html_(self) -> str:
        return report.diagnosis_html(self)

    def __repr__(self) -> str:
        return f"<Diagnosis {self.verdict}: {', '.join(self.present) or 'no signs'}>"


def diagnose(trace: Trace, thresholds: Thresholds | None = None, **overrides: Any) -> Diagnosis:
    """Check a trace for the article's six signs of exploding gradients.

    Never raises on odd traces (diverged at step 0, a single step, all-NaN
    columns) and emits no numpy warnings.

    Args:
        trace: the run to check; ``loss`` is ``(n,)``, ``grad_norms`` and
            ``weight_norms`` are ``(n, L)``.
        thresholds: the numbers to compare against; `Thresholds()` if
            ``None``.
        **overrides: `Thresholds` fields to change, e.g.
            ``diagnose(trace, grad_fraction=0.5)``; applied on top of
            ``thresholds``.

    Returns:
        a `Diagnosis` with the six signs in the article's order.

    Raises:
        TypeError: ``trace`` is not a `Trace`, or ``thresholds`` is neither
            a `Thresholds` nor ``None``.
        ValueError: a threshold has a value that is not allowed, or an
            override names no `Thresholds` field.
    """
    expect_trace(trace, "diagnose()")
    thresholds = expect(
        thresholds if thresholds is not None else Thresholds(),
        Thresholds,
        "diagnose(thresholds=...)",
        "a Thresholds or None",
    )
    if overrides:
        thresholds = thresholds.replace(**overrides)
    loss = np.asarray(trace.loss, dtype=np.float64)
    grad_norms = np.asarray(trace.grad_norms, dtype=np.float64)
    weight_norms = np.asarray(trace.weight_norms, dtype=np.float64)
    stop = _stop_step(loss, grad_norms, weight_norms)
    run = _Arrays(loss, grad_norms, weight_norms, list(trace.layers), stop)
    with np.errstate(all="ignore"):
        signs = tuple(entry.check_sign(run, thresholds) for entry in _SIGNS)
    verdict, summary = _verdict(signs, thresholds)
    return Diagnosis(signs=signs, verdict=verdict, summary=summary, thresholds=thresholds)


# -- the six checks ------------------------------------------------------


class _Arrays(NamedTuple):
    """What the checks read from a trace, as float64 arrays."""

    loss: np.ndarray  # (n,)
    grad_norms: np.ndarray  # (n, L)
    weight_norms: np.ndarray  # (n, L)
    layers: list[str]
    stop: int | None  # the first step with a non-finite value, if any


# What a check finds: present, first step, evidence.
_Finding = tuple[bool, int | None, str]


def _stop_step(loss: np.ndarray, grad_norms: np.ndarray, weight_norms: np.ndarray) -> int | None:
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


def _poor_loss(run: _Arrays, t: Thresholds) -> _Finding:
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


def _unstable_loss(run: _Arrays, t: Thresholds) -> _Finding:
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


def _nan_loss(run: _Arrays, t: Thresholds) -> _Finding:
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


def _growing_weights(run: _Arrays, t: Thresholds) -> _Finding:
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


def _nan_weights(run: _Arrays, t: Thresholds) -> _Finding:
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


def _grad_norm_above(run: _Arrays, t: Thresholds) -> _Finding:
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


class _SignCheck(NamedTuple):
    """One row of the table of signs."""

    name: str
    title: str  # may use {grad_norm:g}
    phrase: str  # for the summary sentence; may use {grad_norm:g}
    conclusive: bool
    check: Callable[[_Arrays, Thresholds], _Finding]

    def check_sign(self, run: _Arrays, t: Thresholds) -> Sign:
        present, first_step, evidence = self.check(run, t)
        title = self.title.format(grad_norm=t.grad_norm)
        return Sign(self.name, title, present, first_step, evidence, self.conclusive)


# The six signs in the article's order. The first three are "subtle" (dig
# deeper), the last three "less subtle": they confirm exploding gradients.
_SIGNS = (
    _SignCheck("poor_loss", "Poor loss (no traction)", "poor loss", False, _poor_loss),
    _SignCheck(
        "unstable_loss",
        "Unstable loss (large changes per update)",
        "unstable loss",
        False,
        _unstable_loss,
    ),
    _SignCheck("nan_loss", "Loss goes to NaN", "NaN loss", False, _nan_loss),
    _SignCheck(
        "growing_weights", "Weights grow very large", "fast-growing weights", True, _growing_weights
    ),
    _SignCheck("nan_weights", "Weights go to NaN", "NaN weights", True, _nan_weights),
    _SignCheck(
        "grad_norm_above_1",
        "Gradient norm above {grad_norm:g} in every layer",
        "gradient norms consistently above {grad_norm:g}",
        True,
        _grad_norm_above,
    ),
)

#: Machine names of the six signs, in the article's order.
SIGN_NAMES = tuple(entry.name for entry in _SIGNS)


# -- verdict -------------------------------------------------------------


def _verdict(signs: tuple[Sign, ...], t: Thresholds) -> tuple[str, str]:
    phrases = {entry.name: entry.phrase.format(grad_norm=t.grad_norm) for entry in _SIGNS}
    confirming = [phrases[s.name] for s in signs if s.present and s.conclusive]
    subtle = [phrases[s.name] for s in signs if s.present and not s.conclusive]
    if confirming:
        extra = f", with subtle signs: {', '.join(subtle)}" if subtle else ""
        return "exploding", (
            f"{len(confirming)} of 3 confirming signs of exploding gradients "
            f"({', '.join(confirming)}){extra}."
        )
    if subtle:
        return "suspect", (
            f"subtle signs only ({', '.join(subtle)}) and no confirming sign: "
            "dig deeper before blaming exploding gradients."
        )
    return "healthy", "none of the six signs of exploding gradients is present."
