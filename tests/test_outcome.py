"""`outcome`: one summary row per trace, judged against the mean predictor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explodebook import RunSpec, run
from explodebook.data import dataset_for
from explodebook.outcome import DEFAULT_TOLERANCE, mean_predictor_loss, outcome

from _traces import hand_trace


def test_mean_predictor_loss_is_target_variance():
    adding = RunSpec(model="rnn", task="adding", seq_len=10)
    assert mean_predictor_loss(adding) == pytest.approx(1 / 6, rel=0.1)
    assert mean_predictor_loss(RunSpec(task="regression-scaled")) == pytest.approx(1.0, rel=1e-4)
    # The unscaled target: variance in the tens of thousands.
    _, y = dataset_for(RunSpec())
    assert mean_predictor_loss(RunSpec()) == pytest.approx(float(np.var(y)), rel=1e-5)
    assert mean_predictor_loss(RunSpec()) > 1e3


REF = 1000.0


def _reference() -> float:
    # Hand-built traces have no RunSpec, so no data set: outcome takes the
    # mean predictor's loss from the caller.
    return REF


def test_a_falling_loss_trains_and_converges_where_it_crosses_the_line():
    ref = _reference()
    loss = np.concatenate([np.full(100, ref), np.full(100, 0.01 * ref)])
    o = outcome(hand_trace(loss), baseline=REF)
    assert o.finite and o.trained
    assert o.relative_loss == pytest.approx(0.01)
    # The trailing 25-step mean first stays below a quarter of the
    # reference once at most 6 of its 25 steps are the high ones: the window
    # of steps 94..118 (steps are numbered from 0, like a trace's rows).
    assert o.steps_to_converge == 118
    assert o.steps == 200


def test_a_loss_that_comes_back_up_has_no_convergence_step():
    ref = _reference()
    loss = np.concatenate([np.full(100, 0.01 * ref), np.full(60, 0.5 * ref)])
    o = outcome(hand_trace(loss), baseline=REF)
    assert not o.trained and o.steps_to_converge is None


def test_a_diverged_run_is_not_trained_even_if_its_last_finite_loss_was_low():
    ref = _reference()
    loss = np.concatenate([np.full(80, 0.01 * ref), [np.nan] * 3])
    o = outcome(hand_trace(loss), baseline=REF)
    assert not o.finite and not o.trained
    assert o.first_nonfinite_step == 80
    assert o.steps_to_converge is None
    assert math.isfinite(o.final_loss)


def test_max_grad_norm_ignores_nonfinite_steps():
    loss = np.array([1.0, 1.0, np.nan])
    grads = np.array([[1.0, 0.0], [3.0, 4.0], [np.inf, 1.0]])
    o = outcome(hand_trace(loss, grad_norms=grads), baseline=REF)
    assert o.max_grad_norm == pytest.approx(5.0)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), "0.25"])
def test_tolerance_must_be_in_the_unit_interval(bad):
    with pytest.raises(ValueError, match="tolerance"):
        outcome(hand_trace(np.ones(5)), tolerance=bad, baseline=REF)


def test_classic_run_fails_and_clipped_run_trains_in_both_frameworks():
    for fw in ("torch", "keras"):
        classic = outcome(run(RunSpec(steps=400), fw))
        assert not classic.finite and not classic.trained
        clipped = outcome(run(RunSpec(steps=400, global_clipnorm=1.0), fw))
        assert clipped.trained, (fw, clipped)
        assert clipped.steps_to_converge is not None
        assert clipped.relative_loss < DEFAULT_TOLERANCE


def test_describe_change_reads_like_keyword_arguments():
    from explodebook.outcome import describe_change

    assert describe_change({}) == "(none)"
    assert describe_change({"cell": "lstm", "l2": 0.01}) == "cell='lstm', l2=0.01"


def test_outcome_table_has_a_row_per_variant_and_keeps_gaps():
    from explodebook.outcome import outcome_table

    base = RunSpec(steps=60)
    table = outcome_table(
        base, {"baseline": {}, "clipped": {"global_clipnorm": 1.0}, "lstm": None}, ("torch",)
    )
    assert list(table.index) == ["baseline", "clipped", "lstm"]
    assert table.loc["clipped", ("", "change")] == "global_clipnorm=1.0"
    assert not table.loc["baseline", ("torch", "finite")]
    assert table.loc["baseline", ("torch", "first_nonfinite_step")] == 8
    assert table.loc["clipped", ("torch", "finite")]
    assert table.loc["lstm", ("", "change")] == "(does not apply)"
    assert table.loc["lstm", ("torch", "trained")] is None
    assert table.attrs["outcomes"]["clipped"]["torch"].framework == "torch"


def test_outcome_table_names_the_bad_variant():
    from explodebook import SpecError
    from explodebook.outcome import outcome_table

    with pytest.raises(SpecError, match="variant 'oops'.*learning_rate"):
        outcome_table(RunSpec(steps=5), {"oops": {"learning_rate": -1.0}}, ("torch",))
    with pytest.raises(SpecError, match="variant 'typo'"):
        outcome_table(RunSpec(steps=5), {"typo": {"learnig_rate": 0.1}}, ("torch",))
