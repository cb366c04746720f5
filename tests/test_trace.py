"""Trace: persistence without pickle, and where the first non-finite value is."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from explodebook.spec import RunSpec
from explodebook.trace import Trace, locate_nonfinite

LAYERS = ["dense_1", "dense_2", "output"]


def make_trace(n: int = 5, framework: str = "torch") -> Trace:
    spec = RunSpec(depth=2, steps=n)
    rng = np.random.default_rng(0)
    L = len(LAYERS)
    record = np.abs(rng.normal(size=(n, 2 + 4 * L)))
    record[-1, 3] = np.nan  # last step: non-finite gradient in dense_2
    return Trace.from_record(record, spec, framework, wall_time=0.25)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    trace = make_trace()
    path = tmp_path / "run.npz"
    trace.save(path)
    loaded = Trace.load(path)
    assert loaded.equals(trace, ignore_time=False)
    assert loaded.spec == trace.spec
    assert loaded.first_nonfinite_step == 4


def test_saved_file_holds_no_pickle(tmp_path: Path) -> None:
    path = tmp_path / "run.npz"
    make_trace().save(path)
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            header = archive.read(name)[:200]
            # .npy headers say whether the array holds Python objects
            assert b"'descr': '|O'" not in header, name
    # and loading without pickle works (np.load would raise otherwise)
    Trace.load(path)


def test_equals_sees_a_changed_number() -> None:
    a, b = make_trace(), make_trace()
    assert a.equals(b)
    b.grad_norms[0, 0] += 1e-12
    assert not a.equals(b)


def test_from_record_checks_the_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 14\)"):
        Trace.from_record(np.zeros((3, 5)), RunSpec(depth=2), "torch")


def test_unknown_framework_is_refused() -> None:
    with pytest.raises(ValueError, match="'jax'"):
        make_trace(framework="jax")


def grid(n: int, bad: dict[tuple[int, int], float] | None = None) -> np.ndarray:
    a = np.ones((n, len(LAYERS)))
    for (step, layer), value in (bad or {}).items():
        a[step, layer] = value
    return a


def test_nothing_non_finite() -> None:
    assert locate_nonfinite(np.ones(4), grid(4), grid(4), LAYERS) == (None, None, None)


def test_weights_take_precedence_and_blame_the_first_layer_from_the_input() -> None:
    grads = grid(4, {(2, 0): np.inf})
    weights = grid(4, {(2, 1): np.nan, (2, 2): np.nan})
    assert locate_nonfinite(np.ones(4), grads, weights, LAYERS) == (2, "weight", "dense_2")


def test_gradients_blame_the_first_layer_from_the_output() -> None:
    grads = grid(4, {(1, 0): np.inf, (1, 1): np.nan})
    assert locate_nonfinite(np.ones(4), grads, grid(4), LAYERS) == (1, "gradient", "dense_2")


def test_loss_only() -> None:
    loss = np.array([1.0, np.inf, 1.0])
    assert locate_nonfinite(loss, grid(3), grid(3), LAYERS) == (1, "loss", None)


def test_earliest_step_wins() -> None:
    loss = np.array([1.0, 1.0, np.nan, np.nan])
    grads = grid(4, {(3, 0): np.nan})
    assert locate_nonfinite(loss, grads, grid(4), LAYERS)[0] == 2


def test_parameter_record_has_the_layout_of_the_layer_record() -> None:
    # One parameter per layer: the monitors' record is the backends' record
    # without the total column, and both make the same trace.
    spec = RunSpec(depth=2, steps=4)
    L = len(LAYERS)
    record = np.abs(np.random.default_rng(1).normal(size=(4, 2 + 4 * L)))
    record[:, 1] = np.sqrt((record[:, 2 : 2 + L] ** 2).sum(axis=1))
    record[3, 2 + 3 * L + 1] = np.inf  # last step: dense_2's weights
    layer_trace = Trace.from_record(record, spec, "keras")
    params = Trace.from_parameter_record(
        np.delete(record, 1, axis=1), framework="keras", layers=LAYERS,
        owner=np.arange(L), parameter_names=[f"{name}/w" for name in LAYERS], spec=spec,
    )
    assert params.equals(layer_trace)
    assert params.extra["first_nonfinite_parameter"] == "dense_2/w"


def test_parameter_record_sums_the_parameters_of_a_layer() -> None:
    # Two layers, three parameters: (n, 1 + 4 * 3) = loss, grad, clipped, max, weight.
    grad, clipped, big, weight = [3.0, 4.0, 2.0], [0.3, 0.4, 0.2], [1.0, 5.0, 2.0], [6.0, 8.0, 1.0]
    values = np.array([[0.5, *grad, *clipped, *big, *weight]])
    trace = Trace.from_parameter_record(
        values, framework="torch", layers=["a", "b"], owner=np.array([0, 0, 1]),
        parameter_names=["a.w", "a.b", "b.w"],
    )
    np.testing.assert_allclose(trace.grad_norms, [[5.0, 2.0]])
    np.testing.assert_allclose(trace.clipped_grad_norms, [[0.5, 0.2]])
    np.testing.assert_allclose(trace.grad_max_abs, [[5.0, 2.0]])
    np.testing.assert_allclose(trace.weight_norms, [[10.0, 1.0]])
    np.testing.assert_allclose(trace.grad_norm_total, [np.sqrt(29.0)])
    assert trace.extra["parameters"] == {"a": ["a.w", "a.b"], "b": ["b.w"]}
    with pytest.raises(ValueError, match=r"shape \(n, 13\) for 3 parameters"):
        Trace.from_parameter_record(
            values[:, :-1], framework="torch", layers=["a", "b"], owner=np.array([0, 0, 1]),
            parameter_names=["a.w", "a.b", "b.w"],
        )

