"""The comparison page's conclusions, pinned through the package in both frameworks.

Each test states a sentence of `chapters/09_fixes_compared.md`; the runs
are the page's own (same specs), so a change in the package that changes a
conclusion fails here before the page says something false.
"""

from __future__ import annotations

import pytest

from explodebook import RunSpec
from explodebook.outcome import outcome_table

FRAMEWORKS = ("torch", "keras")

MLP_BASE = RunSpec()
RNN_BASE = RunSpec(model="rnn", cell="simple", task="adding", seq_len=8, width=32,
                   init="orthogonal", init_scale=1.0, learning_rate=0.1, momentum=0.9,
                   batch_size=32, steps=800)

MLP_VARIANTS = {
    "baseline": {},
    "batch": {"batch_size": 8},
    "tanh": {"activation": "tanh"},
    "global": {"global_clipnorm": 1.0},
    "per-variable": {"clipnorm": 1.0},
    "l2": {"l2": 0.01},
    "lr": {"learning_rate": 0.001},
    "scaled": {"task": "regression-scaled"},
}
RNN_VARIANTS = {
    "baseline": {},
    "batch": {"batch_size": 8},
    "truncation": {"truncation": 4},
    "relu": {"activation": "relu"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
    "global": {"global_clipnorm": 1.0},
    "per-variable": {"clipnorm": 1.0},
    "l2": {"l2": 0.01},
    "lr": {"learning_rate": 0.01},
}


@pytest.fixture(scope="module")
def mlp():
    return outcome_table(MLP_BASE, MLP_VARIANTS, FRAMEWORKS).attrs["outcomes"]


@pytest.fixture(scope="module")
def rnn():
    return outcome_table(RNN_BASE, RNN_VARIANTS, FRAMEWORKS).attrs["outcomes"]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_both_baselines_overflow(mlp, rnn, fw):
    assert not mlp["baseline"][fw].finite and mlp["baseline"][fw].first_nonfinite_step == 8
    assert not rnn["baseline"][fw].finite
    assert rnn["baseline"][fw].first_nonfinite_step < 100


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_clipping_rescues_both_baselines(mlp, rnn, fw):
    for table in (mlp, rnn):
        for mode in ("global", "per-variable"):
            assert table[mode][fw].trained, (mode, fw, table[mode][fw])
            # Norms are recorded before clipping: far above the threshold.
            assert table[mode][fw].max_grad_norm > 10


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_gated_cells_rescue_the_rnn_with_smaller_gradients(rnn, fw):
    for cell in ("lstm", "gru"):
        assert rnn[cell][fw].trained, (cell, fw)
        assert rnn[cell][fw].max_grad_norm < rnn["global"][fw].max_grad_norm
    # The LSTM converges before the simple RNN at a ten times smaller rate.
    assert rnn["lstm"][fw].steps_to_converge < rnn["lr"][fw].steps_to_converge


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_batch_truncation_and_l2_rescue_neither(mlp, rnn, fw):
    for table, names in ((mlp, ("batch", "l2")), (rnn, ("batch", "truncation", "l2"))):
        for name in names:
            assert not table[name][fw].finite, (name, fw)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_the_activation_cuts_both_ways(mlp, rnn, fw):
    relu = rnn["relu"][fw]
    assert relu.finite and not relu.trained
    assert 0.8 < relu.relative_loss < 1.3  # about the mean predictor's loss
    tanh = mlp["tanh"][fw]
    assert tanh.trained
    assert tanh.max_grad_norm < 1e4 < mlp["baseline"][fw].max_grad_norm


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_removing_the_cause_works_best_on_the_mlp(mlp, rnn, fw):
    assert mlp["lr"][fw].trained and mlp["scaled"][fw].trained and rnn["lr"][fw].trained
    assert mlp["lr"][fw].relative_loss < mlp["global"][fw].relative_loss


# -- the exercises' solutions -------------------------------------------------


def test_recall_solution_clipped_norms_stay_below_the_threshold():
    from explodebook import run

    trace = run(RunSpec(global_clipnorm=1.0))
    assert trace.grad_norm_total.max() > 100
    assert trace.clipped_grad_norms.max() <= 1.0 + 1e-5


def test_truncation_solution_tames_the_gradient_but_nothing_learns():
    base = RunSpec(model="rnn", task="adding", seq_len=40, width=32, init="orthogonal",
                   init_scale=3.0, learning_rate=0.01, steps=400)
    found = outcome_table(base, {"full": {}, "k10": {"truncation": 10}, "k4": {"truncation": 4}},
                          FRAMEWORKS).attrs["outcomes"]
    for fw in FRAMEWORKS:
        assert found["full"][fw].max_grad_norm > 1e5
        assert 10 < found["k10"][fw].max_grad_norm < 100
        assert found["k4"][fw].max_grad_norm < 20
        for name in found:
            assert found[name][fw].finite and not found[name][fw].trained
            assert 0.8 < found[name][fw].relative_loss < 1.5


def test_combine_solution_two_failed_fixes_fail_and_l2_costs_the_fit():
    found = outcome_table(RNN_BASE, {
        "batch + l2": {"batch_size": 8, "l2": 0.01},
        "l2 + clip": {"l2": 0.01, "global_clipnorm": 1.0},
    }, FRAMEWORKS).attrs["outcomes"]
    for fw in FRAMEWORKS:
        assert not found["batch + l2"][fw].finite
        assert found["l2 + clip"][fw].finite and not found["l2 + clip"][fw].trained


def test_own_run_solution_only_the_right_scale_trains():
    deep = RunSpec(depth=20, width=32, init_scale=1.5, task="regression-scaled", steps=300)
    found = outcome_table(deep, {
        "baseline": {}, "depth4": {"depth": 4}, "tanh": {"activation": "tanh"},
        "clip": {"global_clipnorm": 1.0}, "l2": {"l2": 0.01}, "he": {"init_scale": 1.0},
    }, FRAMEWORKS).attrs["outcomes"]
    for fw in FRAMEWORKS:
        assert found["he"][fw].trained
        for name in ("baseline", "depth4", "l2"):
            assert not found[name][fw].finite, (name, fw)
        for name in ("tanh", "clip"):
            assert found[name][fw].finite and not found[name][fw].trained, (name, fw)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_tanh_solution_bounds_the_output_gradient_by_the_loss(fw):
    # ex-cmp-tanh: with |h| <= 1 the output layer's gradient is at most
    # 2 sqrt(n + 1) sqrt(loss); the ReLU baseline breaks that bound many times over.
    import numpy as np

    from explodebook import run

    def largest_ratio(trace) -> float:
        grad, loss = trace.grad_norms[:, -1], trace.loss
        finite = np.isfinite(grad) & np.isfinite(loss)
        return float(np.max(grad[finite] / (2 * np.sqrt(26) * np.sqrt(loss[finite]))))

    assert largest_ratio(run(MLP_BASE.replace(activation="tanh"), fw)) <= 1.0
    assert largest_ratio(run(MLP_BASE, fw)) > 100


# -- the phase diagram (fig-compared-phase): the section's sentences -------------

PHASE_AXES = {"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
              "init_scale": [0.5, 1.0, 2.0]}


@pytest.fixture(scope="module")
def phases():
    from explodebook.grid import grid
    from explodebook.outcome import DEFAULT_TOLERANCE, mean_predictor_loss

    base = MLP_BASE.replace(steps=300)
    line = DEFAULT_TOLERANCE * mean_predictor_loss(base)
    maps = {clip: grid(base.replace(global_clipnorm=clip), PHASE_AXES, FRAMEWORKS, n_jobs=1)
            for clip in (None, 1.0)}

    def phase_verdicts(clip, fw):
        return maps[clip].verdicts(fw, trained_below=line)

    return base, maps, phase_verdicts


def _columns(v) -> list[str]:
    """One verdict per learning rate (rows of ``v``), or "mixed" where scales disagree."""
    return [row[0] if (row == row[0]).all() else "mixed" for row in v]


@pytest.mark.slow
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_phase_boundary_is_the_learning_rates_and_clipping_moves_it(phases, fw):
    """'Without clipping the boundary is a vertical line ... Clipping removes the
    exploding region, but the trained region moves rather than grows ... Learning
    rates that trained with and without clipping: none.'"""
    _, _, phase_verdicts = phases
    plain, clipped = _columns(phase_verdicts(None, fw)), _columns(phase_verdicts(1.0, fw))
    # no clipping: trained rates, then exploded rates, nothing in between
    first_exploded = plain.index("exploded")
    assert plain[:first_exploded] == ["trained"] * first_exploded
    assert plain[first_exploded:] == ["exploded"] * (len(plain) - first_exploded)
    # clipping: nothing explodes; stalled rates, then trained rates
    first_trained = clipped.index("trained")
    assert clipped[:first_trained] == ["stalled"] * first_trained
    assert clipped[first_trained:] == ["trained"] * (len(clipped) - first_trained)
    assert not [i for i in range(len(plain)) if plain[i] == clipped[i] == "trained"]


@pytest.mark.slow
def test_phase_clipped_steps_cannot_reach_what_training_needed(phases):
    """'300 steps at 0.003 move the weights at most 300 * 10 * 0.003, while the run that
    trained at 0.01 moved them at least' the change of its layer weight norms."""
    import numpy as np

    base, maps, _ = phases
    reach = 300 * 0.003 / (1 - base.momentum)
    norms = maps[1.0].traces["torch"][4, 1].weight_norms  # learning rate 0.01, scale 1
    assert maps[1.0].specs[4, 1].learning_rate == 0.01 and maps[1.0].specs[4, 1].init_scale == 1.0
    moved = float(np.sqrt(np.sum((norms[-1] - norms[0]) ** 2)))
    assert moved > reach
