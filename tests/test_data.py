"""The synthetic data sets and the batch order."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_regression

from explodebook import data
from explodebook.data import adding_problem, batch_indices, regression


@pytest.mark.parametrize("seed", [0, 1, 2, 7, 12345])
@pytest.mark.parametrize("n_samples, n_features", [(1000, 20), (37, 5)])
def test_make_regression_is_scikit_learns_bit_for_bit(
    seed: int, n_samples: int, n_features: int
) -> None:
    X, y = data.make_regression(n_samples, n_features, noise=0.1, seed=seed,
                                n_informative=min(10, n_features))  # fmt: skip
    X_ref, y_ref = make_regression(
        n_samples=n_samples, n_features=n_features, noise=0.1, random_state=seed,
        n_informative=min(10, n_features),
    )  # fmt: skip
    assert np.array_equal(X, X_ref) and np.array_equal(y, y_ref)


def test_regression_is_make_regression_unscaled() -> None:
    X, y = regression(seed=1)
    X_ref, y_ref = make_regression(n_samples=1000, n_features=20, noise=0.1, random_state=1)
    np.testing.assert_allclose(X, X_ref[:500], rtol=1e-6)
    np.testing.assert_allclose(y[:, 0], y_ref[:500], rtol=1e-5)
    # Unscaled: a target spread in the tens or hundreds is what explodes.
    assert y.std() > 50


def test_scaled_regression_is_standardized() -> None:
    _, y = regression(seed=1, scaled=True)
    assert abs(y.mean()) < 1e-5 and abs(y.std() - 1) < 1e-5


def test_adding_problem_targets_are_the_marked_sums() -> None:
    X, y = adding_problem(seq_len=30, n=200, seed=3)
    assert X.shape == (200, 30, 2) and y.shape == (200, 1)
    markers = X[:, :, 1]
    assert np.all(markers.sum(axis=1) == 2)
    # one marker in each half
    assert np.all(markers[:, :15].sum(axis=1) == 1)
    for row in range(200):
        marked = X[row, markers[row] == 1, 0]
        assert y[row, 0] == pytest.approx(marked.sum(), rel=1e-6)
    # the documented baseline: predicting the mean 1.0 gives MSE ~ 1/6
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.03)


def test_data_is_read_only_and_seeded() -> None:
    X, _ = adding_problem(seq_len=5, n=10, seed=0)
    with pytest.raises(ValueError):
        X[0, 0, 0] = 1.0
    X2, _ = adding_problem(seq_len=5, n=10, seed=1)
    assert not np.array_equal(X, X2)


def test_batches_cover_each_epoch_once() -> None:
    batches = batch_indices(n_samples=100, batch_size=32, steps=7, seed=0)
    assert batches.shape == (7, 32)
    first_epoch = batches[:3].ravel()  # 100 // 32 = 3 full batches per epoch
    assert len(set(first_epoch)) == 96
    assert np.array_equal(batches, batch_indices(100, 32, 7, seed=0))
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(10, 11, 1, seed=0)
