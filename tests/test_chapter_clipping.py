"""Chapter 7's conclusions (gradient clipping), pinned through the package.

The chapter's prose states these, in both frameworks; if a change to the
package made one false, the prose would be wrong, so this fails first.
Bounds are generous: they pin the conclusion, not the float.
"""

from __future__ import annotations

import numpy as np
import pytest

from explodebook import RunSpec, diagnose, run
from explodebook.metrics import fraction_clipped

from _chapter import run_cells

FRAMEWORKS = ("torch", "keras")
CLASSIC = RunSpec()
TARGET_VARIANCE = 2.0e4  # of the unscaled regression target (about 20381)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_baseline_diverges_and_clipping_trains(framework: str) -> None:
    baseline = run(CLASSIC, framework)
    stop = baseline.first_nonfinite_step
    assert stop == 8
    # What the prose says of that step: the loss is infinite (not NaN) and
    # the gradient NaN.
    assert np.isinf(baseline.loss[stop]) and np.isnan(baseline.grad_norm_total[stop])
    finals = {}
    for clipping in ({"clipnorm": 1.0}, {"clipvalue": 5.0}, {"clipvalue": 0.5},
                     {"global_clipnorm": 1.0}):
        trace = run(CLASSIC.replace(**clipping), framework)
        assert not trace.diverged, clipping
        # From a loss of ~2e4 to a small fraction of the target's variance.
        assert trace.final_loss() < 1e-2 * TARGET_VARIANCE, clipping
        # On this unscaled target, clipping is active on (nearly) every step.
        assert fraction_clipped(trace) > 0.99, clipping
        finals[next(iter(clipping.items()))] = trace.final_loss()
    assert finals["clipnorm", 1.0] < 5
    assert finals["clipvalue", 5.0] > finals["clipnorm", 1.0]


def test_clipped_run_still_shows_the_gradient_norm_sign() -> None:
    diagnosis = diagnose(run(CLASSIC.replace(global_clipnorm=1.0)))
    assert diagnosis["grad_norm_above_1"].present
    assert not diagnosis["nan_loss"].present


def test_keras_clipping_arguments_match_their_pytorch_calls() -> None:
    # What the chapter itself computed: its PyTorch clipping calls and the
    # steps Keras' optimizer takes with each clipping argument, on the same
    # first batch.
    chapter = run_cells("07", through="def flat(")
    torch_results, keras_results = chapter["torch_results"], chapter["keras_results"]
    flat = chapter["flat"]
    for mode in ("per variable", "global", "by value"):
        np.testing.assert_allclose(
            flat(torch_results[mode]), flat(keras_results[mode]), atol=1e-5, err_msg=mode
        )

    flat_raw = flat([g.numpy().T for g in chapter["raw_grads"]])

    def cosine(g: np.ndarray) -> float:
        return float(g @ flat_raw / np.linalg.norm(g) / np.linalg.norm(flat_raw))

    per_variable, global_, by_value = (
        flat(torch_results[mode]) for mode in ("per variable", "global", "by value")
    )
    # Keras clipnorm (per variable) is NOT PyTorch's clip_grad_norm_ (global):
    # four variables (two kernels, two biases), each clipped to norm 1.
    assert np.linalg.norm(per_variable) == pytest.approx(2.0, rel=1e-4)
    assert np.linalg.norm(global_) == pytest.approx(1.0, rel=1e-4)
    assert cosine(global_) > 0.9999
    assert cosine(per_variable) < 0.95
    assert cosine(by_value) < cosine(per_variable)


def test_keras2_clipnorm_is_keras3_global_clipnorm_and_reproduces_the_tutorial() -> None:
    # The chapter's NumPy transcription of Keras 2's clipnorm, applied to the
    # same first batch: it is Keras 3's global_clipnorm, not its clipnorm.
    chapter = run_cells("07", through="def keras2_clipnorm(")
    gap = chapter["keras2_gap"]
    assert gap["global"] < 1e-5
    assert gap["per variable"] > 0.01
    # The tutorial's rescue (global clipping at 1.0) trains, and both
    # frameworks agree closely on it (they drift apart with per-variable
    # clipping, which the prose does not claim agreement for).
    tutorial = [run(CLASSIC.replace(global_clipnorm=1.0), fw) for fw in FRAMEWORKS]
    assert not any(t.diverged for t in tutorial)
    assert tutorial[0].final_loss() == pytest.approx(tutorial[1].final_loss(), rel=1e-3)
    assert tutorial[0].final_loss() < 1e-3 * TARGET_VARIANCE


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_threshold_near_the_average_norm_clips_only_early_steps(framework: str) -> None:
    slow = CLASSIC.replace(learning_rate=1e-3)
    unclipped = run(slow, framework)
    assert not unclipped.diverged
    mean_norm = unclipped.grad_norm_total.mean()
    assert 30 < mean_norm < 300  # the chapter sets c = 100 "near the mean"
    near = run(slow.replace(global_clipnorm=100.0), framework)
    assert fraction_clipped(near) < 0.25
    assert near.final_loss() < 2 * unclipped.final_loss()
    far_below = run(slow.replace(global_clipnorm=1.0), framework)
    assert fraction_clipped(far_below) > 0.99
    assert far_below.final_loss() > 100 * unclipped.final_loss()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_at_the_classic_rate_no_threshold_beats_a_smaller_rate(framework: str) -> None:
    best_unclipped = run(CLASSIC.replace(learning_rate=1e-3), framework).final_loss()
    for c in (1.0, 100.0):
        trace = run(CLASSIC.replace(global_clipnorm=c), framework)
        assert fraction_clipped(trace) > 0.99
        assert trace.final_loss() > 5 * best_unclipped
    loose = run(CLASSIC.replace(global_clipnorm=1000.0), framework)
    assert not loose.diverged and fraction_clipped(loose) < 0.3
    # Every hidden ReLU unit died: the hidden layer's gradient is exactly 0
    # and the network predicts the mean (loss ~ the target's variance).
    assert np.all(loose.grad_norms[-500:, 0] == 0)
    assert loose.final_loss() > 0.5 * TARGET_VARIANCE


def test_when_every_step_is_clipped_only_lr_times_threshold_matters() -> None:
    a = run(CLASSIC.replace(global_clipnorm=1.0), "torch")
    b = run(CLASSIC.replace(learning_rate=1e-3, global_clipnorm=10.0), "torch")
    assert np.max(np.abs(a.loss - b.loss) / a.loss) < 1e-3
    a_k = run(CLASSIC.replace(global_clipnorm=1.0), "keras")
    b_k = run(CLASSIC.replace(learning_rate=1e-3, global_clipnorm=10.0), "keras")
    assert a_k.final_loss() == pytest.approx(b_k.final_loss(), rel=0.1)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_clipping_does_not_fix_a_learning_rate_too_high(framework: str) -> None:
    scaled = RunSpec(task="regression-scaled", steps=400)
    good = run(scaled.replace(learning_rate=0.1), framework)
    assert not good.diverged and good.final_loss() < 1e-2
    assert run(scaled.replace(learning_rate=1.0), framework).diverged
    clipped = run(scaled.replace(learning_rate=1.0, global_clipnorm=1.0), framework)
    assert not clipped.diverged
    assert clipped.final_loss() > 1.0  # worse than predicting the mean
    tight = run(scaled.replace(learning_rate=1.0, global_clipnorm=0.1), framework)
    assert fraction_clipped(tight) > 0.99
    assert tight.final_loss() < 1.0
    assert tight.final_loss() > 10 * good.final_loss()


def test_an_overflowing_norm_zeroes_in_pytorch_and_nans_in_keras() -> None:
    import torch
    from torch import nn

    from explodebook.backends import keras as _  # noqa: F401  (import order)
    import keras
    import tensorflow as tf

    huge = [np.full(4, 1e20, np.float32), np.ones(3, np.float32)]
    params = [nn.Parameter(torch.zeros(len(g))) for g in huge]
    for p, g in zip(params, huge):
        p.grad = torch.from_numpy(g.copy())
    assert torch.isinf(nn.utils.clip_grad_norm_(params, 1.0))
    assert all(torch.all(p.grad == 0) for p in params)

    weights = [keras.Variable(np.zeros_like(g)) for g in huge]
    keras.optimizers.SGD(1.0, global_clipnorm=1.0).apply_gradients(
        zip([tf.constant(g) for g in huge], weights)
    )
    assert all(np.isnan(w.numpy()).all() for w in weights)


def test_the_prose_numbers_come_from_the_runs() -> None:
    # Every {eval} of the chapter evaluates (run_cells raises otherwise), and
    # the ones that carry a claim say what the runs did.
    chapter = run_cells("07", through="diagnose(run(defaults")
    shown = chapter["_shown"]
    assert shown['base_stop["torch"]'] == shown['base_stop["keras"]'] == 8
    assert chapter["min_share"] > 99
    assert chapter["keras2_gap"]["global"] < 1e-5
    # Its section on the threshold (07a), a page of its own.
    section = run_cells("07a", through="huge = [np.full")
    assert section["_shown"]["diverged_rates"] == "0.3 and 1"


def test_a_clipped_step_stays_below_the_momentum_bound() -> None:
    # The derivation exercise's bound eta * c / (1 - beta), and the page's
    # own measurement of the tutorial's rescue: every step is below it.
    chapter = run_cells("07", through="longest_step = max(")
    assert chapter["bound"] == pytest.approx(0.1)
    assert 0 < chapter["longest_step"] <= chapter["bound"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_clipping_at_the_median_norm_clips_nearly_every_step(framework: str) -> None:
    # The predict-then-run exercise of section 7.1: the median of the
    # unclipped run's norms (PyTorch's, as the page uses) does not clip half
    # of the steps of the clipped run, and the clipped run fits worse.
    slow = CLASSIC.replace(learning_rate=1e-3)
    unclipped = run(slow, framework)
    median = float(np.median(run(slow).grad_norm_total))
    clipped = run(slow.replace(global_clipnorm=median), framework)
    assert fraction_clipped(clipped) > 0.9
    assert clipped.final_loss() > 3 * unclipped.final_loss()
