"""`explodebook.grid`: every combination of several fields' values, and its phase diagram
(`explodebook.plots.phase`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("MPLBACKEND", "agg")

import matplotlib  # noqa: E402

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from explodebook import cache, plots  # noqa: E402
from explodebook.grid import Grid, grid  # noqa: E402
from explodebook.spec import RunSpec, SpecError  # noqa: E402

# The classic MLP for 30 steps: learning rate 0.001 stays finite, 0.01 goes
# non-finite at step 8 (at init_scale 1), 0.1 at step 4.
SHORT = RunSpec(steps=30)
AXES = {"learning_rate": [0.001, 0.01, 0.1], "init_scale": [0.5, 1.0]}


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()
    plt.close("all")


@pytest.fixture(scope="module")
def small() -> Grid:
    return grid(SHORT, AXES, n_jobs=1)


def test_every_cell_is_its_combination_in_the_grids_shape(small: Grid) -> None:
    assert small.shape == (3, 2) and small.fields == ("learning_rate", "init_scale")
    assert small.values == ((0.001, 0.01, 0.1), (0.5, 1.0)) and small.frameworks == ("torch",)
    traces = small.of()
    assert traces.shape == small.specs.shape == (3, 2)
    for (i, j), trace in np.ndenumerate(traces):
        expected = SHORT.replace(learning_rate=AXES["learning_rate"][i], init_scale=AXES["init_scale"][j])
        assert small.specs[i, j] == expected and trace.spec == expected
        assert trace.equals(cache.cached_run(expected))  # the same run, looked up alone
    assert small.label((2, 0)) == "learning_rate = 0.1, init_scale = 0.5"
    with pytest.raises(ValueError, match="one index per field"):
        small.label((1,))


def test_per_cell_numbers_read_the_traces(small: Grid) -> None:
    steps = small.first_nonfinite_steps()
    losses = small.final_losses("torch")
    assert steps.shape == losses.shape == small.shape
    for (i, j), trace in np.ndenumerate(small.of()):
        if trace.first_nonfinite_step is None:
            assert np.isnan(steps[i, j])
        else:
            assert steps[i, j] == trace.first_nonfinite_step
        assert losses[i, j] == trace.final_loss()
    assert np.isnan(steps[0]).all() and (steps[1:] > 0).all()  # both kinds are in the grid
    with pytest.raises(ValueError, match="framework='keras' was not run in this grid"):
        small.of("keras")


def test_verdicts_are_each_cells_phase(small: Grid) -> None:
    from explodebook.metrics import phase

    line = float(np.nanmedian(small.final_losses()))
    verdicts = small.verdicts(trained_below=line)
    assert verdicts.shape == small.shape
    for index in itertools.product(*(range(n) for n in small.shape)):
        assert verdicts[index] == phase(small.of()[index], line)
    assert set(verdicts.flat) <= {"trained", "stalled", "exploded"}


def test_workers_fill_the_same_grid() -> None:
    serial = grid(SHORT, AXES, cache=False, n_jobs=1).of()
    parallel = grid(SHORT, AXES, cache=False, n_jobs=2).of()
    assert all(a.equals(b) for a, b in zip(serial.flat, parallel.flat, strict=True))


@pytest.mark.parametrize(
    "axes, error, message",
    [
        ([("learning_rate", [0.1])], TypeError, "axes must be a dict"),
        ({}, ValueError, "axes is empty"),
        ({"learning_rat": [0.1]}, SpecError, "grid field='learning_rat' is not a RunSpec field.*learning_rate"),
        ({"activation": "relu"}, TypeError, "values='relu' is a string"),
        ({"init_scale": []}, ValueError, "'init_scale' has no values"),
        ({"learning_rate": [0.1], "init_scale": [1.0, -1.0]}, SpecError,
         r"grid cell \(0, 1\) \(learning_rate=0.1, init_scale=-1.0\) is invalid"),
    ],
)  # fmt: skip
def test_bad_axes_fail_before_anything_runs(axes: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        grid(SHORT, axes)
    assert cache.info().misses == 0


def test_bad_framework_and_base() -> None:
    with pytest.raises(ValueError, match="framework='jax'"):
        grid(SHORT, AXES, "jax")
    with pytest.raises(TypeError, match="base must be a RunSpec"):
        grid({"steps": 30}, AXES)  # type: ignore[arg-type]


# -- the phase diagram --------------------------------------------------------


def test_phase_diagram_colours_each_cell_by_its_fate(small: Grid) -> None:
    traces = small.of()
    losses = small.final_losses()
    line = float(np.nanmax(losses[0])) * 2  # both finite runs count as trained
    ax = plots.phase_diagram(traces, *small.values, trained_below=line, x_label="lr")
    verdict, exploded = ax.collections
    steps = small.first_nonfinite_steps()
    # pcolormesh stores the transposed grid (y rows, x columns), flattened.
    assert list(np.ma.getmaskarray(verdict.get_array()).ravel()) == list(~np.isnan(steps).T.ravel())
    assert list(np.ma.getmaskarray(exploded.get_array()).ravel()) == list(np.isnan(steps).T.ravel())
    assert (verdict.get_array().compressed() == 1).all()  # trained
    labels = sorted(int(t.get_text()) for t in ax.texts)
    assert labels == sorted(int(s) for s in steps[~np.isnan(steps)])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001", "0.01", "0.1"]
    assert ax.figure.axes[-1].get_ylabel() == "first non-finite step"  # the colour bar
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["trained", "stalled (finite)"]
    # A line below every final loss: the finite runs stalled.
    ax = plots.phase_diagram(traces, *small.values, trained_below=1e-9, colorbar=False,
                             legend=False)  # fmt: skip
    assert (ax.collections[0].get_array().compressed() == 0).all()
    assert ax.get_legend() is None and len(ax.figure.axes) == 1


def test_phase_diagram_errors(small: Grid) -> None:
    traces = small.of()
    with pytest.raises(TypeError, match="2-D grid of Traces"):
        plots.phase_diagram([1, 2], [1], [1, 2], trained_below=1.0)
    with pytest.raises(TypeError, match="2-D grid of Traces, got .*str"):
        plots.phase_diagram([["a"]], [1], [1], trained_below=1.0)
    with pytest.raises(ValueError, match="the grid is 3 x 2 but 2 x values and 2 y values"):
        plots.phase_diagram(traces, [1, 2], [1, 2], trained_below=1.0)
    with pytest.raises(ValueError, match="trained_below=0"):
        plots.phase_diagram(traces, *small.values, trained_below=0)
    fig = plt.figure()
    with pytest.raises(TypeError, match="phase_diagram"):
        plots.phase_diagram(traces, *small.values, trained_below=1.0, ax=fig)  # type: ignore[arg-type]
