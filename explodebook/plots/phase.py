"""A phase diagram of a grid of runs: where training trains, stalls or explodes.

One cell per run of a two-field grid (`explodebook.grid.grid`): a run that
went non-finite is coloured by the step it did (early: dark), a finite run
that trained in one colour, a finite run that did not (it stalled) in
grey. Which runs trained is the caller's line on the final loss (for the
book: `explodebook.outcome.DEFAULT_TOLERANCE` times the mean predictor's
loss), so this module judges nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from explodebook.checks import describe, is_real
from explodebook.metrics import phase
from explodebook.plots.axes import _axes, _expect_axes
from explodebook.plots.style import NONFINITE_COLOR, SERIES_COLORS
from explodebook.trace import Trace

__all__ = ["phase_diagram", "TRAINED_COLOR", "STALLED_COLOR", "EXPLODED_CMAP"]

#: Cells of runs that stayed finite and trained (Okabe & Ito's bluish green).
TRAINED_COLOR = SERIES_COLORS[0]
#: Cells of runs that stayed finite but did not train.
STALLED_COLOR = NONFINITE_COLOR
#: The colour map of the first non-finite step, dark for early steps and light for late ones.
EXPLODED_CMAP = "inferno"

# Cells are labelled with their step when the grid is small enough to read.
_LABEL_UP_TO = 12


def phase_diagram(
    traces: Any,
    x_values: Sequence[Any],
    y_values: Sequence[Any],
    *,
    trained_below: float,
    x_label: str = "",
    y_label: str = "",
    ax: Axes | None = None,
    colorbar: bool = True,
    legend: bool = True,
) -> Axes:
    """Draw a grid of runs as cells: trained, stalled, or the step it went non-finite.

    Args:
        traces: a 2-D array (or nested list) of `Trace`, shape ``(nx, ny)``:
            ``traces[i][j]`` is the run at ``x_values[i]``, ``y_values[j]``
            (`explodebook.grid.Grid.of` gives one, first field along x).
        x_values, y_values: the two fields' values (``nx`` and ``ny``),
            shown as tick labels, one evenly spaced column or row each.
        trained_below: a finite run trained when its `Trace.final_loss` is
            below this loss.
        x_label, y_label: the axis labels (e.g. the field names).
        ax: where to draw; ``None``: a new figure.
        colorbar: add a colour bar of the first non-finite step (when a run
            went non-finite).
        legend: add a legend of the trained and stalled colours, above the
            axes on the left (leave room for a title on the right).

    Returns:
        the Axes drawn on.

    Raises:
        TypeError: ``traces`` is not a 2-D grid of `Trace`, or ``ax`` is
            not a matplotlib Axes.
        ValueError: the values do not match the grid's shape, or
            ``trained_below`` is not a positive number.
    """
    _expect_axes(ax, "phase_diagram()")
    try:
        rows = [list(row) for row in traces]
    except TypeError:
        rows = []
    if not rows or not rows[0] or len({len(row) for row in rows}) != 1:
        raise TypeError(
            f"phase_diagram() expects a 2-D grid of Traces (nx rows of ny), got {describe(traces)}"
        )
    cells = np.empty((len(rows), len(rows[0])), dtype=object)
    for (i, j), _ in np.ndenumerate(cells):
        cells[i, j] = rows[i][j]
    bad = [t for t in cells.flat if not isinstance(t, Trace)]
    if bad:
        raise TypeError(f"phase_diagram() expects a 2-D grid of Traces, got {describe(bad[0])} in it")
    if cells.shape != (len(x_values), len(y_values)):
        raise ValueError(
            f"phase_diagram(): the grid is {cells.shape[0]} x {cells.shape[1]} but "
            f"{len(x_values)} x values and {len(y_values)} y values were given"
        )
    if isinstance(trained_below, bool) or not is_real(trained_below) or not trained_below > 0:
        raise ValueError(
            f"phase_diagram(trained_below={trained_below!r}) is not allowed: give the "
            "positive loss under which a finite run counts as trained"
        )

    ax = _axes(ax)
    steps = np.array([np.nan if t.first_nonfinite_step is None else t.first_nonfinite_step
                      for t in cells.flat], dtype=np.float64).reshape(cells.shape)  # fmt: skip
    finite = np.isnan(steps)
    trained = np.array([phase(t, trained_below) == "trained"
                        for t in cells.flat]).reshape(cells.shape)
    edges_x, edges_y = np.arange(cells.shape[0] + 1), np.arange(cells.shape[1] + 1)
    # Finite runs: 0 stalled, 1 trained; exploded runs masked out (drawn next).
    verdict = np.ma.masked_array(trained.astype(float), mask=~finite)
    ax.pcolormesh(edges_x, edges_y, verdict.T, vmin=0, vmax=1, edgecolors="white",
                  cmap=ListedColormap([STALLED_COLOR, TRAINED_COLOR]))  # fmt: skip
    if not finite.all():
        exploded = np.ma.masked_invalid(steps)
        mesh = ax.pcolormesh(edges_x, edges_y, exploded.T, cmap=EXPLODED_CMAP,
                             edgecolors="white", vmin=0, vmax=np.nanmax(steps) * 1.25)  # fmt: skip
        if colorbar:
            ax.figure.colorbar(mesh, ax=ax, label="first non-finite step")
        if max(cells.shape) <= _LABEL_UP_TO:
            for (i, j), step in np.ndenumerate(steps):
                if not np.isnan(step):
                    light = step > 0.6 * mesh.norm.vmax
                    ax.text(i + 0.5, j + 0.5, f"{step:.0f}", ha="center", va="center",
                            fontsize=8, color="black" if light else "white")  # fmt: skip
    ax.set_xticks(edges_x[:-1] + 0.5, [_tick(v) for v in x_values])
    ax.set_yticks(edges_y[:-1] + 0.5, [_tick(v) for v in y_values])
    ax.tick_params(axis="x", labelrotation=45 if len(x_values) > 8 else 0)
    ax.set(xlabel=x_label, ylabel=y_label, xlim=(0, cells.shape[0]), ylim=(0, cells.shape[1]))
    ax.grid(False)
    if not legend:
        return ax
    ax.legend(
        handles=[Patch(color=TRAINED_COLOR, label="trained"),
                 Patch(color=STALLED_COLOR, label="stalled (finite)")],
        loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False, fontsize=8,
        borderaxespad=0.2,
    )  # fmt: skip
    return ax


def _tick(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
