"""`explodebook.flat`: step vectors reduced to a trace's rows."""

from __future__ import annotations

import numpy as np
import pytest

from explodebook.flat import FLUSH_BYTES, FlatLayout, first_nonfinite_row
from explodebook.trace import locate_nonfinite

# Three layers of parameters (shapes as a backend would see them).
SHAPES = [[(4, 3), (3,)], [(3, 5), (5,)], [(5, 1), (1,)]]


def step_vectors(rng: np.random.Generator, n: int, clipping: bool) -> tuple[np.ndarray, list]:
    """n random steps: their flat vectors and the same values per parameter."""
    steps = []
    for _ in range(n):
        loss = np.float32(rng.random())
        grads = [[rng.standard_normal(s).astype(np.float32) for s in g] for g in SHAPES]
        weights = [[rng.standard_normal(s).astype(np.float32) for s in g] for g in SHAPES]
        clipped = [[0.5 * a for a in g] for g in grads]
        steps.append((loss, grads, weights, clipped))
    flat = np.array(
        [
            np.concatenate(
                [[loss]]
                + [a.ravel() for g in grads for a in g]
                + [a.ravel() for g in weights for a in g]
                + ([a.ravel() for g in clipped for a in g] if clipping else [])
            )
            for loss, grads, weights, clipped in steps
        ],
        dtype=np.float32,
    )
    return flat, steps


def norm(group: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for a in group)))


@pytest.mark.parametrize("clipping", [False, True])
def test_rows_are_the_per_layer_norms(clipping: bool) -> None:
    layout = FlatLayout.of(SHAPES, clipping)
    assert layout.layer_sizes == (15, 20, 6)
    flat, steps = step_vectors(np.random.default_rng(0), 5, clipping)
    rows = layout.rows(flat)
    assert rows.shape == (5, 2 + 4 * 3) and rows.dtype == np.float64
    for row, (loss, grads, weights, clipped) in zip(rows, steps, strict=True):
        grad = [norm(g) for g in grads]
        expected = np.concatenate(
            [
                [loss, np.sqrt(np.sum(np.square(grad)))],
                grad,
                [norm(g) for g in (clipped if clipping else grads)],
                [max(np.abs(a).max() for a in g) for g in grads],
                [norm(w) for w in weights],
            ]
        )
        np.testing.assert_allclose(row, expected, rtol=1e-12)


def test_a_nan_or_inf_stays_in_its_own_layer() -> None:
    layout = FlatLayout.of(SHAPES)
    flat, _ = step_vectors(np.random.default_rng(1), 2, False)
    flat[1, 1 + 16] = np.nan  # a gradient element of layer 1
    flat[1, 1 + 41 + 2] = np.inf  # a weight element of layer 0
    rows = layout.rows(flat)
    L = 3
    grad, largest, weight = rows[:, 2 : 2 + L], rows[:, 2 + 2 * L : 2 + 3 * L], rows[:, 2 + 3 * L :]
    assert np.isfinite(rows[0]).all()
    assert np.isnan(grad[1, 1]) and np.isnan(largest[1, 1]) and np.isnan(rows[1, 1])
    assert np.isfinite(grad[1, [0, 2]]).all() and np.isfinite(largest[1, [0, 2]]).all()
    assert np.isposinf(weight[1, 0]) and np.isfinite(weight[1, 1:]).all()


def test_huge_finite_values_give_finite_norms() -> None:
    # 3e38 is close to float32's largest value: its square overflows in
    # float32 but not in float64, so the norm is finite, as the values are.
    layout = FlatLayout.of(SHAPES)
    flat = np.full((1, layout.width), 3e38, np.float32)
    rows = layout.rows(flat)
    assert np.isfinite(rows).all()
    assert rows[0, 2] == pytest.approx(3e38 * np.sqrt(15), rel=1e-6)


def test_empty_block_gives_no_rows() -> None:
    layout = FlatLayout.of(SHAPES, clipping=True)
    assert layout.rows(np.empty((0, layout.width), np.float32)).shape == (0, 14)


def test_wrong_width_is_a_clear_error() -> None:
    layout = FlatLayout.of(SHAPES)
    with pytest.raises(ValueError, match=r"shape \(n, 83\), got \(2, 84\)"):
        layout.rows(np.zeros((2, 84), np.float32))


def test_steps_per_flush_bounds_the_pending_bytes() -> None:
    small = FlatLayout.of(SHAPES)
    assert small.steps_per_flush() == 32 and small.steps_per_flush(200) == 200
    big = FlatLayout.of([[(1024, 1024), (1024,)]] * 4)  # ~4.2M parameters
    assert big.steps_per_flush() == 1  # one vector is over FLUSH_BYTES already
    medium = FlatLayout((100_000,))
    n = medium.steps_per_flush(200)
    assert n * 4 * medium.width <= FLUSH_BYTES < (n + 1) * 4 * medium.width


def test_first_nonfinite_row_follows_the_trace_rule() -> None:
    layout = FlatLayout.of(SHAPES, clipping=True)
    flat, _ = step_vectors(np.random.default_rng(2), 6, True)
    rows = layout.rows(flat)
    assert first_nonfinite_row(rows) is None
    rows[1, 2 + 3 + 1] = np.inf  # a clipped norm alone does not count
    assert first_nonfinite_row(rows) is None
    rows[4, 0] = np.nan  # the loss
    rows[3, 2 + 9 + 2] = np.inf  # a weight norm
    assert first_nonfinite_row(rows) == 3
    L = 3
    step = locate_nonfinite(rows[:, 0], rows[:, 2 : 2 + L], rows[:, 2 + 3 * L :], ["a", "b", "c"])
    assert step == (3, "weight", "c")
