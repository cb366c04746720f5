"""`explodebook.metrics`: each quantity against a computation by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explodebook import metrics
from explodebook.trace import Trace, locate_nonfinite

from _traces import hand_trace

LAYERS = ["dense_1", "dense_2", "output"]


def three_layer(grad_norms, clipped=None, weight_norms=None, loss=None) -> Trace:
    grads = np.asarray(grad_norms, dtype=np.float64)
    n = grads.shape[0]
    loss = np.ones(n) if loss is None else np.asarray(loss, dtype=np.float64)
    weights = np.ones((n, 3)) if weight_norms is None else np.asarray(weight_norms, float)
    step, kind, layer = locate_nonfinite(loss, grads, weights, LAYERS)
    return Trace(
        spec=None, framework="torch", layers=LAYERS, loss=loss,
        grad_norm_total=np.sqrt((grads**2).sum(axis=1)), grad_norms=grads,
        clipped_grad_norms=grads if clipped is None else np.asarray(clipped, float),
        grad_max_abs=grads, weight_norms=weights, first_nonfinite_step=step,
        first_nonfinite_kind=kind, first_nonfinite_layer=layer,
    )  # fmt: skip


def test_status_says_where_a_run_went_non_finite_or_its_final_loss():
    assert metrics.status(hand_trace([4.0, 2.0, np.inf, np.nan])) == "non-finite at step 2"
    # final_loss: the mean of the last 50 finite losses.
    assert metrics.status(hand_trace([3.0, 1.0, 2.0])) == "final loss 2"
    assert metrics.status(hand_trace([1.23456])) == "final loss 1.23"


def test_phase_says_exploded_trained_or_stalled():
    assert metrics.phase(hand_trace([4.0, 2.0, np.inf, 0.0]), 10.0) == "exploded"
    # final loss (3 + 1 + 2) / 3 = 2: trained below 2.5, stalled below 2.0 (not strictly)
    assert metrics.phase(hand_trace([3.0, 1.0, 2.0]), 2.5) == "trained"
    assert metrics.phase(hand_trace([3.0, 1.0, 2.0]), 2.0) == "stalled"
    # the last window: (1 + 2) / 2 = 1.5
    assert metrics.phase(hand_trace([3.0, 1.0, 2.0]), 1.6, window=2) == "trained"
    for bad in (0.0, -1.0, True, "1"):
        with pytest.raises(ValueError, match="trained_below"):
            metrics.phase(hand_trace([1.0]), bad)


def test_relative_to_first_divides_by_the_first_finite_positive_value():
    values = np.array([[0.0, np.nan, np.nan], [2.0, 4.0, np.nan], [6.0, np.inf, np.nan]])
    expected = np.array([[0.0, np.nan, np.nan], [1.0, 1.0, np.nan], [3.0, np.inf, np.nan]])
    np.testing.assert_array_equal(metrics.relative_to_first(values), expected)
    steps, reference = metrics.first_positive(values)
    assert steps[:2].tolist() == [1, 1] and reference[:2].tolist() == [2.0, 4.0]
    assert math.isnan(reference[2])
    assert metrics.relative_to_first(np.empty((0, 2))).shape == (0, 2)


def test_loss_changes_swing_and_update_factor():
    loss = np.array([100.0, 10.0, 1000.0, np.nan, 1000.0])
    change, steps = metrics.log_loss_changes(loss)
    np.testing.assert_allclose(change, [math.log(0.1), math.log(100)])
    assert steps.tolist() == [1, 2]
    # swing drops the NaN first: |log10| of 10->... : 1, 2, 0 -> median 1.
    assert metrics.swing(hand_trace(loss)) == pytest.approx(1.0)
    assert math.isnan(metrics.swing(hand_trace([1.0])))
    factor = metrics.update_factor(hand_trace(loss))
    np.testing.assert_allclose(factor[:2], [10.0, 100.0])
    assert np.isnan(factor[2:]).all()
    median, jumps = metrics.loss_change_stats(hand_trace(loss))
    assert median == pytest.approx(math.sqrt(10 * 100))  # median of |log|: log 10, log 100
    assert jumps == 0.5  # x100 is a jump, /10 is not (only increases count)


def test_growth_is_the_peak_gradient_norm_before_divergence_over_the_first():
    grads = np.array([[3.0, 4.0, 0.0], [6.0, 8.0, 0.0], [30.0, 40.0, 0.0], [np.inf, 1.0, 0.0]])
    # totals 5, 10, 50, then non-finite: the peak before it over the first.
    assert metrics.growth(three_layer(grads)) == pytest.approx(10.0)


def test_clipping_metrics_count_steps_where_some_layer_shrank():
    grads = np.array([[1.0, 2.0, 3.0]] * 4)
    clipped = grads.copy()
    clipped[1, 2] = 1.0
    clipped[3, 0] = 0.5
    clipped[2, 1] = 2.0 * (1 - 1e-9)  # float rounding, not clipping
    trace = three_layer(grads, clipped)
    assert metrics.clipped_steps(trace).tolist() == [False, True, False, True]
    assert metrics.fraction_clipped(trace) == 0.5
    assert metrics.last_clipped_step(trace) == 3
    assert metrics.last_clipped_step(three_layer(grads)) is None


def test_layer_ratios_and_total_weight_norm():
    grads = np.array([[8.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    weights = np.array([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]])
    trace = three_layer(grads, weight_norms=weights)
    assert metrics.first_layer_gradient(trace) == 8.0
    assert metrics.first_to_last(trace) == 4.0  # dense_1 over dense_2 at step 0
    np.testing.assert_allclose(metrics.total_weight_norm(trace), [3.0, 5.0])
