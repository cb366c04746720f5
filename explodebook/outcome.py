"""Did a run train? One comparable summary row per trace.

The fix chapters and the comparison page ask the same questions of every
run: did it stay finite, did it learn, how large did the gradient get, how
long did it take to learn. `outcome` answers them with one definition, so
that "trained" means the same thing on every page.

"Learned" is judged against the *mean predictor*: a model that always
outputs the mean training target has a mean squared error equal to the
target's variance (1/6 on the adding problem, tens of thousands on the
unscaled regression target). A run has trained when its final loss is below
``tolerance`` times that (by default a quarter), whatever the scale of the
target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from explodebook.checks import (
    check_frameworks,
    describe,
    expect,
    expect_spec,
    expect_trace,
    is_real,
)
from explodebook.data import dataset_for
from explodebook.spec import RunSpec
from explodebook.trace import Trace

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Outcome",
    "outcome",
    "outcome_table",
    "describe_change",
    "mean_predictor_loss",
    "DEFAULT_TOLERANCE",
]

#: A run trained when its final loss is below this fraction of the mean
#: predictor's loss.
DEFAULT_TOLERANCE = 0.25

# Steps averaged to decide when a run converged: single SGD batches are too
# noisy to say "the loss is below the line from here on".
_SMOOTHING = 25


class Outcome(NamedTuple):
    """How one run ended.

    Attributes:
        framework: ``"torch"`` or ``"keras"``.
        finite: the run never produced a NaN or infinite value.
        trained: finite, and the final loss is below ``tolerance`` times
            the mean predictor's loss.
        final_loss: `Trace.final_loss` (mean of the last 50 finite steps;
            for a run that diverged, the steps just before the NaN).
        relative_loss: ``final_loss / mean_predictor_loss``.
        max_grad_norm: largest finite global gradient norm (before
            clipping), NaN if no step was finite.
        first_nonfinite_step: step (numbered from 0, like a `Trace`'s rows)
            of the first NaN/inf, or None.
        steps_to_converge: first step (from 0) from which the mean loss of the last
            25 steps stays below the trained line to the end; None if it
            never does (or the run is not trained).
        steps: steps recorded.
        wall_time: seconds the training loop took (it varies from machine
            to machine and run to run, unlike everything else here).
    """

    framework: str
    finite: bool
    trained: bool
    final_loss: float
    relative_loss: float
    max_grad_norm: float
    first_nonfinite_step: int | None
    steps_to_converge: int | None
    steps: int
    wall_time: float


def mean_predictor_loss(spec: RunSpec) -> float:
    """Mean squared error of always predicting the mean training target.

    Equal to the variance of the spec's training targets: 1/6 on the adding
    problem (up to sampling), about 1 on ``"regression-scaled"``.

    Raises:
        TypeError: ``spec`` is not a `RunSpec`.
    """
    expect_spec(spec, "mean_predictor_loss()")
    _, y = dataset_for(spec)
    return float(np.var(y.astype(np.float64)))


def outcome(
    trace: Trace, tolerance: float = DEFAULT_TOLERANCE, *, baseline: float | None = None
) -> Outcome:
    """Summarize a trace as one comparable `Outcome`.

    Args:
        trace: a finished run.
        tolerance: the run trained when its final loss is below this
            fraction of the mean predictor's loss; in (0, 1].
        baseline: the loss of predicting the mean target (for MSE, the
            variance of the training targets). ``None`` computes it from
            ``trace.spec``'s data set (`mean_predictor_loss`); a trace of a
            monitored model has no spec, so its caller must give it.

    Returns:
        the `Outcome`.

    Raises:
        TypeError: if ``trace`` is not a `Trace`.
        ValueError: if ``tolerance`` is not a number in (0, 1], if
            ``baseline`` is not a positive finite number, or if it is
            missing for a trace without a spec.
    """
    expect_trace(trace, "outcome()")
    _check_tolerance(tolerance)
    if baseline is None:
        if trace.spec is None:
            raise ValueError(
                "outcome() needs baseline= for this trace: it comes from a monitored "
                f"model ({trace.extra.get('model', 'no RunSpec')}), so there is no "
                "data set to compute the mean predictor's loss from; pass the loss "
                "of predicting the mean of your training targets (for MSE: "
                "baseline=float(np.var(y_train)))"
            )
        reference = mean_predictor_loss(trace.spec)
    else:
        if not is_real(baseline) or not math.isfinite(baseline) or baseline <= 0:
            raise ValueError(
                f"outcome(baseline={baseline!r}) is not allowed: expected a positive "
                "finite number (the mean predictor's loss)"
            )
        reference = float(baseline)
    line = tolerance * reference
    finite = trace.first_nonfinite_step is None
    final = trace.final_loss()
    trained = finite and math.isfinite(final) and final < line

    norms = np.asarray(trace.grad_norm_total, dtype=np.float64)
    norms = norms[np.isfinite(norms)]
    max_norm = float(norms.max()) if norms.size else float("nan")

    return Outcome(
        framework=trace.framework,
        finite=finite,
        trained=trained,
        final_loss=final,
        relative_loss=final / reference,
        max_grad_norm=max_norm,
        first_nonfinite_step=trace.first_nonfinite_step,
        steps_to_converge=_steps_to_converge(trace.loss, line) if trained else None,
        steps=len(trace.loss),
        wall_time=float(trace.wall_time),
    )


def _check_tolerance(tolerance: Any) -> None:
    # is_real: numpy numbers are fine, True is not the number 1.
    if not (is_real(tolerance) and 0 < tolerance <= 1):
        raise ValueError(f"tolerance={tolerance!r} must be a number in (0, 1]")


def _steps_to_converge(loss: np.ndarray, line: float) -> int | None:
    """First step from which the trailing mean loss stays below ``line``.

    Steps are numbered like a `Trace`'s rows, from 0. The trailing mean at
    step s averages steps s - 24 .. s; a run shorter than the window is
    judged by its overall mean, at its last step.
    """
    loss = np.asarray(loss, dtype=np.float64)
    window = min(_SMOOTHING, loss.size)
    # smooth[k] averages steps k .. k + window - 1: the trailing mean at
    # step k + window - 1.
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    above = np.flatnonzero(~(smooth < line))
    if above.size == 0:
        return window - 1
    last = int(above[-1])
    if last == smooth.size - 1:
        return None
    return last + window


def describe_change(change: Mapping[str, Any] | None) -> str:
    """A spec change as the keyword arguments a reader would type.

    ``{"cell": "lstm", "l2": 0.01}`` becomes ``"cell='lstm', l2=0.01"``;
    an empty change (or ``None``) is ``"(none)"``.

    Raises:
        TypeError: ``change`` is not a mapping (or ``None``).
    """
    if change is not None:
        expect(change, Mapping, "describe_change()", "a mapping of RunSpec fields to values")
    if not change:
        return "(none)"
    return ", ".join(f"{key}={value!r}" for key, value in change.items())


def outcome_table(
    base: RunSpec,
    variants: Mapping[str, Mapping[str, Any] | None],
    frameworks: str | Sequence[str] = ("torch", "keras"),
    tolerance: float = DEFAULT_TOLERANCE,
) -> pd.DataFrame:
    """Run every variant of ``base`` in every framework; one row per variant.

    Args:
        base: the failing baseline.
        variants: row name -> the fields to change in ``base`` (``{}`` for
            the baseline itself). ``None`` marks a variant that does not
            apply to this baseline: its row is kept, with empty cells, so a
            table of fixes shows the gap instead of hiding it.
        frameworks: which frameworks to run, each through the cache of
            `explodebook.run`: one name or a sequence of them.
        tolerance: see `outcome`.

    Returns:
        a DataFrame indexed by variant name, with a ``change`` column (the
        spec change, `describe_change`) and, for each framework ``fw``, the
        columns ``(fw, field)`` for every `Outcome` field but
        ``framework``; the ``Outcome`` objects themselves are in
        ``df.attrs["outcomes"][name][fw]``.

    Raises:
        TypeError: ``base`` is not a `RunSpec`, or ``variants`` (or one of
            its values) is not a mapping.
        ValueError: a framework or ``tolerance`` is not allowed.
        explodebook.spec.SpecError: if a variant names a bad field or value (the
            message says which variant).
    """
    import pandas as pd

    from explodebook import run
    from explodebook.spec import SpecError

    # Every argument is checked before the first (possibly long) run.
    expect_spec(base, "outcome_table()")
    expected = "a mapping from row name to a dict of RunSpec changes (or None)"
    expect(variants, Mapping, "outcome_table(variants=...)", expected)
    for name, change in variants.items():
        if change is not None and not isinstance(change, Mapping):
            raise TypeError(
                f"outcome_table(variants=...) expects {expected}, "
                f"got variants[{name!r}] = {describe(change)}"
            )
    frameworks = check_frameworks(frameworks, "outcome_table(frameworks=...)")
    _check_tolerance(tolerance)

    fields = [f for f in Outcome._fields if f != "framework"]
    columns = pd.MultiIndex.from_tuples(
        [("", "change")] + [(fw, f) for fw in frameworks for f in fields]
    )
    rows: list[list[Any]] = []
    outcomes: dict[str, dict[str, Outcome]] = {}
    for name, change in variants.items():
        if change is None:
            rows.append(["(does not apply)"] + [None] * (len(columns) - 1))
            continue
        try:
            spec = base.replace(**change)
        except (SpecError, TypeError) as err:
            raise SpecError(f"variant {name!r}: {err}") from err
        outcomes[name] = {fw: outcome(run(spec, fw), tolerance) for fw in frameworks}
        row: list[Any] = [describe_change(change)]
        for fw in frameworks:
            row += [getattr(outcomes[name][fw], f) for f in fields]
        rows.append(row)
    table = pd.DataFrame(rows, index=list(variants), columns=columns)
    table.attrs["outcomes"] = outcomes
    return table
