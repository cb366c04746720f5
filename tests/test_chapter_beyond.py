"""The conclusions chapter "Beyond the article" states, in both frameworks.

Property checks (diverges or not, orderings, generous bounds), never exact
floats: the chapter's prose quotes the exact numbers from its own runs.
"""

from __future__ import annotations

import numpy as np
import pytest

# torch before TensorFlow (see explodebook.backends.keras).
import torch  # noqa: I001
from explodebook.backends import torch as tb  # noqa: F401
from explodebook.backends import keras as kb
import keras
import tensorflow as tf
from torch import nn

from explodebook import RunSpec, run, theory
from explodebook.data import batch_indices, dataset_for
from explodebook.weights import init_matrix, initial_weights
from explodebook.metrics import first_to_last

FRAMEWORKS = ("torch", "keras")
CLASSIC = RunSpec()
DEEP = RunSpec(depth=20, width=32, task="regression-scaled", steps=200)
BAD_INIT = DEEP.replace(init_scale=1.5)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_both_baselines_diverge(fw):
    classic = run(CLASSIC, fw)
    step = classic.first_nonfinite_step
    assert step == 8
    # the prose says which: the loss overflows to inf, the gradient is NaN
    assert np.isposinf(classic.loss[step]) and np.isnan(classic.grad_norm_total[step])
    assert run(BAD_INIT, fw).first_nonfinite_step <= 2


# -- initialization -------------------------------------------------------------


def _forward_second_moment_ratio(init, scale, depth=20, width=32):
    rng = np.random.default_rng(0)
    h = rng.normal(size=(256, width))
    moments = []
    for _ in range(depth):
        h = np.maximum(h @ init_matrix(init, width, width, scale, rng), 0)
        moments.append(np.mean(h**2))
    return moments[-1] / moments[0]


def test_variance_argument_he_keeps_relu_signals_glorot_shrinks_them():
    assert 0.2 < _forward_second_moment_ratio("he", 1.0) < 5
    assert _forward_second_moment_ratio("xavier", 1.0) < 1e-4
    assert _forward_second_moment_ratio("he", 1.5) > 1e5
    for init, scale, low, high in [("he", 1.0, 0.1, 10), ("xavier", 1.0, 0, 1e-2),
                                   ("he", 1.5, 1e3, np.inf)]:
        norms = theory.mlp_backprop_norms(20, 32, scale=scale, init=init).hidden_grad_norms
        assert low < norms[0] / norms[-1] < high


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_only_he_scale_trains_the_deep_relu_mlp(fw):
    he = run(DEEP, fw)
    assert not he.diverged and he.final_loss() < 0.3
    glorot = run(DEEP.replace(init="xavier"), fw)
    assert not glorot.diverged and glorot.final_loss() > 0.95  # the mean's loss
    assert first_to_last(glorot) < 0.01  # vanishing
    assert first_to_last(run(DEEP.replace(init_scale=0.5, steps=1), fw)) < 1e-4


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_with_tanh_glorot_trains_better_than_he(fw):
    glorot = run(DEEP.replace(activation="tanh", init="xavier"), fw)
    he = run(DEEP.replace(activation="tanh", init="he"), fw)
    assert not (glorot.diverged or he.diverged)
    assert glorot.final_loss() < he.final_loss() < 0.5
    assert 0.5 < first_to_last(he) < first_to_last(glorot) < 1.5


def test_orthogonal_powers_keep_norm_one_gaussian_ones_drift():
    rng = np.random.default_rng(0)
    orthogonal = theory.matrix_product_norms([init_matrix("orthogonal", 32, 32, 1.0, rng)] * 100)
    np.testing.assert_allclose(orthogonal, 1.0, rtol=1e-4)
    he = theory.matrix_product_norms([init_matrix("he", 32, 32, 1.0, rng)] * 100)
    assert he[-1] > 1e6


# -- normalization and residual connections --------------------------------------


@pytest.mark.parametrize("fw", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_normalization_rescues_bad_init_but_not_the_classic_mlp(fw, kind):
    deep = run(BAD_INIT.replace(normalization=kind), fw)
    assert not deep.diverged and deep.final_loss() < 1.1
    if kind == "layer":  # layer norm trains; batch norm barely learns
        assert deep.final_loss() < 0.5
    assert run(CLASSIC.replace(normalization=kind), fw).diverged
    if kind == "batch":  # the forward pass is normalized, the backward is not
        assert first_to_last(deep) > 10


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_residual_rescues_vanishing_not_a_growing_stream(fw):
    plain = run(DEEP.replace(init_scale=0.1, steps=1), fw)
    assert first_to_last(plain) < 1e-10
    residual = run(DEEP.replace(init_scale=0.1, residual=True), fw)
    assert not residual.diverged and residual.final_loss() < 0.01
    assert first_to_last(residual) > 0.1
    assert residual.final_loss() < run(DEEP, fw).final_loss()
    assert run(DEEP.replace(residual=True), fw).diverged
    assert run(BAD_INIT.replace(residual=True, normalization="batch"), fw).diverged


# -- warm-up and Adam ---------------------------------------------------------


def test_warmup_only_delays_the_classic_divergence():
    steps = {fw: [] for fw in FRAMEWORKS}
    for w in (0, 50, 200, 800):
        for fw in FRAMEWORKS:
            trace = run(CLASSIC.replace(warmup_steps=w), fw)
            assert trace.diverged
            steps[fw].append(trace.first_nonfinite_step)
    for fw in FRAMEWORKS:
        assert steps[fw] == sorted(steps[fw]) and len(set(steps[fw])) == 4
    # Keras' momentum keeps each gradient's own (smaller) warm-up rate
    assert all(t <= k for t, k in zip(steps["torch"], steps["keras"]))


def test_adam_first_step_moves_every_parameter_by_the_learning_rate():
    spec = CLASSIC.replace(optimizer="adam", learning_rate=0.01)
    X, y = dataset_for(spec)
    idx = batch_indices(len(X), 32, 1, seed=spec.seed)[0]
    net = tb.build(spec)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    nn.functional.mse_loss(net(torch.from_numpy(X[idx])), torch.from_numpy(y[idx])).backward()
    optimizer.step()
    moves = np.concatenate([(p.detach() - b).abs().numpy().ravel()
                            for p, b in zip(net.parameters(), before)])
    np.testing.assert_allclose(moves[moves > 0], 0.01, rtol=1e-3)

    model = kb.build(spec)
    weights = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        loss = keras.ops.mean((model(X[idx]) - y[idx]) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    keras.optimizers.Adam(0.01, epsilon=1e-8).apply_gradients(
        zip(grads, model.trainable_variables)
    )
    moves = np.concatenate(
        [np.abs(v.numpy() - w).ravel() for v, w in zip(model.trainable_variables, weights)]
    )
    np.testing.assert_allclose(moves[moves > 0], 0.01, rtol=1e-3)


def _adam_sparse_and_steady(fw, steps=5000, lr=0.01):
    """Last step of a parameter whose gradient is 0 until the last step, and
    the distance a parameter with a constant gradient travels, in units of lr."""
    grads = [(float(t == steps - 1), 1.0) for t in range(steps)]
    if fw == "torch":
        sparse, steady = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.Adam([sparse, steady], lr=lr)
        for g_sparse, g_steady in grads:
            sparse.grad, steady.grad = torch.full((1,), g_sparse), torch.full((1,), g_steady)
            before = sparse.item()
            optimizer.step()
        return abs(sparse.item() - before) / lr, abs(steady.item()) / lr
    sparse, steady = keras.Variable([0.0]), keras.Variable([0.0])
    optimizer = keras.optimizers.Adam(lr, epsilon=1e-8)
    optimizer.build([sparse, steady])

    @tf.function
    def step(g_sparse, g_steady):
        optimizer.apply([tf.reshape(g_sparse, [1]), tf.reshape(g_steady, [1])], [sparse, steady])

    for g_sparse, g_steady in grads:
        before = float(sparse.numpy()[0])
        step(tf.constant(g_sparse), tf.constant(g_steady))
    return abs(float(sparse.numpy()[0]) - before) / lr, abs(float(steady.numpy()[0])) / lr


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_adam_step_exceeds_the_rate_in_the_sparse_case_and_weights_drift(fw):
    # Kingma & Ba: |step| <= lr (1 - b1) / sqrt(1 - b2) = 3.16 lr for the
    # default betas, approached by a gradient that was zero until now; a
    # steady gradient moves the weight by lr at every step.
    sparse_step, steady_drift = _adam_sparse_and_steady(fw)
    bound = 0.1 / np.sqrt(0.001)
    assert 3.0 < sparse_step <= bound * (1 + 1e-4)
    np.testing.assert_allclose(steady_drift, 5000, rtol=1e-3)


def test_chapter_adam_cell_shows_the_sparse_step_and_the_drift():
    from _chapter import code_cells

    (cell,) = [c for c in code_cells("10b") if "sparse_step =" in c]
    namespace = {"torch": torch}
    exec(cell, namespace)
    assert 3.0 < namespace["sparse_step"] < 3.17
    assert round(namespace["steady_drift"]) == namespace["T"]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_adam_does_not_diverge_on_the_classic_mlp_but_is_slower_than_good_sgd(fw):
    sgd = run(CLASSIC.replace(learning_rate=1e-3), fw)
    adam_slow = run(CLASSIC.replace(optimizer="adam", learning_rate=1e-3), fw)
    adam = run(CLASSIC.replace(optimizer="adam", learning_rate=1e-2), fw)
    assert not (sgd.diverged or adam_slow.diverged or adam.diverged)
    assert adam_slow.final_loss() > 100 * sgd.final_loss()
    assert adam.final_loss() > sgd.final_loss()
    assert adam.grad_norm_total.max() > 100  # the gradients stay large


# -- loss scaling ------------------------------------------------------------------


def test_loss_scaling_lifts_small_gradients_and_overflows_large_ones():
    # the helpers 10.3 computes its figures with
    from explodebook.remedies import first_gradients, float16_fate

    deep = first_gradients(DEEP.replace(init_scale=0.5))
    under = [float16_fate(deep, 2.0**k)[0] for k in (0, 16, 24)]
    assert under[0] > 0.1 and under[0] > under[1] > under[2]
    assert float16_fate(deep, 2.0**16)[1] == 0.0 < float16_fate(deep, 2.0**24)[1]  # too wide a span
    classic = first_gradients(CLASSIC)
    assert float16_fate(classic, 1.0) == (0.0, 0.0)
    assert float16_fate(classic, 2.0**16)[1] > 0.0


def test_dynamic_loss_scaling_halves_the_scale_alike_in_both_frameworks():
    spec = CLASSIC.replace(learning_rate=1e-3, steps=30)
    X, y = dataset_for(spec)
    batches = batch_indices(len(X), 32, spec.steps, seed=spec.seed)

    model = tb.build(spec)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=20)
    torch_scales = []
    for idx in batches:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            prediction = model(torch.from_numpy(X[idx]))
        loss = nn.functional.mse_loss(prediction.float(), torch.from_numpy(y[idx]))
        torch_scales.append(scaler.get_scale())
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    keras_model = keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(25, activation="relu", dtype="mixed_float16", name="dense_1"),
        keras.layers.Dense(1, dtype="mixed_float16", name="output"),
    ])  # fmt: skip
    kb.load_weights(keras_model, spec, initial_weights(spec))
    keras_optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(1e-3, momentum=0.9), initial_scale=2.0**16, dynamic_growth_steps=20
    )
    keras_optimizer.build(keras_model.trainable_variables)
    keras_scales = []
    for idx in batches:
        keras_scales.append(float(keras_optimizer.dynamic_scale.numpy()))
        with tf.GradientTape() as tape:
            prediction = tf.cast(keras_model(X[idx], training=True), tf.float32)
            loss = tf.reduce_mean(tf.square(prediction - y[idx]))
            scaled = keras_optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, keras_model.trainable_variables)
        keras_optimizer.apply(grads, keras_model.trainable_variables)

    assert torch_scales == keras_scales
    assert torch_scales[-1] < 2.0**16
    assert np.sum(np.diff(torch_scales) < 0) >= 3  # several skipped steps
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())


# -- float16 and bfloat16 (section 10.3, from chapter 2) ---------------------------


def _classic_losses(framework: str, dtype: str, steps: int = 20) -> np.ndarray:
    """The chapter's loops: the classic run computed entirely in ``dtype``."""
    spec = RunSpec()
    X_np, y_np = dataset_for(spec)
    batches = batch_indices(len(X_np), 32, steps, seed=spec.seed)
    losses = []
    if framework == "torch":
        torch_dtype = getattr(torch, dtype)
        net = tb.build(spec).to(torch_dtype)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        X, y = torch.tensor(X_np, dtype=torch_dtype), torch.tensor(y_np, dtype=torch_dtype)
        for idx in batches:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(net(X[idx]), y[idx])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return np.array(losses)
    net = keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(25, activation="relu", dtype=dtype),
        keras.layers.Dense(1, dtype=dtype),
    ])
    net.set_weights(kb.build(spec).get_weights())
    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    mse = keras.losses.MeanSquaredError(dtype=dtype)
    X, y = tf.constant(X_np, dtype), tf.constant(y_np, dtype)
    for idx in batches:
        with tf.GradientTape() as tape:
            loss = mse(tf.gather(y, idx), net(tf.gather(X, idx)))
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        losses.append(float(loss))
    return np.array(losses)


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask)) if mask.any() else -1


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_float16_overflows_at_once_bfloat16_like_float32(framework: str) -> None:
    f32, bf16, f16 = (_classic_losses(framework, d) for d in ("float32", "bfloat16", "float16"))
    # float32: as the recorded run, inf then NaN
    recorded = run(RunSpec(), framework).first_nonfinite_step
    assert _first(np.isinf(f32)) == recorded
    assert _first(np.isnan(f32)) == recorded + 1
    # bfloat16: float32's range, so the same overflow step; coarser values
    assert _first(np.isinf(bf16)) == recorded
    gap = np.abs(bf16[:4] / f32[:4] - 1)
    assert 1e-4 < gap.max() < 0.02
    # float16: inf at the very first step, NaN before float32's NaN
    assert np.isinf(f16[0])
    assert 0 <= _first(np.isnan(f16)) < _first(np.isnan(f32))
    assert np.isnan(f16[_first(np.isnan(f16)) :]).all()


def test_the_first_batch_has_errors_whose_square_overflows_float16() -> None:
    spec = RunSpec()
    X, y = dataset_for(spec)
    idx = batch_indices(len(X), 32, 1, seed=spec.seed)[0]
    with torch.no_grad():
        errors = tb.build(spec)(torch.from_numpy(X[idx])) - torch.from_numpy(y[idx])
    assert errors.abs().max().item() > 256  # 256² = 65536 > 65504


def test_bfloat16_rounds_where_float16_is_exact() -> None:
    """bey-ex-bf16-spacing: spacing 2 near 257, 4 near 1000 in bfloat16."""
    assert torch.tensor(257.0, dtype=torch.bfloat16).item() == 256.0
    assert (torch.tensor(1000.0, dtype=torch.bfloat16) + 1).item() == 1000.0
    assert (torch.tensor(1000.0, dtype=torch.float16) + 1).item() == 1001.0
    assert float(keras.ops.convert_to_tensor(257.0, "bfloat16")) == 256.0
    assert float(keras.ops.convert_to_tensor(1000.0, "bfloat16") + 1) == 1000.0


def test_no_single_loss_scale_suits_both_networks() -> None:
    """bey-ex-scale-window: the deep MLP's window and the classic MLP's do not overlap."""
    from explodebook.remedies import first_gradients, float16_fate

    def window(spec):
        g = first_gradients(spec)
        good = [k for k in range(31)
                if float16_fate(g, 2.0**k)[1] == 0 and float16_fate(g, 2.0**k)[0] < 0.01]
        assert good == list(range(good[0], good[-1] + 1))  # one window
        return good[0], good[-1]

    deep, classic = window(DEEP.replace(init_scale=0.5)), window(CLASSIC)
    assert classic[1] < deep[0] and deep[0] <= 16 <= deep[1]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_layer_norm_trains_at_twice_the_bad_scale_but_slower(fw):
    """bey-ex-layer-scale: scale-invariant forward pass, smaller effective rate."""
    at_3 = run(DEEP.replace(init_scale=3.0, normalization="layer"), fw)
    at_1_5 = run(BAD_INIT.replace(normalization="layer"), fw)
    assert not at_3.diverged and at_3.final_loss() < 0.9
    assert at_3.final_loss() > at_1_5.final_loss()


def test_an_exploding_run_leaves_float16_range_before_float32_range():
    """10c's claim after fig-problem-limits, from the page's own cell."""
    from _chapter import run_cells

    ns = run_cells("10c", "f16_cross = ")
    assert 0 < ns["f16_cross"] < ns["classic"][0].first_nonfinite_step


def test_the_leaky_relu_scale_keeps_the_second_moment():
    """bey-ex-leaky: sigma^2 = 2 / ((1 + alpha^2) n_in), checked on random layers."""
    from _chapter import run_cells

    ns = run_cells("10", "leaky_factor = ")
    assert abs(ns["leaky_factor"] - 1) < 0.02
    assert abs(ns["leaky_std"] - torch.nn.init.calculate_gain("leaky_relu", 0.2) / np.sqrt(32)) < 1e-9
