"""Monitored traces say where they came from and record what the contract says.

- a monitored model has no `RunSpec`: the trace carries none, and nothing
  downstream (``outcome``) invents a data set for it;
- both monitors record the data loss, without L1/L2 penalties;
- the PyTorch monitor's norm before clipping is right even when the first
  and last parameters get no gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from explodebook.frameworks import import_tensorflow, import_torch

torch = import_torch()
tf, keras = import_tensorflow()
from torch import nn  # noqa: E402

from explodebook import Trace, diagnose  # noqa: E402
from explodebook.monitor import keras as kmon  # noqa: E402
from explodebook.monitor import torch as tmon  # noqa: E402
from explodebook.outcome import outcome  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 3)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")) * 10


def torch_trace(l2: float = 0.0, steps: int = 4) -> tuple[Trace, list[float]]:
    """A reader's loop with an explicit L2 penalty; also the MSEs by hand."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    by_hand = []
    with tmon.GradientMonitor(net, optimizer, loss_fn=loss_fn) as monitor:
        for i in range(steps):
            xb, yb = torch.from_numpy(X[i * 16 : (i + 1) * 16]), torch.from_numpy(Y[i * 16 : (i + 1) * 16])
            optimizer.zero_grad()
            loss = loss_fn(net(xb), yb)
            by_hand.append(float(((net(xb) - yb) ** 2).mean().detach()))
            penalty = sum((p**2).sum() for n, p in net.named_parameters() if n.endswith("weight"))
            (loss + l2 * penalty).backward()
            optimizer.step()
    return monitor.trace(), by_hand


def keras_model(l2: float) -> keras.Model:
    keras.utils.set_random_seed(0)
    reg = keras.regularizers.L2(l2) if l2 else None
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(8, activation="tanh", kernel_regularizer=reg),
        keras.layers.Dense(1, kernel_regularizer=reg),
    ])  # fmt: skip
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def keras_trace(l2: float) -> tuple[Trace, float]:
    model = keras_model(l2)
    first = float(np.mean((model.predict(X[:16], verbose=0) - Y[:16]) ** 2))
    monitor = kmon.GradientMonitor()
    model.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    return monitor.trace(), first


# -- where a trace came from ---------------------------------------------------


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_monitored_trace_has_no_spec_and_outcome_asks_for_the_baseline(framework, tmp_path):
    trace = torch_trace()[0] if framework == "torch" else keras_trace(0.0)[0]
    assert trace.spec is None
    assert trace.extra["source"] == f"explodebook.monitor.{framework}"
    assert "steps of" in repr(trace)
    with pytest.raises(ValueError, match="needs baseline="):
        outcome(trace)
    baseline = float(np.var(Y))
    result = outcome(trace, baseline=baseline)
    assert result.relative_loss == pytest.approx(trace.final_loss() / baseline)
    diagnose(trace)  # needs nothing from a spec
    path = tmp_path / "monitored.npz"
    trace.save(path)
    loaded = Trace.load(path)
    assert loaded.spec is None and loaded.equals(trace)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, "1", True])
def test_outcome_refuses_a_bad_baseline(bad):
    trace = torch_trace(steps=2)[0]
    with pytest.raises(ValueError, match="baseline=.* is not allowed"):
        outcome(trace, baseline=bad)


# -- the data loss, without penalties ------------------------------------------


def test_torch_monitor_records_the_data_loss_without_the_penalty():
    plain, plain_hand = torch_trace(l2=0.0)
    penalized, penalized_hand = torch_trace(l2=10.0)
    np.testing.assert_allclose(plain.loss, plain_hand, rtol=1e-6)
    np.testing.assert_allclose(penalized.loss, penalized_hand, rtol=1e-6)
    # Same initial weights: the first step's data loss is the same.
    assert penalized.loss[0] == pytest.approx(plain.loss[0], rel=1e-6)


def test_keras_monitor_records_the_data_loss_without_the_penalty():
    plain, plain_first = keras_trace(0.0)
    penalized, penalized_first = keras_trace(10.0)
    assert plain_first == pytest.approx(penalized_first, rel=1e-6)  # same weights
    assert plain.loss[0] == pytest.approx(plain_first, rel=1e-5)
    # Before the fix the recorded loss included 10 * sum(W**2): several units more.
    assert penalized.loss[0] == pytest.approx(penalized_first, rel=1e-5)


# -- the norm before clipping ----------------------------------------------------


class MiddleOnly(nn.Module):
    """Three layers, but the loss uses the middle one only."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.middle = nn.Linear(3, 1)
        self.last = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.middle(x)


def test_torch_norm_before_clipping_when_first_and_last_parameters_get_no_gradient():
    torch.manual_seed(0)
    net = MiddleOnly()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    true_norms = []
    with tmon.GradientMonitor(net, optimizer, loss_fn=loss_fn) as monitor:
        for i in range(3):
            optimizer.zero_grad()
            loss_fn(net(torch.from_numpy(X[i * 16 : (i + 1) * 16])), torch.from_numpy(Y[i * 16 : (i + 1) * 16])).backward()
            true_norms.append(float(nn.utils.clip_grad_norm_(net.parameters(), 0.01)))
            optimizer.step()
    trace = monitor.trace()
    assert min(true_norms) > 1.0  # the clip really changes the gradients
    np.testing.assert_allclose(trace.grad_norm_total, true_norms, rtol=1e-5)
    np.testing.assert_allclose(np.sqrt((trace.clipped_grad_norms**2).sum(axis=1)), 0.01, rtol=1e-4)
