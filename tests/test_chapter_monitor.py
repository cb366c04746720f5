"""Chapter "Watch your own model": its conclusions, pinned in both frameworks.

The chapter trains a small tanh CNN (its own model, not built from a
`RunSpec`) on the ink of scikit-learn's 8x8 digits, watched by the
gradient monitors. The model and its training loops are
`explodebook.digits`, which the chapter shows and calls, and which the
grader of its exercises calls too; if a change to the monitors, `diagnose`
or the frameworks made a statement of the prose false, this fails first.
"""

from __future__ import annotations

import numpy as np
import pytest

# PyTorch first, then TensorFlow (see explodebook.backends.get).
import torch  # noqa: I001
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from explodebook import diagnose
from explodebook.digits import ink_data, torch_cnn, train
from explodebook.monitor.torch import GradientMonitor
from explodebook.trace import Trace

FRAMEWORKS = ("torch", "keras")
GOOD_LR, BAD_LR, CLIP = 0.003, 0.03, 1.0
LAYERS = ["conv1", "conv2", "head"]


def trained(framework: str, lr: float, clip: float | None = None) -> Trace:
    return train(framework, lr, clip)  # kept by the package: the same trace each time


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
    trace = train(framework, BAD_LR, activation="relu")
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
    scaled = {fw: train(fw, BAD_LR, standardize=True) for fw in FRAMEWORKS}
    assert not scaled["keras"].diverged
    assert not diagnose(scaled["keras"])["grad_norm_above_1"].present
    assert scaled["torch"].diverged
    assert scaled["torch"].first_nonfinite_step > trained("torch", BAD_LR).first_nonfinite_step


def test_exercise_threshold_steps_come_sooner_as_the_rate_grows() -> None:
    # mon-ex-threshold's solution: the overflow comes sooner at larger rates.
    for fw in FRAMEWORKS:
        steps = [train(fw, lr).first_nonfinite_step for lr in (0.01, 0.02, 0.03)]
        assert None not in steps and steps == sorted(steps, reverse=True)


def test_exercise_overflow_the_head_gradient_stays_finite_until_the_convolutions_go() -> None:
    # mon-ex-overflow's solution: the loss first, then the convolutions,
    # the head's own gradient last (or never within the run).
    for fw in FRAMEWORKS:
        trace = trained(fw, BAD_LR)
        bad = ~np.isfinite(trace.grad_norms)
        first = [int(np.argmax(bad[:, k])) if bad[:, k].any() else trace.steps_run for k in range(3)]
        assert trace.first_nonfinite_step < min(first[:2]) <= first[2]


def test_exercise_manual_mode_records_what_the_hooks_record() -> None:
    # mon-ex-manual's solution, as the chapter's section gives it.
    images, ink = ink_data()
    data = TensorDataset(torch.from_numpy(images[:, None]), torch.from_numpy(ink[:, None]))
    net = torch_cnn()
    optimizer = torch.optim.SGD(net.parameters(), lr=BAD_LR, momentum=0.9)
    loss_fn = nn.MSELoss()
    loader = DataLoader(data, batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    monitor = GradientMonitor(net)
    for _ in range(2):
        for X, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(net(X), y)
            loss.backward()
            monitor.record(loss)
            nn.utils.clip_grad_norm_(net.parameters(), CLIP)
            monitor.record_clipped()
            optimizer.step()
    monitor.close()
    np.testing.assert_allclose(monitor.trace().grad_norms, trained("torch", BAD_LR, CLIP).grad_norms,
                               rtol=1e-5)


def test_digits_module_checks_its_arguments_and_standardizes() -> None:
    with pytest.raises(ValueError, match="activation"):
        torch_cnn("sigmoid")
    with pytest.raises(ValueError, match="framework"):
        train("jax", GOOD_LR)
    images, ink = ink_data()
    assert images.shape == (1797, 8, 8) and ink.shape == (1797,) and ink.dtype == np.float32
    _, scaled = ink_data(standardize=True)
    assert abs(float(scaled.mean())) < 1e-4 and abs(float(scaled.std()) - 1) < 1e-4


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_kept_traces_are_read_only(framework: str) -> None:
    # train() hands the same trace to every caller (pages in one kernel, graders)
    trace = trained(framework, GOOD_LR)
    for values in (trace.loss, trace.grad_norm_total, trace.grad_norms):
        with pytest.raises(ValueError, match="read-only"):
            values[0] = 0.0
    assert trained(framework, GOOD_LR) is trace


@pytest.mark.parametrize("name", ["torch_cnn", "train_torch", "keras_cnn", "train_keras"])
def test_the_page_shows_the_package_code_it_runs(name: str) -> None:
    # The tabs hold the code as plain Python blocks (JupyterLab's MyST and
    # Colab know no literalinclude); this keeps them the package's code.
    import inspect
    from pathlib import Path

    import explodebook.digits

    page = (Path(__file__).resolve().parents[1] / "chapters" / "11_watch_your_model.md").read_text()
    source = inspect.getsource(getattr(explodebook.digits, name)).rstrip("\n")
    assert f"```python\n{source}\n```" in page, f"chapter 11 does not show explodebook.digits.{name} as it is"
