"""Seeded, synthetic data sets: nothing is downloaded.

Both backends train on exactly these numpy arrays, in the same batch order
(`batch_indices`), so a PyTorch run and a Keras run of one `RunSpec` see the
same data.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from explodebook.spec import RunSpec

__all__ = [
    "Dataset",
    "REGRESSION_TRAIN_SIZE",
    "ADDING_TRAIN_SIZE",
    "regression",
    "make_regression",
    "adding_problem",
    "dataset_for",
    "batch_indices",
]

#: The classic set-up draws 1000 samples and trains on the first half.
REGRESSION_TRAIN_SIZE = 500
#: Training sequences of the adding problem.
ADDING_TRAIN_SIZE = 1024

Dataset = tuple[np.ndarray, np.ndarray]


@lru_cache(maxsize=8)
def regression(seed: int = 1, scaled: bool = False) -> Dataset:
    """The classic regression set of the source article's companion tutorial.

    ``sklearn.datasets.make_regression(n_samples=1000, n_features=20,
    noise=0.1, random_state=seed)``, first 500 samples. Its target is left
    unscaled (standard deviation in the hundreds), which is what makes plain
    SGD with momentum explode on it.

    Args:
        seed: ``random_state`` of ``make_regression``.
        scaled: standardize the target to mean 0, standard deviation 1.

    Returns:
        ``(X, y)``: float32 arrays of shape ``(500, 20)`` and ``(500, 1)``.
        The arrays are read-only (they are cached and shared).
    """
    X, y = make_regression(2 * REGRESSION_TRAIN_SIZE, 20, noise=0.1, seed=seed)
    X = X[:REGRESSION_TRAIN_SIZE].astype(np.float32)
    y = y[:REGRESSION_TRAIN_SIZE].reshape(-1, 1)
    if scaled:
        y = (y - y.mean()) / y.std()
    return _frozen(X), _frozen(y.astype(np.float32))


def make_regression(
    n_samples: int, n_features: int, noise: float, seed: int, n_informative: int = 10
) -> Dataset:
    """scikit-learn's ``make_regression`` with its defaults, in numpy alone.

    The same draws from the same ``RandomState`` in the same order, so the
    result is bit-identical to ``sklearn.datasets.make_regression(n_samples,
    n_features, n_informative=n_informative, noise=noise,
    random_state=seed)`` (``tests/test_data.py`` checks it). Importing
    scikit-learn takes 1.5-3 s on a 2-core machine, longer than a whole
    default run, and it was the only reason a first run imported it.

    Returns:
        ``(X, y)``: float64 arrays of shape ``(n_samples, n_features)`` and
        ``(n_samples,)``.
    """
    generator = np.random.RandomState(seed)
    X = generator.standard_normal(size=(n_samples, n_features))
    ground_truth = np.zeros((n_features, 1))
    ground_truth[:n_informative, :] = 100 * generator.uniform(size=(n_informative, 1))
    y = np.dot(X, ground_truth)
    if noise > 0.0:
        y += generator.normal(scale=noise, size=y.shape)
    # sklearn.utils.shuffle of the samples, then a permutation of the features.
    order = np.arange(n_samples)
    generator.shuffle(order)
    X, y = X[order], y[order]
    features = np.arange(n_features)
    generator.shuffle(features)
    X[:, :] = X[:, features]
    return X, np.squeeze(y)


@lru_cache(maxsize=16)
def adding_problem(seq_len: int, n: int = ADDING_TRAIN_SIZE, seed: int = 1) -> Dataset:
    """The adding problem (Hochreiter & Schmidhuber 1997; Pascanu et al. 2013).

    Each input step carries two channels: a value drawn uniformly from
    [0, 1) and a marker that is 1 at exactly two steps, one in the first half
    of the sequence and one in the second half (for ``seq_len == 1`` the one
    step is marked). The target is the sum of the two marked values. Always
    predicting the mean, 1.0, gives a mean squared error of 1/6 (~0.167): a
    model has learned the task only when its loss falls clearly below that.

    Args:
        seq_len: time steps per sequence, >= 1.
        n: number of sequences.
        seed: seeds the values and marker positions.

    Returns:
        ``(X, y)``: float32 arrays of shape ``(n, seq_len, 2)`` and ``(n, 1)``.
    """
    if seq_len < 1 or n < 1:
        raise ValueError(f"seq_len={seq_len!r} and n={n!r} must both be >= 1")
    rng = np.random.default_rng(seed)
    values = rng.random((n, seq_len), dtype=np.float64)
    markers = np.zeros((n, seq_len))
    rows = np.arange(n)
    half = max(seq_len // 2, 1)
    first = rng.integers(0, half, size=n)
    markers[rows, first] = 1.0
    if seq_len > 1:
        second = rng.integers(half, seq_len, size=n)
        markers[rows, second] = 1.0
    X = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)
    return _frozen(X), _frozen(y)


def dataset_for(spec: RunSpec) -> Dataset:
    """The training set a spec trains on (see ``RunSpec.task``)."""
    if spec.task == "adding":
        return adding_problem(spec.seq_len, seed=spec.seed)
    return regression(seed=spec.seed, scaled=spec.task == "regression-scaled")


def batch_indices(n_samples: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """Sample indices of every batch of a run: reshuffled each epoch.

    An epoch is one pass over a fresh permutation of the data, cut into
    ``n_samples // batch_size`` full batches (a last partial batch is
    dropped, so every step has the same batch size and a compiled Keras step
    is traced once).

    Returns:
        int64 array of shape ``(steps, batch_size)``.
    """
    if not 1 <= batch_size <= n_samples:
        raise ValueError(
            f"batch_size={batch_size!r} must be between 1 and n_samples={n_samples}"
        )
    per_epoch = n_samples // batch_size
    epochs = -(-steps // per_epoch)
    rng = np.random.default_rng(seed)
    chunks = [
        rng.permutation(n_samples)[: per_epoch * batch_size].reshape(per_epoch, batch_size)
        for _ in range(epochs)
    ]
    return np.concatenate(chunks)[:steps]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a
