"""Per-layer plots: a quantity of every layer over steps, as lines or a heat map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm

from explodebook.checks import describe, expect_trace
from explodebook.metrics import relative_to_first
from explodebook.plots.axes import (
    _as_list,
    _axes,
    _bin_steps,
    _divergence,
    _expect_axes,
    _layer_lines,
    _layer_ticks,
    _log_limits,
    _per_layer,
    _reference_line,
    _share_y,
    _step_lines,
    _trace_labels,
    mark_divergence,
)
from explodebook.plots.style import (
    _GRADIENTS,
    _MAX_COLUMNS,
    _PER_STEP,
    _TITLES,
    LAYER_CMAP,
    NONFINITE_COLOR,
    QUANTITY_LABELS,
)
from explodebook.trace import Trace

__all__ = ["grad_heatmap", "layer_norms", "weight_norms", "compare"]


def grad_heatmap(
    trace: Trace,
    ax: Axes | None = None,
    which: str = "grad_norms",
    title: str | None = None,
    max_columns: int = _MAX_COLUMNS,
) -> Axes:
    """Heat map of a per-layer quantity over steps, layers on y (input at bottom).

    Colours are on a log scale (with a colour bar); NaN and infinite cells
    are grey (`NONFINITE_COLOR`) and the first non-finite step is marked.
    Runs longer than ``max_columns`` steps are shown in bins of ``k`` steps,
    each the largest finite value in the bin (so spikes survive), or grey if
    the bin holds a non-finite value.

    Args:
        trace: the run; ``trace.<which>`` is ``(n, L)``.
        ax: where to draw; a new figure if ``None``.
        which: ``"grad_norms"``, ``"clipped_grad_norms"``,
            ``"grad_max_abs"`` or ``"weight_norms"``.
        title: the finding to state; a descriptive default if ``None``.
        max_columns: most columns drawn before binning steps.

    Returns:
        the Axes (its colour bar is a second Axes of the same figure).
    """
    expect_trace(trace, "grad_heatmap()")
    _expect_axes(ax, "grad_heatmap(ax=...)")
    values = _per_layer(trace, which)
    n_steps, n_layers = values.shape
    binned, k = _bin_steps(values, max(1, int(max_columns)))
    if binned.shape[0] == 0:  # nothing recorded: one empty (grey) column
        binned = np.full((1, n_layers), np.nan)
    vmin, vmax = _log_limits(binned)
    with np.errstate(invalid="ignore"):
        # Zeros cannot be shown on a log scale: they take the lowest colour.
        shown = np.where(np.isfinite(binned), np.maximum(binned, vmin), np.nan)
    cmap = mpl.colormaps[LAYER_CMAP].with_extremes(bad=NONFINITE_COLOR)
    ax = _axes(ax)
    image = ax.imshow(
        np.ma.masked_invalid(shown.T),
        aspect="auto",
        origin="lower",
        cmap=cmap,
        norm=LogNorm(vmin=vmin, vmax=vmax),
        interpolation="nearest",
        extent=(-0.5, binned.shape[0] * k - 0.5, -0.5, n_layers - 0.5),
    )
    ax.set_xlim(-0.5, max(n_steps, 1) - 0.5)
    _layer_ticks(ax, trace.layers)
    ax.grid(False)
    ax.set_xlabel("step")
    ax.set_ylabel("layer (input at bottom)")
    label = f"{QUANTITY_LABELS[which]} (log)"
    if k > 1:
        label += f", max per {k} steps"
    ax.figure.colorbar(image, ax=ax, label=label)
    divergence = _divergence(trace)
    if divergence is not None:
        step, text = divergence
        mark_divergence(ax, step - 0.5, f"first NaN/inf at step {step} (grey)")
    ax.set_title(title or f"{_TITLES[which]} ({trace.label})")
    return ax


def layer_norms(
    trace: Trace,
    ax: Axes | None = None,
    which: str = "grad_norms",
    title: str | None = None,
    reference: float | bool = True,
    legend: bool = True,
) -> Axes:
    """One line per layer of a per-layer quantity over steps, on a log y axis.

    Layers are coloured from dark (input) to light (output) with
    `LAYER_CMAP`; a legend names them (a colour bar when there are more than
    eight).

    Args:
        trace, ax, which, title: as in `grad_heatmap`.
        reference: a dotted horizontal line: ``True`` draws the article's
            1.0 for gradient quantities (none for weights), a number draws
            it there, ``False`` draws none.
        legend: whether to name the layers.

    Returns:
        the Axes.
    """
    expect_trace(trace, "layer_norms()")
    _expect_axes(ax, "layer_norms(ax=...)")
    values = _per_layer(trace, which)
    if reference is True:
        level = 1.0 if which in _GRADIENTS else None
    elif reference is False:
        level = None
    else:
        level = float(reference)
    ax = _axes(ax)
    _layer_lines(ax, trace, values, level, legend)
    ax.set_ylabel(f"{QUANTITY_LABELS[which]} (log)")
    ax.set_title(title or f"{_TITLES[which]} ({trace.label})")
    return ax


def weight_norms(
    trace: Trace,
    ax: Axes | None = None,
    title: str | None = None,
    relative: bool = False,
    legend: bool = True,
) -> Axes:
    """Per-layer weight norms over steps, on a log y axis.

    Args:
        trace: the run; ``trace.weight_norms`` is ``(n, L)``.
        ax: where to draw; a new figure if ``None``.
        title: the finding to state; a descriptive default if ``None``.
        relative: divide each layer by its first finite, positive norm, so
            the lines show growth factors (what `explodebook.diagnose.diagnose`'s
            ``growing_weights`` sign measures) and start at 1.
        legend: whether to name the layers.

    Returns:
        the Axes.
    """
    expect_trace(trace, "weight_norms()")
    _expect_axes(ax, "weight_norms(ax=...)")
    values = _per_layer(trace, "weight_norms")
    if relative:
        values = relative_to_first(values)
    ax = _axes(ax)
    _layer_lines(ax, trace, values, 1.0 if relative else None, legend)
    ax.set_ylabel("‖W‖₂ / initial ‖W‖₂ (log)" if relative else "‖W‖₂ (log)")
    default = "Weight norm of each layer"
    ax.set_title(title or f"{default}{', relative to step 0' if relative else ''} ({trace.label})")
    return ax


def compare(
    traces: Sequence[Trace],
    quantity: str = "loss",
    labels: Sequence[str] | Mapping[str, str] | None = None,
    axes: Sequence[Axes] | np.ndarray | None = None,
    sharey: bool = True,
    title: str | None = None,
) -> np.ndarray:
    """Side-by-side panels, one per trace, on one shared y axis.

    Args:
        traces: the runs to compare (at least one).
        quantity: ``"loss"``, ``"grad_norm_total"`` (one line per panel) or
            a per-layer quantity (``"grad_norms"``, ``"clipped_grad_norms"``,
            ``"grad_max_abs"``, ``"weight_norms"``: one line per layer).
        labels: panel titles: one per trace, or a mapping from framework or
            `Trace.label`; defaults to `Trace.label`.
        axes: one Axes per trace; a new row of panels if ``None``.
        sharey: give all panels the same y limits (so the eye compares
            fairly).
        title: the finding to state, as the figure's title.

    Returns:
        ``(len(traces),)`` object array of Axes.
    """
    traces = _as_list(traces, "compare()")
    if not traces:
        raise ValueError("compare() needs at least one trace")
    if not isinstance(quantity, str) or quantity not in QUANTITY_LABELS:
        raise ValueError(
            f"quantity={quantity!r} is not allowed: choose one of {list(QUANTITY_LABELS)}"
        )
    names = _trace_labels(traces, labels)
    if axes is None:
        width = min(3.6 * len(traces), 14.0)
        _, grid = plt.subplots(1, len(traces), sharey=sharey, squeeze=False, figsize=(width, 3.4))
        panels = grid[0]
    else:
        panels = np.asarray(axes, dtype=object).ravel()
        if panels.size != len(traces):
            raise ValueError(f"got {panels.size} axes for {len(traces)} traces")
        for i, panel in enumerate(panels):
            if not isinstance(panel, Axes):
                raise TypeError(
                    f"compare(axes=...) expects one matplotlib Axes per trace, "
                    f"item {i} is {describe(panel)}"
                )
    for i, (ax, trace, name) in enumerate(zip(panels, traces, names)):
        if quantity in _PER_STEP:
            _step_lines([trace], quantity, ax, True, name, [name], None, legend=False)
            if quantity in _GRADIENTS:
                _reference_line(ax, 1.0)
        else:
            layer_norms(trace, ax=ax, which=quantity, title=name, legend=i == len(traces) - 1)
    if sharey:
        _share_y(panels, traces, quantity)
    for ax in panels[1:]:
        ax.set_ylabel("")
    figure = panels[0].figure
    figure.suptitle(title or f"{_TITLES[quantity]}, side by side")
    return panels
