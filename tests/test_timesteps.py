"""`input_gradient_norms`: against finite differences and across frameworks."""

from __future__ import annotations

import numpy as np
import pytest

from explodebook import RunSpec, SpecError
from explodebook.data import dataset_for
from explodebook.timesteps import input_gradient_norms
from explodebook.weights import initial_weights

FRAMEWORKS = ("torch", "keras")


def _numpy_loss(spec: RunSpec, x: np.ndarray, y: np.ndarray) -> float:
    """MSE of a one-layer simple tanh RNN with the spec's initial weights, float64."""
    layer, head = initial_weights(spec)
    kernel, recurrent = layer["kernel"].astype(float), layer["recurrent_kernel"].astype(float)
    h = np.zeros((x.shape[0], spec.width))
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + layer["bias"])
    out = h @ head["kernel"].astype(float) + head["bias"]
    return float(np.mean((out - y) ** 2))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_matches_finite_differences(framework: str) -> None:
    # A tiny network whose loss numpy computes by hand, in float64:
    # central differences give every dL/dx_t element.
    spec = RunSpec(model="rnn", width=3, seq_len=4, batch_size=2, init_scale=1.5)
    X, y = dataset_for(spec)
    x, y = np.array(X[:2], dtype=float), np.array(y[:2], dtype=float)
    grad = np.zeros_like(x)
    eps = 1e-6
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        grad[index] = (_numpy_loss(spec, x + step, y) - _numpy_loss(spec, x - step, y)) / (2 * eps)
    expected = np.sqrt((grad**2).sum(axis=(0, 2)))
    np.testing.assert_allclose(input_gradient_norms(spec, framework), expected, rtol=1e-4)


@pytest.mark.parametrize("cell", ["simple", "lstm", "gru"])
def test_frameworks_agree(cell: str) -> None:
    spec = RunSpec(model="rnn", cell=cell, width=16, seq_len=30, init="xavier")
    torch_norms = input_gradient_norms(spec, "torch")
    keras_norms = input_gradient_norms(spec, "keras")
    assert torch_norms.shape == keras_norms.shape == (30,)
    assert torch_norms.dtype == np.float64
    # float32 arithmetic in different orders; the values span many decades,
    # so compare relatively, step by step.
    np.testing.assert_allclose(torch_norms, keras_norms, rtol=1e-3)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_truncation_cuts_the_early_steps(framework: str) -> None:
    spec = RunSpec(model="rnn", width=8, seq_len=12, truncation=5)
    norms = input_gradient_norms(spec, framework)
    assert np.all(norms[:7] == 0)
    assert np.all(norms[7:] > 0)


def test_batch_size_changes_the_batch() -> None:
    spec = RunSpec(model="rnn", width=8, seq_len=6, batch_size=32)
    assert not np.allclose(
        input_gradient_norms(spec, batch_size=4), input_gradient_norms(spec)
    )


def test_clear_errors() -> None:
    with pytest.raises(SpecError, match="model='mlp'.*model='rnn'"):
        input_gradient_norms(RunSpec())
    spec = RunSpec(model="rnn", seq_len=5)
    with pytest.raises(ValueError, match="framework='jax'.*'torch'"):
        input_gradient_norms(spec, "jax")
    with pytest.raises(ValueError, match="batch_size=0"):
        input_gradient_norms(spec, batch_size=0)
    with pytest.raises(TypeError, match="RunSpec"):
        input_gradient_norms({"model": "rnn"})
