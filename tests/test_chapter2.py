"""Chapter 2's conclusions, pinned through the package in both frameworks.

The chapter's prose states these; if a change to the package made one
false, the prose would be wrong, so this fails first. Property checks only
(diverges or not, orderings, generous ratios), never exact floats.
"""

from __future__ import annotations

import numpy as np
import pytest

from explodebook import RunSpec, run, theory
from explodebook.metrics import swing

from _chapter import run_cells

FRAMEWORKS = ("torch", "keras")
BASELINE = 1 / 6  # MSE of always answering 1.0 on the adding problem
LR_BASE = RunSpec(steps=300)
RNN_BASE = RunSpec(
    model="rnn", cell="simple", task="adding", width=32, init="xavier", seq_len=20, steps=500
)
SIGMA2 = RNN_BASE.replace(init="orthogonal", init_scale=2.0)


# -- the classic example ------------------------------------------------------


def test_classic_example_goes_non_finite_at_the_same_early_step_in_both() -> None:
    steps = {fw: run(RunSpec(), fw).first_nonfinite_step for fw in FRAMEWORKS}
    assert steps["torch"] == steps["keras"] == 8
    trace, other = (run(RunSpec(), fw) for fw in FRAMEWORKS)
    # identical weights and batches: five significant digits until overflow
    for name in ("loss", "grad_norm_total"):
        a, b = getattr(trace, name)[:8], getattr(other, name)[:8]
        assert np.allclose(a, b, rtol=1e-5, atol=0)
    # the loss grows by a factor that itself grows, before overflowing
    ratios = trace.loss[5:8] / trace.loss[4:7]
    assert np.all(np.diff(ratios) > 0) and ratios[-1] > 1e10
    assert not np.isfinite(trace.loss[8])


def test_the_tutorial_code_as_written_gives_nan_in_keras_and_pytorch() -> None:
    import torch
    from torch import nn

    from explodebook.backends import keras as _  # noqa: F401  (torch first, then TF)
    import keras

    from explodebook.data import regression

    trainX, trainy = regression(seed=1)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(25, activation="relu", kernel_initializer="he_uniform"),
        keras.layers.Dense(1, activation="linear"),
    ])
    model.compile(loss="mean_squared_error",
                  optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9))
    history = model.fit(trainX, trainy, epochs=1, batch_size=32, verbose=0)
    assert np.isnan(history.history["loss"][0])

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(20, 25), nn.ReLU(), nn.Linear(25, 1))
    nn.init.kaiming_uniform_(net[0].weight, nonlinearity="relu")
    nn.init.xavier_uniform_(net[2].weight)
    nn.init.zeros_(net[0].bias)
    nn.init.zeros_(net[2].bias)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    X, y = torch.from_numpy(trainX.copy()), torch.from_numpy(trainy.copy())
    losses = []
    for idx in torch.randperm(len(X)).split(32):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(net(X[idx]), y[idx])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert not np.isfinite(losses[:12]).all()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_one_nan_poisons_every_later_step(framework: str) -> None:
    trace = run(RunSpec(stop_on_nonfinite=False, steps=60), framework)
    first = trace.first_nonfinite_step
    assert trace.steps_run == 60
    assert np.isfinite(trace.weight_norms[first]).all()  # weights still finite then
    assert np.isinf(trace.loss[first])  # the loss overflowed ...
    assert np.isnan(trace.grad_norm_total[first])  # ... and its gradient is NaN
    # From the next step on, no loss and no weight norm is finite again: NaN,
    # or, for a step, an infinite norm where an update overflowed instead
    # (Keras 3.15 on TensorFlow 2.21: the output layer's norm is inf at
    # first + 1 and NaN after).
    assert np.isnan(trace.loss[first + 1 :]).all()
    assert not np.isfinite(trace.weight_norms[first + 1 :]).any()
    assert np.isnan(trace.weight_norms[first + 2 :]).all()


def test_nan_rules_the_chapter_states_in_both_frameworks() -> None:
    """Arithmetic of a training step propagates NaN; ordered comparisons and
    ``==`` are false, ``!=`` is true; ``pow(NaN, 0)`` is 1 (IEEE 754)."""
    import torch

    from explodebook.backends import keras as _  # noqa: F401  (torch first, then TF)
    import keras

    nan = torch.tensor(float("nan"))
    assert torch.isnan(nan * 0) and torch.isnan(1.0 - 0.01 * nan) and torch.isnan(torch.relu(nan))
    assert not (nan > 1e6) and not (nan == nan) and bool(nan != nan)
    assert float(nan**0) == 1.0
    knan = keras.ops.convert_to_tensor(float("nan"))
    assert bool(keras.ops.isnan(knan * 0)) and bool(keras.ops.isnan(keras.ops.relu(knan)))
    assert not bool(keras.ops.greater(knan, 1e6)) and not bool(keras.ops.equal(knan, knan))
    assert bool(keras.ops.not_equal(knan, knan))
    assert float(keras.ops.power(knan, 0.0)) == 1.0


def test_the_tutorial_loop_is_inf_before_it_is_nan() -> None:
    ns = run_cells("02", "classic = {fw: run(RunSpec(), fw)")
    losses = np.array(ns["losses"])
    first_inf = int(np.argmax(np.isinf(losses)))
    assert np.isinf(losses).any() and np.isfinite(losses[:first_inf]).all()
    assert int(np.argmax(np.isnan(losses))) == first_inf + 1
    assert ns["_shown"]["int(np.argmax(np.isinf(losses)))"] == first_inf


# -- unstable learning ------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_loss_swings_grow_with_the_learning_rate(framework: str) -> None:
    lrs = [1e-6, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    traces = [run(LR_BASE.replace(learning_rate=lr), framework) for lr in lrs]
    swings = [swing(t) for t in traces]
    floor = swings[0]
    assert abs(swings[1] / floor - 1) < 0.3  # lr 1e-4 is still at the batch-noise floor
    assert np.all(np.diff(swings[1:]) > 0)  # then it grows with every step up
    assert swings[3] > 1.6 * floor
    assert swings[5] > 2.5 * swings[3]
    assert 10 ** swings[5] > 4  # the loss changes several-fold per update
    assert [t.diverged for t in traces] == [False] * 4 + [True] * 2
    # at lr 1e-3 the loss falls, then climbs back well above its low
    loss = traces[3].loss
    assert loss[100:].max() > 10 * loss[:100].min()


def test_swings_agree_between_frameworks() -> None:
    for lr in (1e-4, 1e-3, 1e-2):
        a, b = (swing(run(LR_BASE.replace(learning_rate=lr), fw)) for fw in FRAMEWORKS)
        assert abs(a / b - 1) < 0.05
    for lr in (3e-3, 1e-2):
        steps = [run(LR_BASE.replace(learning_rate=lr), fw).first_nonfinite_step for fw in FRAMEWORKS]
        assert steps[0] == steps[1]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_standardized_target_does_not_diverge_at_the_classic_rate(framework: str) -> None:
    assert not run(LR_BASE.replace(task="regression-scaled"), framework).diverged


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_without_momentum_the_classic_example_still_diverges_a_little_later(framework: str) -> None:
    # ch2-ex-momentum: momentum is not the cause
    plain = run(RunSpec(momentum=0.0), framework).first_nonfinite_step
    assert plain is not None and plain > run(RunSpec(), framework).first_nonfinite_step


def test_largest_stable_learning_rate_of_the_exercise() -> None:
    for fw in FRAMEWORKS:
        good = run(RunSpec(learning_rate=1e-3), fw)
        assert not good.diverged and good.final_loss() < 1.0
        assert run(RunSpec(learning_rate=1.5e-3), fw).first_nonfinite_step < 100


# -- the numbers behind overflow -------------------------------------------------


def test_overflow_steps_of_the_table() -> None:
    assert theory.overflow_steps(2.0, dtype="float16") == 16
    assert theory.overflow_steps(2.0, dtype="float32") == 128
    assert theory.overflow_steps(1.5, dtype="float16") == 28
    assert theory.overflow_steps(1.5, dtype="float32") == 219
    assert theory.overflow_steps(1.5, 1e-3, dtype="float16") == 45
    for c in (1.1, 1.5, 2.0, 4.0, 10.0):
        assert theory.overflow_steps(c, dtype="bfloat16") == theory.overflow_steps(c, dtype="float32")


# -- recurrent networks -----------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_plain_rnn_learns_short_sequences_not_long_ones(framework: str) -> None:
    final = [run(RNN_BASE.replace(seq_len=T), framework).final_loss() for T in (5, 10, 20, 40)]
    assert final[0] < 0.25 * BASELINE  # learned
    assert final[1] < 0.9 * BASELINE  # partly
    assert final[3] > 0.9 * BASELINE  # not at all
    assert np.all(np.diff(final) > 0)
    # and the recurrent gradient never explodes during training
    for T in (5, 10, 20, 40):
        g = run(RNN_BASE.replace(seq_len=T), framework).grad_norms[:, 0]
        assert g.max() < 2 * g[0]


def _input_gradients(spec: RunSpec, framework: str) -> np.ndarray:
    from explodebook.data import dataset_for

    X, y = dataset_for(spec)
    if framework == "torch":
        import torch
        from torch import nn

        from explodebook.backends import torch as torch_backend

        net = torch_backend.build(spec)
        x = torch.tensor(X[:32], requires_grad=True)
        nn.functional.mse_loss(net(x), torch.tensor(y[:32])).backward()
        return x.grad.norm(dim=(0, 2)).numpy()
    import keras
    import tensorflow as tf

    from explodebook.backends import keras as keras_backend

    net = keras_backend.build(spec)
    x = tf.constant(X[:32])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = keras.ops.mean(keras.losses.mean_squared_error(y[:32], net(x)))
    return tf.norm(tape.gradient(loss, x), axis=(0, 2)).numpy()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_xavier_gradients_vanish_through_time_sigma_2_explode(framework: str) -> None:
    xavier = _input_gradients(RNN_BASE.replace(seq_len=80), framework)
    sigma2 = _input_gradients(SIGMA2.replace(seq_len=80), framework)
    assert xavier[0] / xavier[-1] < 1e-3
    assert sigma2[0] / sigma2[-1] > 1e3

    def first_gradient(spec: RunSpec, T: int) -> float:
        return float(run(spec.replace(seq_len=T, steps=1), framework).grad_norms[0, 0])

    assert 0.5 < first_gradient(RNN_BASE, 80) / first_gradient(RNN_BASE, 5) < 2
    assert first_gradient(SIGMA2, 80) / first_gradient(SIGMA2, 5) > 1e3


def test_the_adding_problem_is_the_sum_variant_with_baseline_one_sixth() -> None:
    from explodebook.data import dataset_for

    X, y = dataset_for(RNN_BASE.replace(seq_len=40))
    values, markers = X[..., 0], X[..., 1]
    assert values.min() >= 0 and values.max() < 1  # not the original's [-1, 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.allclose(y[:, 0], (values * markers).sum(axis=1), atol=1e-6)  # the sum, not 0.5 + sum/4
    assert abs(np.mean((y - 1.0) ** 2) - BASELINE) < 0.02


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_one_exploding_step_saturates_the_rnn_and_it_learns_nothing(framework: str) -> None:
    trace = run(SIGMA2.replace(seq_len=80, steps=100), framework)
    assert not trace.diverged  # tanh keeps everything finite
    w = trace.weight_norms[:, 0]
    assert w[1] > 100 * w[0]  # one update throws the weights far away
    assert w[-1] > 1000 * w[0]  # momentum carries them further
    g = trace.grad_norms[:, 0]
    assert g[0] > 1e4
    late = g[10:]
    assert np.median(late) < 1e-4  # then it vanishes ...
    assert np.mean(late == 0) > 0.1  # ... to exactly zero at many steps
    xavier = run(RNN_BASE.replace(seq_len=80, steps=100), framework).grad_norms[10:, 0]
    assert np.median(xavier) > 1000 * np.median(late)
    assert trace.final_loss() > BASELINE  # worse than always answering 1.0
    # No NaN, but not because tanh bounds the weights: they stop far below
    # float32's range only because the saturated units pass no gradient.
    assert w.max() < 1e6 and abs(w[-1] - w[-2]) < 1e-3 * w[-1]


def test_a_tanh_rnn_does_go_non_finite_through_its_weights() -> None:
    # chapter 6's simple RNN (tanh), the chapter's counter-example
    spec = RunSpec(model="rnn", cell="simple", width=32, seq_len=50, init="orthogonal",
                   init_scale=2.0, learning_rate=0.1, steps=200)
    assert spec.activation == "tanh"
    assert run(spec, "torch").diverged


def test_orthogonal_gain_decides_whether_the_first_gradient_grows_with_length() -> None:
    """ch2-ex-growth: at gain 1 the tanh slopes win; at 1.5 and 2 the weights."""
    base = RNN_BASE.replace(init="orthogonal")

    def growth(s: float) -> float:
        first = [run(base.replace(init_scale=s, seq_len=T, steps=1)).grad_norms[0, 0] for T in (5, 80)]
        return float(first[1] / first[0])

    assert growth(0.5) < 1 and growth(1.0) < 1
    assert 5 < growth(1.5) < growth(2.0)
