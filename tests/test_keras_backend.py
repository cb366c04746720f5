"""The Keras backend, checked against references computed another way:
TensorFlow's own clipping utilities, a plain ``tf.GradientTape``, numpy.

The first step of a run is recomputed outside the backend (`_tape_step`);
the backend's trace must record the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

# The backend module imports torch before TensorFlow (see its comment), so
# it comes first.
from explodebook.backends import keras as kb  # noqa: I001
import tensorflow as tf

from explodebook.data import batch_indices, dataset_for
from explodebook.spec import RunSpec
from explodebook.weights import initial_weights, layer_names

# Unscaled regression target: large gradients, so every clipping mode acts.
CLIP_SPECS = {
    "clipnorm": RunSpec(clipnorm=1.0, steps=1),
    "global_clipnorm": RunSpec(global_clipnorm=1.0, steps=1),
    "clipvalue": RunSpec(clipvalue=0.5, steps=1),
}


def _tf_clip(spec: RunSpec, grads: list[tf.Tensor]) -> list[tf.Tensor]:
    """What each clipping mode means, by TensorFlow's public utilities."""
    mode, threshold = spec.clipping
    if mode == "clipnorm":
        return [tf.clip_by_norm(g, threshold) for g in grads]
    if mode == "global_clipnorm":
        return tf.clip_by_global_norm(grads, threshold)[0]
    return [tf.clip_by_value(g, -threshold, threshold) for g in grads]


def _tape_step(spec: RunSpec):
    """Step 0 of ``spec`` recomputed with a plain GradientTape.

    The penalty is written out (l1 * sum|W| + l2 * sum W**2 over kernels)
    rather than taken from ``model.losses``.

    Returns:
        ``(model, groups, grads, mse, objective)``: ``groups`` and ``grads``
        are lists (per layer) of lists of variables and gradient tensors.
    """
    model = kb.build(spec)
    groups = kb.layer_weights(model, spec)
    variables = [v for g in groups for v in g]
    X, y = dataset_for(spec)
    idx = batch_indices(len(X), spec.batch_size, spec.steps, seed=spec.seed)[0]
    with tf.GradientTape() as tape:
        mse = tf.reduce_mean(tf.square(model(X[idx]) - y[idx]))
        penalty = tf.add_n(
            [
                spec.l1 * tf.reduce_sum(tf.abs(v)) + spec.l2 * tf.reduce_sum(tf.square(v))
                for v in variables
                if "kernel" in v.name
            ]
        )
        objective = mse + penalty
    flat = tape.gradient(objective, variables)
    grads, i = [], 0
    for g in groups:
        grads.append(flat[i : i + len(g)])
        i += len(g)
    return model, groups, grads, float(mse), float(objective)


def _layer_norms(grouped) -> np.ndarray:
    """Per-layer float64 L2 norm of nested lists of arrays/tensors."""
    return np.array(
        [np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64))) for a in g)) for g in grouped]
    )


def _flat(grouped) -> list:
    return [a for g in grouped for a in g]


# -- structure -------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        RunSpec(depth=3),
        RunSpec(model="rnn"),
        RunSpec(model="rnn", cell="lstm", depth=2, truncation=5),
        RunSpec(model="rnn", cell="gru", depth=3),
    ],
    ids=["mlp", "simple", "lstm", "gru"],
)
def test_build_names_layers_as_layer_names(spec):
    model = kb.build(spec)
    assert [layer.name for layer in model.layers] == layer_names(spec)
    assert model(np.zeros((2, *dataset_for(spec)[0].shape[1:]), np.float32)).shape == (2, 1)


@pytest.mark.parametrize(
    "spec",
    [RunSpec(depth=2, steps=1), RunSpec(model="rnn", cell="gru", depth=2, steps=1)],
    ids=["mlp", "gru"],
)
def test_first_weight_norms_are_those_of_the_initial_weights(spec):
    expected = _layer_norms([list(w.values()) for w in initial_weights(spec)])
    np.testing.assert_allclose(kb.run(spec).weight_norms[0], expected, rtol=1e-12)


# -- what a step records ----------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        RunSpec(steps=1),
        RunSpec(model="rnn", cell="lstm", depth=2, seq_len=10, l1=1e-3, l2=1e-2, steps=1),
    ],
    ids=["mlp", "lstm-l1-l2"],
)
def test_gradient_norms_match_a_plain_gradient_tape(spec):
    _, _, grads, _, _ = _tape_step(spec)
    trace = kb.run(spec)
    np.testing.assert_allclose(
        trace.grad_norm_total[0], float(tf.linalg.global_norm(_flat(grads))), rtol=1e-5
    )
    np.testing.assert_allclose(trace.grad_norms[0], _layer_norms(grads), rtol=1e-5)
    np.testing.assert_allclose(
        trace.grad_max_abs[0],
        [max(float(tf.reduce_max(tf.abs(g))) for g in group) for group in grads],
        rtol=1e-5,
    )


def test_recorded_loss_is_the_mse_without_the_penalty():
    spec = RunSpec(l2=0.1, task="regression-scaled", steps=1)
    _, _, _, mse, objective = _tape_step(spec)
    assert objective > 1.01 * mse  # the penalty is large enough to tell them apart
    np.testing.assert_allclose(kb.run(spec).loss[0], mse, rtol=1e-6)


# -- clipping ----------------------------------------------------------------


@pytest.mark.parametrize("mode", CLIP_SPECS)
def test_recorded_clipped_norms_match_tensorflow_clipping(mode):
    spec = CLIP_SPECS[mode]
    _, groups, grads, _, _ = _tape_step(spec)
    reference = _tf_clip(spec, _flat(grads))
    expected, i = [], 0
    for g in groups:
        expected.append(reference[i : i + len(g)])
        i += len(g)
    expected = _layer_norms(expected)
    assert (expected < 0.99 * _layer_norms(grads)).any()  # clipping acted
    np.testing.assert_allclose(kb.run(spec).clipped_grad_norms[0], expected, rtol=1e-5)


@pytest.mark.parametrize("mode", CLIP_SPECS)
def test_optimizer_applies_tensorflow_clipping(mode):
    # With learning rate 1 and no momentum, one SGD step moves each weight by
    # exactly the gradient the optimizer applied.
    spec = CLIP_SPECS[mode].replace(learning_rate=1.0, momentum=0.0)
    threshold = spec.clipping[1]
    model, groups, grads, _, _ = _tape_step(spec)
    variables = _flat(groups)
    before = [v.numpy() for v in variables]
    kb.make_optimizer(spec, variables).apply_gradients(zip(_flat(grads), variables))
    applied = [b - v.numpy() for b, v in zip(before, variables)]
    reference = _tf_clip(spec, _flat(grads))
    for a, r in zip(applied, reference):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-6 * threshold)
    if mode == "clipnorm":
        assert max(np.linalg.norm(a) for a in applied) <= threshold * (1 + 1e-5)
    elif mode == "global_clipnorm":
        global_norm = np.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for a in applied))
        assert global_norm <= threshold * (1 + 1e-5)
    else:
        assert max(np.abs(a).max() for a in applied) <= threshold * (1 + 1e-5)


def test_unclipped_norms_equal_clipped_norms_without_clipping():
    trace = kb.run(RunSpec(steps=3))
    np.testing.assert_array_equal(trace.clipped_grad_norms, trace.grad_norms)


# -- runs: determinism, reuse, divergence ---------------------------------


def test_same_spec_twice_gives_identical_traces():
    spec = RunSpec(optimizer="adam", learning_rate=1e-3, task="regression-scaled", steps=50)
    assert kb.run(spec).equals(kb.run(spec))


def test_reused_compiled_loop_matches_a_fresh_one():
    # Same graph, different values: the second run reuses the first's model,
    # optimizer and compiled loop, which must be fully reset.
    first = RunSpec(optimizer="adam", momentum=0.8, learning_rate=1e-2, steps=30)
    second = first.replace(learning_rate=3e-3, seed=7, init="xavier", task="regression-scaled")
    kb.clear_cache()
    kb.run(first)
    reused = kb.run(second)
    assert len(kb._TRAINERS) == 1
    (trainer,) = kb._TRAINERS.values()
    assert trainer.train.experimental_get_tracing_count() == 1  # not traced again
    kb.clear_cache()
    assert reused.equals(kb.run(second))


def test_stop_on_nonfinite_ends_at_the_first_nonfinite_step():
    spec = RunSpec(steps=300)  # diverges within a few steps
    full = kb.run(spec.replace(stop_on_nonfinite=False))
    assert full.steps_run == 300
    bad = (
        ~np.isfinite(full.loss)
        | ~np.isfinite(full.grad_norms).all(axis=1)
        | ~np.isfinite(full.weight_norms).all(axis=1)
    )
    first_bad = int(np.flatnonzero(bad)[0])

    stopped = kb.run(spec)
    assert stopped.first_nonfinite_step == first_bad
    assert stopped.steps_run == first_bad + 1
    for name in ("loss", "grad_norms", "clipped_grad_norms", "grad_max_abs", "weight_norms"):
        np.testing.assert_array_equal(
            getattr(stopped, name), getattr(full, name)[: first_bad + 1], err_msg=name
        )


def test_diverging_rnn_runs_every_step_without_raising():
    spec = RunSpec(
        model="rnn", activation="relu", init="orthogonal", init_scale=3.0, learning_rate=0.1,
        seq_len=20, width=16, steps=40, stop_on_nonfinite=False,
    )  # fmt: skip
    trace = kb.run(spec)
    assert trace.steps_run == 40
    assert trace.diverged
    assert not np.isfinite(trace.weight_norms[-1]).any()  # NaN never goes away


@pytest.mark.parametrize(
    "spec",
    [RunSpec(steps=100), RunSpec(task="regression-scaled", steps=20)],
    ids=["diverging", "finite"],
)
def test_chunking_does_not_change_the_trace(spec, monkeypatch):
    whole = kb.run(spec)
    monkeypatch.setattr(kb, "CHUNK_STEPS", 3)
    assert kb.run(spec).equals(whole)


def test_max_abs_is_nan_exactly_where_the_layer_norm_is() -> None:
    # segment_max skips NaN; the backend must put it back
    trace = kb.run(RunSpec(steps=20, stop_on_nonfinite=False))
    assert np.isnan(trace.grad_norms).any()
    np.testing.assert_array_equal(np.isnan(trace.grad_max_abs), np.isnan(trace.grad_norms))


# -- normalization, residual connections, warm-up ------------------------------


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_normalization_variables_join_their_hidden_layer(kind):
    spec = RunSpec(depth=2, width=8, normalization=kind, steps=1)
    model = kb.build(spec)
    norm = model.get_layer("dense_1_norm")
    assert norm.epsilon == 1e-3
    if kind == "batch":
        assert norm.momentum == 0.99
    groups = kb.layer_weights(model, spec)
    assert [len(g) for g in groups] == [4, 4, 2]
    assert groups[0][2] is norm.gamma and groups[0][3] is norm.beta
    # moving statistics are not trainable, so not recorded
    assert all(v.trainable for g in groups for v in g)
    # training=True: batch norm normalizes with the batch's own statistics
    X, y = dataset_for(spec)
    idx = batch_indices(len(X), spec.batch_size, 1, seed=spec.seed)[0]
    with tf.GradientTape() as tape:
        mse = tf.reduce_mean(tf.square(model(X[idx], training=True) - y[idx]))
    grads = tape.gradient(mse, groups)
    np.testing.assert_allclose(kb.run(spec).grad_norms[0], _layer_norms(grads), rtol=1e-5)


def test_linear_warmup_schedule_values():
    schedule = kb._LinearWarmup(0.01, 4)
    values = [float(schedule(t)) for t in range(6)]
    np.testing.assert_allclose(values, [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01], rtol=1e-6)
    spec = RunSpec(warmup_steps=4)
    variables = _flat(kb.layer_weights(kb.build(spec), spec))
    assert kb.make_optimizer(spec, variables).learning_rate.numpy() == pytest.approx(
        0.0025
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"warmup_steps": 5},
        {"normalization": "batch", "depth": 3, "residual": True},
    ],
    ids=["warmup", "batch-norm-residual"],
)
def test_reused_compiled_loop_with_new_options_matches_a_fresh_one(changes):
    first = RunSpec(task="regression-scaled", steps=20, **changes)
    second = first.replace(seed=3, init="xavier")
    kb.clear_cache()
    kb.run(first)
    reused = kb.run(second)
    assert len(kb._TRAINERS) == 1
    kb.clear_cache()
    assert reused.equals(kb.run(second))
    # A warm-up's rate is inside the graph: another rate gets its own loop.
    if "warmup_steps" in changes:
        kb.run(first)
        kb.run(first.replace(learning_rate=1e-3))
        assert len(kb._TRAINERS) == 2
