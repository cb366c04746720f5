"""diagnose(): each of the article's six signs, on runs and traces built to show it.

Expected values are worked out here from the trace arrays with plain loops
and numpy, not by calling the checks' own helpers.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from explodebook.backends.torch import run
from explodebook.diagnose import SIGN_NAMES, Thresholds, diagnose
from explodebook.spec import RunSpec
from explodebook.trace import Trace

from _traces import LAYERS, hand_trace  # noqa: E402


# Real runs, each a few hundred milliseconds at most.


@pytest.fixture(scope="module")
def classic() -> Trace:
    """The classic set-up: unscaled target, SGD with momentum; diverges at step 8."""
    return run(RunSpec())


@pytest.fixture(scope="module")
def healthy() -> Trace:
    return run(RunSpec(task="regression-scaled", steps=400))


@pytest.fixture(scope="module")
def no_stop() -> Trace:
    """The classic set-up trained on past the first NaN."""
    return run(RunSpec(stop_on_nonfinite=False, steps=12))


# -- verdicts ------------------------------------------------------------


def test_classic_run_is_exploding_with_nan_loss_at_the_trace_step(classic: Trace) -> None:
    diagnosis = diagnose(classic)
    assert diagnosis.verdict == "exploding"
    assert any(s.present and s.conclusive for s in diagnosis.signs)
    sign = diagnosis["nan_loss"]
    assert sign.present
    first_bad = next(t for t, v in enumerate(classic.loss) if not math.isfinite(v))
    assert sign.first_step == classic.first_nonfinite_step == first_bad


def test_healthy_run_is_healthy(healthy: Trace) -> None:
    diagnosis = diagnose(healthy)
    assert diagnosis.verdict == "healthy"
    assert not [s.name for s in diagnosis.signs if s.present and s.conclusive]
    assert diagnosis.present == []


def test_subtle_signs_alone_make_a_suspect() -> None:
    # The loss swings x4 up and down every update, gradients stay small.
    trace = hand_trace([1.0, 4.0] * 20)
    diagnosis = diagnose(trace)
    assert diagnosis["unstable_loss"].present
    assert diagnosis.verdict == "suspect"


def test_signs_come_in_the_articles_order_with_its_split(healthy: Trace) -> None:
    diagnosis = diagnose(healthy)
    assert tuple(s.name for s in diagnosis.signs) == SIGN_NAMES
    assert [s.conclusive for s in diagnosis.signs] == [False] * 3 + [True] * 3


# -- the six signs -------------------------------------------------------


def test_poor_loss_when_the_loss_barely_moves() -> None:
    trace = run(RunSpec(task="regression-scaled", learning_rate=1e-5, steps=50))
    start, end = np.median(trace.loss[:10]), np.median(trace.loss[-10:])
    assert end > 0.5 * start  # no traction, seen by hand
    assert diagnose(trace)["poor_loss"].present


def test_poor_loss_on_flat_and_diverged_traces_but_not_on_falling_ones() -> None:
    assert diagnose(hand_trace(np.ones(40)))["poor_loss"].present
    assert not diagnose(hand_trace(np.geomspace(1.0, 0.01, 40)))["poor_loss"].present
    diverged = diagnose(hand_trace([1.0, 0.5, 0.2, np.nan]))["poor_loss"]
    assert diverged.present and diverged.first_step == 3


def test_unstable_loss_on_the_classic_run(classic: Trace) -> None:
    loss = classic.loss[np.isfinite(classic.loss)]
    factors = [max(b / a, a / b) for a, b in zip(loss[:-1], loss[1:])]
    assert np.median(factors) > 2.0  # by hand: big changes update to update
    sign = diagnose(classic)["unstable_loss"]
    assert sign.present
    first_jump = next(t + 1 for t, (a, b) in enumerate(zip(loss[:-1], loss[1:])) if b / a >= 10)
    assert sign.first_step == first_jump


def test_unstable_loss_from_rare_large_jumps() -> None:
    loss = np.geomspace(1.0, 0.1, 60)
    jumps = [10, 25, 40]  # 3 of 59 updates (5.1%) jump x20
    loss[jumps] *= 20
    sign = diagnose(hand_trace(loss))["unstable_loss"]
    assert sign.present and sign.first_step == 10
    assert not diagnose(hand_trace(np.geomspace(1.0, 0.1, 60)))["unstable_loss"].present


def test_nan_loss_first_step() -> None:
    sign = diagnose(hand_trace([1.0, 0.5, np.inf, np.nan]))["nan_loss"]
    assert sign.present and sign.first_step == 2
    assert "inf" in sign.evidence


def test_growing_weights_before_any_nan() -> None:
    trace = run(RunSpec(steps=8))  # the classic run, stopped before its NaN
    assert np.isfinite(trace.weight_norms).all()
    ratio = trace.weight_norms / trace.weight_norms[0]
    expected = next(t for t in range(trace.steps_run) if (ratio[t] >= 100).any())
    sign = diagnose(trace)["growing_weights"]
    assert sign.present and sign.first_step == expected


def test_growing_weights_absent_on_the_healthy_run(healthy: Trace) -> None:
    assert (healthy.weight_norms / healthy.weight_norms[0]).max() < 100
    assert not diagnose(healthy)["growing_weights"].present


def test_nan_weights_when_training_goes_on_past_nan(no_stop: Trace) -> None:
    expected = next(
        t for t in range(no_stop.steps_run) if not np.isfinite(no_stop.weight_norms[t]).all()
    )
    sign = diagnose(no_stop)["nan_weights"]
    assert sign.present and sign.first_step == expected
    assert diagnose(no_stop).verdict == "exploding"


def test_stopped_run_never_shows_nan_weights(classic: Trace) -> None:
    # The run stops at the non-finite gradient, before it reaches the weights.
    assert np.isfinite(classic.weight_norms).all()
    sign = diagnose(classic)["nan_weights"]
    assert not sign.present
    assert f"step {classic.first_nonfinite_step}" in sign.evidence


def test_grad_norm_above_1_on_the_unscaled_target() -> None:
    trace = run(RunSpec(learning_rate=1e-3, steps=100))
    every = [all(g > 1.0 for g in row) for row in trace.grad_norms]
    assert sum(every) / len(every) >= 0.9
    sign = diagnose(trace)["grad_norm_above_1"]
    assert sign.present and sign.first_step == every.index(True)


def test_grad_norm_above_1_needs_every_layer() -> None:
    n = 40
    grads = np.column_stack([np.full(n, 5.0), np.where(np.arange(n) % 2 == 0, 5.0, 0.5)])
    sign = diagnose(hand_trace(np.geomspace(1, 0.01, n), grad_norms=grads))["grad_norm_above_1"]
    assert not sign.present  # each step has some layer below 1 half the time
    assert "50%" in sign.evidence and "dense_1 100%" in sign.evidence
    assert "output 50%" in sign.evidence


# -- thresholds ----------------------------------------------------------


def test_threshold_overrides_change_the_verdict(healthy: Trace, classic: Trace) -> None:
    assert diagnose(healthy, Thresholds(grad_norm=0.01)).verdict == "exploding"
    assert diagnose(healthy, grad_norm=0.01).verdict == "exploding"
    # Strict enough that nothing confirms: only the subtle signs remain.
    strict = Thresholds(weight_growth=1e30, grad_fraction=1.0, grad_norm=1e30)
    assert diagnose(classic, strict).verdict == "suspect"
    # Keywords apply on top of the given thresholds.
    assert diagnose(classic, strict, grad_norm=1.0).verdict == "exploding"
    assert diagnose(classic, strict).thresholds == strict


@pytest.mark.parametrize(
    "field, value",
    [
        ("window", 0),
        ("window", 2.5),
        ("traction_fraction", -0.1),
        ("unstable_ratio", 1.0),
        ("jump_ratio", float("nan")),
        ("jump_fraction", 1.5),
        ("weight_growth", float("inf")),
        ("grad_norm", 0),
        ("grad_fraction", 0.0),
        ("min_steps", True),
    ],
)
def test_invalid_thresholds_raise(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"Thresholds\.{field}=.*expected"):
        Thresholds(**{field: value})


def test_unknown_override_raises(healthy: Trace) -> None:
    with pytest.raises(ValueError, match="grad_norms.*allowed"):
        diagnose(healthy, grad_norms=2.0)


# -- odd traces ----------------------------------------------------------


ODD_TRACES = {
    "nan_from_step_0": lambda: hand_trace(
        [np.nan] * 3, np.full((3, 2), np.nan), np.full((3, 2), np.nan)
    ),
    "inf_at_step_1": lambda: hand_trace([2.0, np.inf], [[3.0, 3.0], [np.inf, np.nan]]),
    "single_step": lambda: hand_trace([2.0]),
    "empty": lambda: hand_trace(np.zeros(0)),
    "zero_loss_and_weights": lambda: hand_trace(np.zeros(10), np.zeros((10, 2)), np.zeros((10, 2))),
    "all_nan_grads": lambda: hand_trace(np.ones(10), np.full((10, 2), np.nan)),
}


@pytest.mark.parametrize("name", list(ODD_TRACES))
def test_odd_traces_give_six_signs_without_warnings(name: str) -> None:
    trace = ODD_TRACES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diagnosis = diagnose(trace)
        diagnosis._repr_html_()
        diagnosis.to_markdown()
    assert len(diagnosis.signs) == 6
    assert diagnosis.verdict in ("exploding", "suspect", "healthy")
    assert all(s.evidence.endswith(".") for s in diagnosis.signs)


def test_diverged_at_step_0_is_flagged_at_step_0() -> None:
    diagnosis = diagnose(ODD_TRACES["nan_from_step_0"]())
    assert diagnosis["nan_loss"].first_step == 0
    assert diagnosis["nan_weights"].first_step == 0
    assert diagnosis["poor_loss"].first_step == 0
    assert diagnosis.verdict == "exploding"


def test_read_only_arrays_are_fine(classic: Trace) -> None:
    for name in ("loss", "grad_norms", "weight_norms"):
        getattr(classic, name).flags.writeable = False
    try:
        assert diagnose(classic).verdict == "exploding"
    finally:
        for name in ("loss", "grad_norms", "weight_norms"):
            getattr(classic, name).flags.writeable = True


# -- presentation --------------------------------------------------------


def test_rows_html_and_markdown(classic: Trace) -> None:
    diagnosis = diagnose(classic)
    rows = diagnosis.to_rows()
    assert [r["name"] for r in rows] == list(SIGN_NAMES)
    assert set(rows[0]) == {"name", "title", "present", "first_step", "evidence", "conclusive"}
    html = diagnosis._repr_html_()
    assert html.count("<tr") == 7  # header + six signs
    assert "✓" in html and "–" in html and "exploding" in html
    markdown = diagnosis.to_markdown()
    assert markdown.count("\n| ") == 7
    assert diagnosis.summary in markdown
    with pytest.raises(KeyError, match="no sign named"):
        diagnosis["nan_gradients"]
