"""Run every combination of several `RunSpec` fields' values: a grid of runs, on every core.

``grid(base, {"learning_rate": [...], "init_scale": [...]})`` runs one
spec per cell of the product of the values, through the same engine as
`explodebook.sweep.sweep` (validation first, the budget of the total, the
run cache, joblib workers or a Dask cluster, Ctrl-C), and returns a `Grid`:
the traces in an array of the grid's shape, with the per-cell numbers a
phase diagram needs (`explodebook.plots.phase.phase_diagram`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from explodebook import budget
from explodebook.checks import check_frameworks
from explodebook.metrics import phase
from explodebook.spec import RunSpec, SpecError
from explodebook.sweep import check_field, format_value, run_all

__all__ = ["Grid", "grid"]


@dataclass(frozen=True, eq=False)
class Grid:
    """The traces of every combination of several `RunSpec` fields' values.

    With ``k`` fields of ``n_1, ..., n_k`` values, every array here has the
    grid's `shape` ``(n_1, ..., n_k)``: cell ``(i, j)`` of a two-field grid
    is the run with the first field at ``values[0][i]`` and the second at
    ``values[1][j]``.

    Attributes:
        base: the spec every run starts from.
        fields: the `RunSpec` fields that vary, in the order given.
        values: each field's values, in order.
        specs: object array of the cells' `RunSpec`.
        traces: framework name -> object array of its `Trace` per cell.
    """

    base: RunSpec
    fields: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    specs: np.ndarray
    traces: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_1, ..., n_k)``: how many values each field takes."""
        return tuple(len(v) for v in self.values)

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks run, in the order given to `grid`."""
        return tuple(self.traces)

    def of(self, framework: str | None = None) -> np.ndarray:
        """The object array of ``framework``'s traces (default: the only or first one run)."""
        if framework is None:
            framework = self.frameworks[0]
        if framework not in self.traces:
            raise ValueError(
                f"framework={framework!r} was not run in this grid: choose one of "
                f"{list(self.frameworks)}"
            )
        return self.traces[framework]

    def first_nonfinite_steps(self, framework: str | None = None) -> np.ndarray:
        """Each run's first non-finite step, NaN where it stayed finite (float, the grid's shape)."""
        steps = [
            np.nan if t.first_nonfinite_step is None else float(t.first_nonfinite_step)
            for t in self.of(framework).flat
        ]
        return np.array(steps, dtype=np.float64).reshape(self.shape)

    def final_losses(self, framework: str | None = None, window: int = 50) -> np.ndarray:
        """Each run's `Trace.final_loss` over its last ``window`` finite steps (the grid's shape)."""
        losses = [t.final_loss(window) for t in self.of(framework).flat]
        return np.array(losses, dtype=np.float64).reshape(self.shape)

    def verdicts(self, framework: str | None = None, *, trained_below: float,
                 window: int = 50) -> np.ndarray:
        """Each run's `explodebook.metrics.phase`: ``"exploded"``, ``"trained"`` or
        ``"stalled"`` (str, the grid's shape)."""
        cells = [phase(t, trained_below, window) for t in self.of(framework).flat]
        return np.array(cells, dtype=object).reshape(self.shape).astype(str)

    def label(self, index: Sequence[int]) -> str:
        """``"learning_rate = 0.01, init_scale = 2"`` for cell ``index``."""
        index = tuple(index)
        if len(index) != len(self.fields):
            raise ValueError(f"index={index!r}: give one index per field {list(self.fields)}")
        return ", ".join(
            f"{name} = {format_value(values[i])}"
            for name, values, i in zip(self.fields, self.values, index, strict=True)
        )


def grid(
    base: RunSpec,
    axes: Mapping[str, Iterable[Any]],
    framework: str | Sequence[str] = "torch",
    cache: bool = True,
    *,
    max_seconds: float | None = budget.DEFAULT,
    progress: bool | None = None,
    n_jobs: int | None = None,
) -> Grid:
    """Run ``base`` once per combination of the values of several fields.

    Every spec of the grid is built (and so validated) before anything
    runs; the runs still to do are estimated together and refused at once
    over the budget; they go to ``n_jobs`` workers (the options are
    `explodebook.sweep.sweep`'s).

    Args:
        base: the spec to start from.
        axes: field name -> its values, e.g. ``{"learning_rate": [0.001,
            0.01], "init_scale": [0.5, 1.0, 2.0]}`` (a 2 x 3 grid); one
            field or more, each with one value or more.
        framework: ``"torch"``, ``"keras"`` or several.
        cache, max_seconds, progress, n_jobs: as in `explodebook.sweep.sweep`.

    Returns:
        a `Grid` of shape ``(len(values) for each field)``.

    Raises:
        SpecError: a key of ``axes`` is not a `RunSpec` field, or a
            combination of values is not allowed (the message names the
            cell); also ``BudgetError`` (`explodebook.budget`).
        TypeError: ``axes`` is not a mapping, or a field's values are a string.
        ValueError: no field, or a field without values.
    """
    if not isinstance(base, RunSpec):
        raise TypeError(f"base must be a RunSpec, got {type(base).__name__}")
    if not isinstance(axes, Mapping):
        raise TypeError(
            f"axes must be a dict of field -> values, e.g. {{'learning_rate': [0.001, 0.01]}}; "
            f"got {type(axes).__name__}"
        )
    if not axes:
        raise ValueError("axes is empty: give at least one RunSpec field and its values")
    names: list[str] = []
    values: list[tuple[Any, ...]] = []
    for name, given in axes.items():
        names.append(check_field(name, "grid field"))
        if isinstance(given, (str, bytes)):
            raise TypeError(
                f"grid field {name!r}: values={given!r} is a string; give a list, e.g. [{given!r}]"
            )
        values.append(tuple(given))
        if not values[-1]:
            raise ValueError(f"grid field {name!r} has no values: give at least one")
    frameworks = check_frameworks(framework, "grid(framework=...)")

    shape = tuple(len(v) for v in values)
    specs = np.empty(shape, dtype=object)
    for index in itertools.product(*(range(n) for n in shape)):
        change = {name: values[k][i] for k, (name, i) in enumerate(zip(names, index, strict=True))}
        try:
            specs[index] = base.replace(**change)
        except SpecError as e:
            cell = ", ".join(f"{n}={v!r}" for n, v in change.items())
            raise SpecError(f"grid cell {index} ({cell}) is invalid: {e}") from e

    flat = list(specs.flat)
    what = f"grid over {' x '.join(names)}"
    runs = run_all(
        flat, frameworks, cache=cache, max_seconds=max_seconds, progress=progress,
        n_jobs=n_jobs, what=what, anyway="grid(base, axes, ..., max_seconds=None)",
    )  # fmt: skip
    traces = {}
    for name in frameworks:
        cells = np.empty(shape, dtype=object)
        for k, trace in enumerate(runs[name]):  # in specs.flat order
            cells.flat[k] = trace
        traces[name] = cells
    return Grid(base, tuple(names), tuple(values), specs, traces)
