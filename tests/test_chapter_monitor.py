"""Chapter "Watch your own model": its conclusions, pinned in both frameworks.

The chapter trains a small tanh CNN (its own model, not built from a
`RunSpec`) on the ink of scikit-learn's 8x8 digits, watched by the
gradient monitors. The models and training loops are the chapter's own
(its first cells, run by `_chapter.run_cells`); if a change to the
monitors, `diagnose` or the frameworks made a statement of the prose
false, this fails first.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

# PyTorch first, then TensorFlow (see explodebook.backends.get).
import torch  # noqa: I001
from torch import nn

from explodebook import diagnose
from explodebook.trace import Trace

from _chapter import run_cells

FRAMEWORKS = ("torch", "keras")
GOOD_LR, BAD_LR, CLIP = 0.003, 0.03, 1.0
LAYERS = ["conv1", "conv2", "head"]



@functools.cache
def chapter() -> dict:
    """The chapter's own models and training loops (its first cells, run)."""
    return run_cells("11", through="def train_keras(")


def train(framework: str, lr: float, clip: float | None = None, relu: bool = False) -> Trace:
    """The chapter's train_torch / train_keras, with tanh or ReLU units."""
    if framework == "torch":
        return chapter()["train_torch"](lr, clip, activation=nn.ReLU if relu else nn.Tanh)
    return chapter()["train_keras"](lr, clip, activation="relu" if relu else "tanh")


_cache: dict[tuple[str, float, float | None], Trace] = {}


def trained(framework: str, lr: float, clip: float | None = None) -> Trace:
    key = (framework, lr, clip)
    if key not in _cache:
        _cache[key] = train(framework, lr, clip)
    return _cache[key]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_healthy_run_is_diagnosed_healthy_and_learns(framework: str) -> None:
    trace = trained(framework, GOOD_LR)
    assert trace.framework == framework
    assert trace.layers == LAYERS  # named as the reader named them
    assert trace.steps_run == 114  # two epochs of 57 batches
    assert not trace.diverged
    assert diagnose(trace).verdict == "healthy"
    assert trace.final_loss(20) < 0.1 * np.median(trace.loss[:10])
    # The prose: the head's gradient is the largest and is above 1.0 at
    # almost every step; conv1's is below 1.0 at most steps.
    assert np.median(trace.grad_norms[:, 2]) > np.median(trace.grad_norms[:, 0])
    assert np.mean(trace.grad_norms[:, 2] > 1.0) > 0.9
    assert np.mean(trace.grad_norms[:, 0] < 1.0) > 0.5


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ten_times_the_learning_rate_overflows_the_loss_first_then_the_convolutions(
    framework: str,
) -> None:
    trace = trained(framework, BAD_LR)
    assert diagnose(trace).verdict == "exploding"
    step = trace.first_nonfinite_step
    assert step is not None and step < 20  # "within twenty steps"
    assert (trace.first_nonfinite_kind, trace.first_nonfinite_layer) == ("loss", None)
    assert trace.extra["first_nonfinite_parameter"] is None
    assert trace.steps_run == 114  # the monitor keeps recording after NaN
    # The first non-finite gradients come later, in the two convolutions only.
    bad = ~np.isfinite(trace.grad_norms)
    grad_step = int(np.argmax(bad.any(axis=1)))
    assert step < grad_step <= step + 5
    assert list(bad[grad_step]) == [True, True, False]
    # Before the overflow the head's gradient grows by over 15 orders of
    # magnitude while the convolutions' stay far smaller.
    finite = trace.grad_norms[:step]
    assert finite[:, 2].max() > 1e15 * finite[0, 2]
    assert finite[:, :2].max() < 1e-10 * finite[:, 2].max()
    assert not np.isfinite(trace.loss[-1])  # never finite again


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_global_clipping_keeps_the_bad_learning_rate_finite(framework: str) -> None:
    trace = trained(framework, BAD_LR, CLIP)
    assert not trace.diverged
    assert trace.final_loss(20) < trained(framework, GOOD_LR).final_loss(20)
    applied = np.sqrt((trace.clipped_grad_norms**2).sum(axis=1))
    assert np.all(applied <= CLIP * (1 + 1e-4))
    assert np.mean(applied < trace.grad_norm_total * (1 - 1e-6)) > 0.9
    # Norms before clipping stay above 1.0: diagnose still says "exploding".
    assert diagnose(trace).verdict == "exploding"
    assert diagnose(trace)["grad_norm_above_1"].present


def test_both_frameworks_agree_on_where_the_broken_run_overflows() -> None:
    torch_trace, keras_trace = (trained(fw, BAD_LR) for fw in FRAMEWORKS)
    assert abs(torch_trace.first_nonfinite_step - keras_trace.first_nonfinite_step) <= 3


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_with_relu_the_bad_learning_rate_kills_the_convolutions_without_nan(
    framework: str,
) -> None:
    trace = train(framework, BAD_LR, relu=True)
    assert not trace.diverged
    assert np.all(np.median(trace.grad_norms[:, :2], axis=0) == 0.0)
    assert diagnose(trace)["growing_weights"].present
    assert diagnose(trace).verdict == "exploding"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_exercise_threshold_between_0_005_and_0_01(framework: str) -> None:
    assert not train(framework, 0.005).diverged
    late = train(framework, 0.01).first_nonfinite_step
    assert late is not None and late > trained(framework, BAD_LR).first_nonfinite_step


def test_exercise_scaled_target_keras_stays_finite_pytorch_overflows_later() -> None:
    # The solution's prose: with the target standardized, the Keras run stays
    # finite without the "above 1.0 in every layer" sign; PyTorch's still
    # overflows, later than with the unscaled target.
    namespace = chapter()
    unscaled = namespace["ink"], namespace["y_torch"]
    ink = (unscaled[0] - unscaled[0].mean()) / unscaled[0].std()
    namespace["ink"], namespace["y_torch"] = ink, torch.from_numpy(ink[:, None])
    try:
        scaled = {fw: train(fw, BAD_LR) for fw in FRAMEWORKS}
    finally:
        namespace["ink"], namespace["y_torch"] = unscaled
    assert not scaled["keras"].diverged
    assert not diagnose(scaled["keras"])["grad_norm_above_1"].present
    assert scaled["torch"].diverged
    assert scaled["torch"].first_nonfinite_step > trained("torch", BAD_LR).first_nonfinite_step
