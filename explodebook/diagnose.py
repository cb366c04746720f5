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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from explodebook import report
from explodebook.checks import expect, expect_trace, is_real, plain
from explodebook.signs import SIGNS, Arrays, SignCheck, stop_step
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
    stop = stop_step(loss, grad_norms, weight_norms)
    run = Arrays(loss, grad_norms, weight_norms, list(trace.layers), stop)
    with np.errstate(all="ignore"):
        signs = tuple(_sign(entry, run, thresholds) for entry in SIGNS)
    verdict, summary = _verdict(signs, thresholds)
    return Diagnosis(signs=signs, verdict=verdict, summary=summary, thresholds=thresholds)


#: Machine names of the six signs, in the article's order.
SIGN_NAMES = tuple(entry.name for entry in SIGNS)


# -- verdict -------------------------------------------------------------


def _sign(entry: SignCheck, run: Arrays, t: Thresholds) -> Sign:
    present, first_step, evidence = entry.check(run, t)
    title = entry.title.format(grad_norm=t.grad_norm)
    return Sign(entry.name, title, present, first_step, evidence, entry.conclusive)



def _verdict(signs: tuple[Sign, ...], t: Thresholds) -> tuple[str, str]:
    phrases = {entry.name: entry.phrase.format(grad_norm=t.grad_norm) for entry in SIGNS}
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
