"""Chapter 6's conclusions (LSTM networks), pinned through the package.

The chapter's prose states these, in both frameworks; if a change to the
package made one false, the prose would be wrong, so this fails first.
Bounds are generous: they pin the conclusion, not the float.
"""

from __future__ import annotations

import numpy as np
import pytest

from explodebook import RunSpec, run
from explodebook.timesteps import input_gradient_norms

from _chapter import run_cells

FRAMEWORKS = ("torch", "keras")
BASELINE = 1 / 6  # always answering 1.0 on the adding problem

FAILING = RunSpec(model="rnn", cell="simple", width=32, seq_len=50, init="orthogonal",
                  init_scale=2.0, learning_rate=0.1, steps=200)  # fmt: skip
ADDING = RunSpec(model="rnn", width=32, init="xavier", optimizer="adam",
                 learning_rate=0.01, steps=400, seq_len=20)  # fmt: skip
LONG_LSTM = RunSpec(model="rnn", cell="lstm", width=32, seq_len=150, init="orthogonal",
                    init_scale=4.0, steps=40)  # fmt: skip


def reach(spec: RunSpec, framework: str) -> float:
    """Gradient at the first input over gradient at the last."""
    norms = input_gradient_norms(spec, framework)
    return float(norms[0] / norms[-1])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_lstm_fixes_the_failing_baseline(framework: str) -> None:
    simple = run(FAILING, framework)
    lstm = run(FAILING.replace(cell="lstm"), framework)
    assert simple.diverged and 10 <= simple.first_nonfinite_step <= 100
    # The prose: at that step the loss has overflowed to infinity (not NaN).
    assert np.isinf(simple.loss[simple.first_nonfinite_step])
    assert not lstm.diverged and lstm.steps_run == FAILING.steps
    assert simple.grad_norm_total[0] > 100 * lstm.grad_norm_total[0]
    assert lstm.grad_norm_total.max() < 100
    # ...but it does not learn the task with SGD at this budget.
    assert lstm.final_loss() > BASELINE


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_how_far_back_the_gradient_reaches(framework: str) -> None:
    xavier = RunSpec(model="rnn", width=32, seq_len=80, init="xavier")
    gain2 = xavier.replace(init="orthogonal", init_scale=2.0)
    assert reach(xavier, framework) < 1e-4  # simple RNN: vanishes
    assert reach(xavier.replace(cell="lstm"), framework) > 0.02  # LSTM: reaches back
    assert reach(xavier.replace(cell="gru"), framework) < 1e-6  # GRU at init: vanishes
    assert reach(gain2, framework) > 1e3  # simple RNN, gain 2: explodes
    assert 0.1 < reach(gain2.replace(cell="lstm"), framework) < 100  # LSTM: contained


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_gated_cells_learn_longer_sequences(framework: str) -> None:
    final = {cell: run(ADDING.replace(cell=cell), framework).final_loss()
             for cell in ("simple", "lstm", "gru")}  # fmt: skip
    assert final["simple"] > 0.8 * BASELINE
    assert final["lstm"] < 0.1 * BASELINE
    assert final["gru"] < 0.1 * BASELINE
    assert run(ADDING.replace(seq_len=10), framework).final_loss() < 0.3 * BASELINE


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_lstms_can_still_explode(framework: str) -> None:
    assert reach(LONG_LSTM, framework) > 100
    assert reach(LONG_LSTM.replace(init_scale=1.0), framework) < 0.1
    plain = run(LONG_LSTM, framework)
    clipped = run(LONG_LSTM.replace(global_clipnorm=1.0), framework)
    assert not plain.diverged and not clipped.diverged
    assert plain.grad_norm_total[0] > 1000
    weights = plain.weight_norms[:, 0]
    assert weights.max() > 5 * weights[0]
    clipped_weights = clipped.weight_norms[:, 0]
    assert np.all(clipped_weights < 1.1 * clipped_weights[0])


def test_the_lstm_gradient_reaches_step_1_through_the_gates_not_the_cell() -> None:
    # Issue 18, item 14: the forget-gate product shrinks the cell path to
    # almost nothing over 79 steps, yet the gradient reaches step 1; the
    # chapter's own hand-written LSTM shows which path carries it.
    chapter = run_cells("06", through="path_reach = ")
    assert chapter["unit_products"].max() < 1e-4  # the forget-gate product, best unit
    path_reach = chapter["path_reach"]
    assert path_reach["cell state only"] < 1e-5  # the cell path alone vanishes
    assert path_reach["both paths"] > 0.02  # through h, the gates and U: it reaches


def test_forget_bias_moves_the_reach_as_the_exercise_says() -> None:
    # lstm-ex-forget: bias 0 shrinks the reach by orders of magnitude, bias 3
    # makes the first input's gradient larger than the last's.
    chapter = run_cells("06", through="forget_reach = ")
    reach = chapter["forget_reach"]
    assert reach[0.0] < 1e-4 * reach[1.0]
    assert reach[3.0] > 1 > reach[1.0] > 0.02


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_gru_rises_back_in_time_but_less_than_the_lstm(framework: str) -> None:
    # lstm-ex-gru-explode: neither gated cell is immune at gain 4, T = 150.
    gru = reach(LONG_LSTM.replace(cell="gru"), framework)
    assert 1 < gru < reach(LONG_LSTM, framework) / 5


def test_a_longer_budget_takes_the_lstm_off_the_plateau_at_t_40() -> None:
    # lstm-ex-longer: at T = 40 the LSTM learns, given 1000 steps.
    trace = run(ADDING.replace(cell="lstm", seq_len=40, steps=1000))
    smooth = np.convolve(trace.loss, np.ones(25) / 25, mode="valid")
    assert smooth[:300].min() > 0.1  # still on the plateau early on
    assert smooth.min() < 0.1 and trace.final_loss() < 0.1 * BASELINE


def test_the_signs_miss_a_burst_of_explosive_updates_in_an_lstm() -> None:
    # lstm-ex-clip: no NaN, weights grow by less than diagnose's 100x, so the
    # verdict is only "suspect"; with clipping it is "healthy".
    from explodebook import diagnose

    hard = FAILING.replace(cell="lstm", init_scale=4.0, seq_len=150, steps=100)
    plain = run(hard)
    weights = plain.weight_norms[:, 0]
    assert not plain.diverged and plain.grad_norm_total[0] > 1000
    assert 10 < weights.max() / weights[0] < 100
    assert diagnose(plain).verdict == "suspect"
    assert diagnose(run(hard.replace(global_clipnorm=1.0))).verdict == "healthy"
