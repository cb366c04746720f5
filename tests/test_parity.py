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

from explodebook.parity import CLIPPED as CLIPPED_NAMES
from explodebook.parity import FIELDS, OUTCOME_SPECS, RTOL, STEP_SPECS, compare_outcome, relative_difference

# The specs live in the package: the book's page "Do PyTorch and Keras
# agree?" shows the table computed from the same ones.
SPECS = {name: spec for name, spec in STEP_SPECS.items() if name not in CLIPPED_NAMES}
CLIPPED = {name: STEP_SPECS[name] for name in CLIPPED_NAMES}


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
    # the page's table says the same as the assertion above
    assert relative_difference(a, b) <= RTOL
    return a, b


def test_relative_difference_sees_one_changed_entry_and_moved_nonfinite_values():
    from dataclasses import replace

    a = tb.run(RunSpec(steps=3))
    assert relative_difference(a, a) == 0.0
    norms = a.grad_norms.copy()
    norms[2, 1] *= 1 + 3 * RTOL  # one entry of one field, at the last step
    assert relative_difference(a, replace(a, grad_norms=norms)) == pytest.approx(3 * RTOL)
    loss = a.loss.copy()
    loss[1] = np.nan  # a non-finite value where the other trace has none
    assert relative_difference(a, replace(a, loss=loss)) == float("inf")


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


@pytest.mark.parametrize("name", OUTCOME_SPECS)
def test_outcomes_agree(name):
    spec = OUTCOME_SPECS[name]
    row = compare_outcome(name, tb.run(spec), kb.run(spec))
    assert row.agree, row
    # the classic set-up is the one that goes non-finite; the tamed ones run to the end
    diverges = spec == RunSpec()
    assert (row.first_nonfinite[0] is not None) == diverges
    assert row.steps == (row.first_nonfinite[0] + 1 if diverges else spec.steps)
