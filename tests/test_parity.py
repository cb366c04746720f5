"""PyTorch and Keras give the same trace for the same spec.

Both backends start from the same numpy initial weights and see the same
batches, so their first steps must agree to float32 rounding (the tolerance
leaves room for rounding that compounds over a few steps). Over hundreds of
steps rounding differences can grow (training is chaotic); there only the
outcome, diverged or not, is compared.
"""

from __future__ import annotations

import numpy as np
import pytest

# torch before TensorFlow (see explodebook.backends.keras).
import torch  # noqa: I001
from explodebook.backends import keras as kb
from explodebook.backends import torch as tb
from explodebook.data import dataset_for
from explodebook.spec import RunSpec
from explodebook.weights import initial_weights

STEPS = 5
RTOL = 1e-4
_RNN = {"model": "rnn", "seq_len": 12, "width": 8, "steps": STEPS}

SPECS = {
    "default mlp": RunSpec(steps=STEPS),
    "deep tanh mlp": RunSpec(
        depth=4, width=16, activation="tanh", init="xavier", task="regression-scaled", steps=STEPS
    ),
    "simple rnn": RunSpec(**_RNN),
    "relu simple rnn": RunSpec(activation="relu", **_RNN),
    "lstm": RunSpec(cell="lstm", **_RNN),
    "gru": RunSpec(cell="gru", **_RNN),
    "truncated lstm": RunSpec(cell="lstm", depth=2, truncation=4, **_RNN),
    "truncated gru": RunSpec(cell="gru", depth=2, truncation=3, **_RNN),
    "truncated simple rnn": RunSpec(truncation=1, **_RNN),
    "l2 mlp": RunSpec(l2=0.01, steps=STEPS),
    "l1 mlp": RunSpec(l1=0.01, task="regression-scaled", steps=STEPS),
    "l1 l2 gru": RunSpec(cell="gru", l1=1e-3, l2=1e-2, **_RNN),
    "adam mlp": RunSpec(optimizer="adam", learning_rate=1e-3, steps=STEPS),
    "adam lstm": RunSpec(cell="lstm", optimizer="adam", learning_rate=1e-2, **_RNN),
    "batch norm mlp": RunSpec(depth=3, width=16, normalization="batch", steps=STEPS),
    "layer norm mlp": RunSpec(depth=3, width=16, normalization="layer", steps=STEPS),
    "batch norm tanh l2 mlp": RunSpec(
        depth=3, width=16, activation="tanh", normalization="batch", l2=0.01,
        task="regression-scaled", steps=STEPS,
    ),
    "residual mlp": RunSpec(depth=4, width=16, residual=True, task="regression-scaled", steps=STEPS),
    "residual batch norm mlp": RunSpec(
        depth=4, width=16, residual=True, normalization="batch", task="regression-scaled",
        steps=STEPS,
    ),
    "residual layer norm mlp": RunSpec(
        depth=4, width=16, residual=True, normalization="layer", task="regression-scaled",
        steps=STEPS,
    ),
    "warm-up sgd": RunSpec(warmup_steps=3, momentum=0.0, steps=STEPS),
    "warm-up adam": RunSpec(warmup_steps=4, optimizer="adam", learning_rate=1e-2, steps=STEPS),
    "warm-up batch norm adam": RunSpec(
        depth=2, normalization="batch", warmup_steps=2, optimizer="adam", steps=STEPS
    ),
}

CLIPPED = {
    "clipnorm": RunSpec(clipnorm=1.0, steps=STEPS),
    "clipvalue": RunSpec(clipvalue=0.5, steps=STEPS),
    "global_clipnorm": RunSpec(global_clipnorm=1.0, steps=STEPS),
    "clipnorm lstm": RunSpec(cell="lstm", clipnorm=0.05, **_RNN),
}

FIELDS = (
    "loss", "grad_norm_total", "grad_norms", "clipped_grad_norms", "grad_max_abs", "weight_norms",
)  # fmt: skip


#: The options `RunSpec` gained for the "Beyond the article" chapter.
NEW_OPTIONS = [name for name in SPECS if "norm" in name or "residual" in name or "warm" in name]


@pytest.mark.parametrize("name", NEW_OPTIONS)
def test_first_step_gradients_agree_to_float32_rounding(name):
    a, b = tb.run(SPECS[name].replace(steps=1)), kb.run(SPECS[name].replace(steps=1))
    np.testing.assert_allclose(b.grad_norms, a.grad_norms, rtol=2e-6, atol=0)
    np.testing.assert_allclose(b.grad_max_abs, a.grad_max_abs, rtol=2e-6, atol=0)


def test_warmup_with_sgd_momentum_follows_each_frameworks_convention():
    # PyTorch's SGD keeps v <- m v + g and steps lr_t * v; Keras keeps
    # v <- m v - lr_t g and steps v. With a constant rate they are the same
    # update; while the rate changes they are not, and each backend uses its
    # framework's own optimizer. The first update (no velocity yet) agrees;
    # the second (velocity from step 0 times lr_1 vs lr_0) does not.
    spec = RunSpec(warmup_steps=4, steps=3)
    a, b = tb.run(spec), kb.run(spec)
    np.testing.assert_allclose(b.loss[:2], a.loss[:2], rtol=1e-6)  # step 1 uses only g_0
    assert abs(b.loss[2] - a.loss[2]) > 1e-4 * a.loss[2]


def _assert_same_steps(spec: RunSpec):
    a, b = tb.run(spec), kb.run(spec)
    assert a.layers == b.layers
    assert a.steps_run == b.steps_run == spec.steps
    assert not a.diverged and not b.diverged
    for field in FIELDS:
        np.testing.assert_allclose(
            getattr(b, field), getattr(a, field), rtol=RTOL, atol=0, err_msg=field
        )
    return a, b


@pytest.mark.parametrize("name", SPECS)
def test_first_steps_agree(name):
    _assert_same_steps(SPECS[name])


@pytest.mark.parametrize("name", CLIPPED)
def test_first_steps_agree_with_clipping(name):
    a, b = _assert_same_steps(CLIPPED[name])
    # The comparison above covers clipped norms only if clipping acted.
    assert (a.clipped_grad_norms < 0.99 * a.grad_norms).any()


def test_a_large_network_is_recorded_one_step_at_a_time_and_agrees():
    # Over a million parameters: one step's flat record is more than
    # FLUSH_BYTES, so both backends reduce it step by step (PyTorch's
    # recorder flushes every step, Keras runs one-step chunks). Every
    # step is still recorded, and the two agree.
    spec = RunSpec(depth=2, width=1024, clipnorm=1.0, task="regression-scaled", steps=3)
    assert tb.LayerRecorder(tb.layer_weights(tb.build(spec), spec), True).flush_every == 1
    a, b = _assert_same_steps(spec)
    assert a.steps_run == 3 and np.isfinite(a.weight_norms).all()


@pytest.mark.parametrize(
    "spec",
    [RunSpec(depth=2), *(RunSpec(model="rnn", cell=c, depth=2) for c in ("simple", "lstm", "gru"))],
    ids=["mlp", "simple", "lstm", "gru"],
)
def test_loaded_weights_compute_the_same_function(spec):
    # Random weights everywhere, biases included (the initial biases are
    # mostly zero, which would hide a misplaced bias), loaded into both.
    rng = np.random.default_rng(0)
    weights = [
        {name: rng.normal(0.0, 0.2, a.shape).astype(np.float32) for name, a in layer.items()}
        for layer in initial_weights(spec)
    ]
    torch_model, keras_model = tb.build(spec), kb.build(spec)
    tb.load_weights(torch_model, spec, weights)
    kb.load_weights(keras_model, spec, weights)
    X = dataset_for(spec)[0][:16]
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(X.copy())).numpy()
    np.testing.assert_allclose(np.asarray(keras_model(X)), expected, rtol=1e-4, atol=1e-5)


def test_default_spec_diverges_in_both():
    spec = RunSpec()
    a, b = tb.run(spec), kb.run(spec)
    assert a.diverged and b.diverged
    assert a.first_nonfinite_step == b.first_nonfinite_step
    assert a.steps_run == b.steps_run == a.first_nonfinite_step + 1


@pytest.mark.parametrize(
    "spec", [RunSpec(task="regression-scaled"), RunSpec(clipnorm=1.0)], ids=["scaled", "clipnorm"]
)
def test_tamed_specs_do_not_diverge_in_both(spec):
    a, b = tb.run(spec), kb.run(spec)
    assert not a.diverged and not b.diverged
    assert a.steps_run == b.steps_run == spec.steps
