"""Plots of traces in the book's one visual language: ``ax`` in, ``ax`` out.

Every function takes the data and an optional ``ax`` (a new figure is made
when it is ``None``), returns what it drew on, and never calls
``plt.show()``. Norms are drawn on log axes; a run that diverged is marked
where it did (a dashed line, an "x" and the step), so a line never just
stops. Call `use_style` once per notebook for fonts, grid and colours; the
framework colours in `FRAMEWORK_COLORS` are used whether or not it is.

A function given something other than a `Trace` (or a list of them) or an
``ax`` that is not a matplotlib ``Axes`` (a ``Figure``, say) raises a
``TypeError`` that names the function and what it got.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm, to_hex, to_rgb
from matplotlib.text import Annotation
from matplotlib.ticker import LogLocator
from numpy.typing import ArrayLike

from explodebook.checks import describe, expect, expect_trace
from explodebook.metrics import relative_to_first
from explodebook.trace import Trace, locate_nonfinite

__all__ = [
    "FRAMEWORK_COLORS",
    "FRAMEWORK_LINESTYLES",
    "SERIES_COLORS",
    "DIVERGENCE_COLOR",
    "NONFINITE_COLOR",
    "LAYER_CMAP",
    "QUANTITY_LABELS",
    "style_path",
    "use_style",
    "loss_curve",
    "grad_norm_curve",
    "grad_heatmap",
    "layer_norms",
    "weight_norms",
    "compare",
    "depth_profile",
    "mark_divergence",
]

# Okabe & Ito (2008), the colour-blind-safe palette. Vermillion and blue
# are the pair that stays apart under every common colour-vision deficiency.
#: One colour per framework, everywhere in the book.
FRAMEWORK_COLORS: dict[str, str] = {"torch": "#D55E00", "keras": "#0072B2"}
#: Colours for series that are not frameworks (the framework colours left out).
SERIES_COLORS: tuple[str, ...] = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
#: The dashed line and "x" of `mark_divergence` on per-layer plots.
DIVERGENCE_COLOR = "#000000"
#: Heat-map cells whose value is NaN or infinite.
NONFINITE_COLOR = "#BBBBBB"
#: Sequential colour map for layers (input dark, output light) and heat maps.
LAYER_CMAP = "viridis"

#: Axis labels of the recorded quantities (" (log)" is added on log axes).
QUANTITY_LABELS: dict[str, str] = {
    "loss": "training loss (MSE)",
    "grad_norm_total": "‖∇W‖₂, all layers",
    "grad_norms": "‖∇W‖₂",
    "clipped_grad_norms": "‖∇W‖₂ after clipping",
    "grad_max_abs": "max |∂L/∂w|",
    "weight_norms": "‖W‖₂",
}
_PER_LAYER = ("grad_norms", "clipped_grad_norms", "grad_max_abs", "weight_norms")
_PER_STEP = ("loss", "grad_norm_total")
_GRADIENTS = ("grad_norms", "clipped_grad_norms", "grad_max_abs", "grad_norm_total")
_TITLES = {
    "loss": "Training loss per step",
    "grad_norm_total": "Global gradient norm per step",
    "grad_norms": "Gradient norm of each layer",
    "clipped_grad_norms": "Gradient norm of each layer after clipping",
    "grad_max_abs": "Largest gradient element of each layer",
    "weight_norms": "Weight norm of each layer",
}
# A white outline keeps markers readable on lines and on heat maps.
_HALO = [patheffects.withStroke(linewidth=3, foreground="white")]
# Blend factors for a framework's 2nd, 3rd, ... trace on one axes:
# negative darkens, positive lightens, so all stay recognisably that hue.
_SHADES = (0.0, -0.45, 0.45, -0.7, 0.7)
_MAX_COLUMNS = 400
_MARKERS_UP_TO = 30  # short runs get a dot per step, so single steps show


# -- style -----------------------------------------------------------------


def style_path() -> str:
    """Path of the book's matplotlib style file, ``explodebook.mplstyle``."""
    return str(resources.files("explodebook").joinpath("explodebook.mplstyle"))


#: Line style of each framework where both share an axes (`loss_curve`,
#: `grad_norm_curve`): PyTorch solid, Keras dashed on top of it.
FRAMEWORK_LINESTYLES = {"torch": "-", "keras": "--"}


def use_style() -> None:
    """Apply the book's matplotlib style (fonts, grid, colour cycle, layout).

    Call it once at the top of a chapter; it changes global ``rcParams``.
    """
    plt.style.use(style_path())


# -- the plots -------------------------------------------------------------


def loss_curve(
    trace_or_traces: Trace | Sequence[Trace],
    ax: Axes | None = None,
    log: bool = True,
    title: str | None = None,
    labels: Sequence[str] | Mapping[str, str] | None = None,
    colors: Sequence[str] | None = None,
) -> Axes:
    """Plot the training loss per step of one or more runs.

    Each run is drawn in its framework's colour (`FRAMEWORK_COLORS`; a
    framework's further runs in darker or lighter shades of it). Where a run
    diverged, a dashed line and an annotation mark the step.

    Args:
        trace_or_traces: a `Trace` or a sequence of them; ``loss`` is
            ``(n,)``.
        ax: where to draw; a new figure if ``None``.
        log: log y axis (non-positive losses are left out).
        title: the finding to state; a descriptive default if ``None``.
        labels: legend labels: one per trace, or a mapping from framework
            (``"torch"``) or `Trace.label` (``"PyTorch"``) to a label.
        colors: one colour per trace, to override the framework colours.

    Returns:
        the Axes.
    """
    traces = _as_list(trace_or_traces, "loss_curve()")
    _expect_axes(ax, "loss_curve(ax=...)")
    return _step_lines(traces, "loss", ax, log, title, labels, colors)


def grad_norm_curve(
    trace_or_traces: Trace | Sequence[Trace],
    ax: Axes | None = None,
    title: str | None = None,
    labels: Sequence[str] | Mapping[str, str] | None = None,
    colors: Sequence[str] | None = None,
    reference: float | None = 1.0,
) -> Axes:
    """Plot the global gradient norm per step (all layers, before clipping).

    The per-step companion of `loss_curve`, with the same colours, labels and
    divergence marks, on a log y axis.

    Args:
        trace_or_traces: a `Trace` or a sequence of them;
            ``grad_norm_total`` is ``(n,)``.
        ax: where to draw; a new figure if ``None``.
        title: the finding to state; a descriptive default if ``None``.
        labels: as in `loss_curve`.
        colors: as in `loss_curve`.
        reference: a dotted horizontal line (the article's 1.0); ``None``
            for none.

    Returns:
        the Axes.
    """
    traces = _as_list(trace_or_traces, "grad_norm_curve()")
    _expect_axes(ax, "grad_norm_curve(ax=...)")
    ax = _step_lines(traces, "grad_norm_total", ax, True, title, labels, colors)
    if reference is not None:
        _reference_line(ax, reference)
    return ax


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
        trace: the run; ``trace.<which>`` is ``(n, L)``.
        ax: where to draw; a new figure if ``None``.
        which: ``"grad_norms"``, ``"clipped_grad_norms"``,
            ``"grad_max_abs"`` or ``"weight_norms"``.
        title: the finding to state; a descriptive default if ``None``.
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


def depth_profile(
    values: ArrayLike | Mapping[str, ArrayLike],
    ax: Axes | None = None,
    x: ArrayLike | None = None,
    xlabel: str = "number of multiplications",
    ylabel: str = "‖∇‖₂ (log)",
    reference: float | None = 1.0,
    title: str | None = None,
) -> Axes:
    """Plot one or more norms against depth (or time step) on a log y axis.

    For chapter 1's "norm after k multiplications": a value that overflows to
    infinity is marked where it did; zeros (underflow) are left out.

    Args:
        values: ``(K,)`` values, a ``(S, K)`` array of ``S`` series, or a
            mapping from series label to ``(K,)`` values.
        ax: where to draw; a new figure if ``None``.
        x: ``(K,)`` positions; ``0, 1, ..., K-1`` if ``None``.
        xlabel, ylabel: axis labels.
        reference: a dotted horizontal line (1.0: where growth turns into
            decay); ``None`` for none.
        title: the finding to state; a descriptive default if ``None``.

    Returns:
        the Axes.
    """
    series = _as_series(values)
    _expect_axes(ax, "depth_profile(ax=...)")
    ax = _axes(ax)
    markers: list[tuple[float, str, str, bool]] = []
    for i, (name, y) in enumerate(series.items()):
        xs = np.arange(y.size) if x is None else np.asarray(x, dtype=np.float64)
        if xs.shape != y.shape:
            raise ValueError(f"x has shape {xs.shape}, values {name!r} have shape {y.shape}")
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        ax.plot(xs, _for_log(y), color=color, label=name or None, **_marker_style(y.size))
        prefix = f"{name}: " if name else ""
        bad = ~np.isfinite(y)
        # A value that reaches exactly 0 after being positive underflowed;
        # a log axis cannot show it, so say so instead of ending the line.
        underflow = (y == 0) & (np.cumsum(y > 0) > 0)
        for mask, kind in ((bad, None), (underflow, "underflow to 0")):
            if mask.any():
                first = int(np.argmax(mask))
                kind = kind or ("NaN" if np.isnan(y[first]) else "overflow to inf")
                text = f"{prefix}{kind} at {xs[first]:g}"
                markers.append((float(xs[first]), text, color, mask is underflow))
    _log_y(ax, [y for y in series.values()])
    if reference is not None:
        _reference_line(ax, reference)
    slots = {True: 0, False: 0}
    for where, text, color, low in markers:
        mark_divergence(ax, where, text, color=color, slot=slots[low], bottom=low)
        slots[low] += 1
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if any(series):
        ax.legend()
    ax.set_title(title or f"Norm against {xlabel}")
    return ax


def mark_divergence(
    ax: Axes,
    step: float,
    text: str,
    color: str = DIVERGENCE_COLOR,
    slot: int = 0,
    bottom: bool = False,
) -> Annotation:
    """Mark a step where values became non-finite: dashed line, "x" and text.

    Args:
        ax: the Axes (x in steps).
        step: where to draw the line.
        text: what to write next to it, e.g. ``"loss NaN at step 8"``.
        color: line, marker and text colour.
        slot: 0, 1, ...: stacks the texts of several marks away from the edge.
        bottom: put the "x" and text at the bottom (for values that fell to
            0) instead of the top (for values that grew to inf or NaN).

    Returns:
        the text's Annotation (its ``gid`` is ``"divergence"``).
    """
    expect(ax, Axes, "mark_divergence()", "a matplotlib Axes")
    top = 0.04 + 0.09 * slot if bottom else 0.96 - 0.09 * slot
    on_x = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ax.axvline(step, color=color, ls="--", lw=1.2, zorder=4, path_effects=_HALO)
    ax.plot([step], [top], marker="x", ms=8, mew=2, color=color, transform=on_x,
            zorder=5, clip_on=False, path_effects=_HALO)
    left, right = ax.get_xlim()
    on_right_half = step > left + 0.6 * (right - left)
    annotation = ax.annotate(
        text,
        xy=(step, top),
        xycoords=on_x,
        xytext=(-8, 0) if on_right_half else (8, 0),
        textcoords="offset points",
        ha="right" if on_right_half else "left",
        va="center",
        color=color,
        fontsize=9,
        zorder=5,
        path_effects=_HALO,
    )
    annotation.set_gid("divergence")
    return annotation


# -- helpers ---------------------------------------------------------------


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _expect_axes(ax: object, where: str) -> None:
    # A Figure (from plt.figure() or plt.subplots()[0]) is the usual mix-up;
    # without this it fails much later as "'Figure' object has no attribute".
    if ax is not None:
        expect(ax, Axes, where, "a matplotlib Axes or None")


def _as_list(traces: Trace | Sequence[Trace], where: str) -> list[Trace]:
    """One trace or an iterable of them as a list, every item checked."""
    if isinstance(traces, Trace):
        return [traces]
    expected = "a Trace or a list of Traces"
    # A string is iterable, but its items are characters, not traces.
    if isinstance(traces, (str, bytes)) or not isinstance(traces, Iterable):
        raise TypeError(f"{where} expects {expected}, got {describe(traces)}")
    items = list(traces)
    for i, item in enumerate(items):
        if not isinstance(item, Trace):
            raise TypeError(f"{where} expects {expected}, item {i} is {describe(item)}")
    return items


def _per_layer(trace: Trace, which: str) -> np.ndarray:
    if which not in _PER_LAYER:
        raise ValueError(f"which={which!r} is not allowed: choose one of {list(_PER_LAYER)}")
    return np.asarray(getattr(trace, which), dtype=np.float64)


def _for_log(values: ArrayLike) -> np.ndarray:
    """A float copy with non-finite and non-positive values set to NaN."""
    a = np.array(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        a[~(np.isfinite(a) & (a > 0))] = np.nan
    return a


def _log_limits(values: np.ndarray) -> tuple[float, float]:
    """Positive finite (min, max) of ``values``, widened if equal; (0.1, 10) if none."""
    ok = values[np.isfinite(values) & (values > 0)] if values.size else values
    if ok.size == 0:
        return 0.1, 10.0
    low, high = float(ok.min()), float(ok.max())
    if low == high:
        low, high = low / 10**0.5, high * 10**0.5
    return low, high


def _log_y(ax: Axes, arrays: Sequence[np.ndarray]) -> None:
    ax.set_yscale("log")
    # Minor ticks at 2x and 5x each power of ten, not at every multiple:
    # matplotlib lays out every tick's label even when it is blank, and
    # with eight minor ticks per decade that took half the time of drawing
    # a two-panel figure (0.8 s against 0.45 s, benchmarks/chapters.py).
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    # With nothing positive to show, matplotlib warns and cannot autoscale a
    # log axis; give it a neutral range instead.
    if not any(np.any(np.isfinite(a) & (a > 0)) for a in arrays if a.size):
        ax.set_ylim(0.1, 10.0)


def _cover_steps(ax: Axes, n_steps: int) -> None:
    """Widen the x data limits to every recorded step, NaN ones included.

    Otherwise a run that went on with NaN losses looks as if it had stopped.
    """
    if n_steps > 0:
        ax.update_datalim([(0.0, 1.0), (n_steps - 1.0, 1.0)], updatey=False)
        ax.autoscale_view(scaley=False)


def _reference_line(ax: Axes, level: float) -> None:
    ax.axhline(level, color="0.35", ls=":", lw=1.0, zorder=1)
    ax.annotate(f"{level:g}", xy=(1.0, level), xycoords=("axes fraction", "data"),
                xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom",
                color="0.35", fontsize=8)


def _marker_style(n: int) -> dict[str, object]:
    return {"marker": "o", "ms": 3} if n <= _MARKERS_UP_TO else {}


def _trace_labels(
    traces: Sequence[Trace], labels: Sequence[str] | Mapping[str, str] | None
) -> list[str]:
    if labels is None:
        return [t.label for t in traces]
    if isinstance(labels, Mapping):
        return [labels.get(t.framework, labels.get(t.label, t.label)) for t in traces]
    labels = list(labels)
    if len(labels) != len(traces):
        raise ValueError(f"got {len(labels)} labels for {len(traces)} traces")
    return labels


def _trace_colors(traces: Sequence[Trace], colors: Sequence[str] | None) -> list[str]:
    if colors is not None:
        colors = list(colors)
        if len(colors) != len(traces):
            raise ValueError(f"got {len(colors)} colors for {len(traces)} traces")
        return colors
    seen: dict[str, int] = {}
    result = []
    for trace in traces:
        k = seen.get(trace.framework, 0)
        seen[trace.framework] = k + 1
        result.append(_shade(FRAMEWORK_COLORS[trace.framework], _SHADES[k % len(_SHADES)]))
    return result


def _shade(color: str, amount: float) -> str:
    if amount == 0:
        return color
    rgb = np.array(to_rgb(color))
    target = 1.0 if amount > 0 else 0.0
    return to_hex(rgb + abs(amount) * (target - rgb))


def _divergence(trace: Trace) -> tuple[int, str] | None:
    """``(step, text)`` of the first non-finite step, or ``None``."""
    step, kind = trace.first_nonfinite_step, trace.first_nonfinite_kind
    if step is None:  # a hand-built trace may not say: look at the arrays
        step, kind, _ = locate_nonfinite(
            trace.loss, trace.grad_norms, trace.weight_norms, trace.layers
        )
        if step is None:
            return None
    loss = trace.loss[step] if step < trace.loss.size else np.nan
    if not np.isfinite(loss):
        what = f"loss {'NaN' if np.isnan(loss) else 'inf'}"
    else:
        what = f"{kind or 'value'} NaN/inf"
    later = trace.loss[step + 1 :]
    after = " (never finite again)" if later.size and not np.isfinite(later).any() else ""
    return step, f"{what} at step {step}{after}"


def _step_lines(
    traces: list[Trace],
    quantity: str,
    ax: Axes | None,
    log: bool,
    title: str | None,
    labels: Sequence[str] | Mapping[str, str] | None,
    colors: Sequence[str] | None,
    legend: bool = True,
) -> Axes:
    """One line per trace of a per-step quantity (``loss``, ``grad_norm_total``)."""
    names = _trace_labels(traces, labels)
    line_colors = _trace_colors(traces, colors)
    ax = _axes(ax)
    arrays = []
    # Both frameworks on one axes often agree to the pixel: dash Keras's line
    # so that PyTorch's, drawn first, still shows beneath it.
    both = len({trace.framework for trace in traces}) > 1
    for trace, name, color in zip(traces, names, line_colors):
        values = np.asarray(getattr(trace, quantity), dtype=np.float64)
        arrays.append(values)
        shown = _for_log(values) if log else np.where(np.isfinite(values), values, np.nan)
        style = FRAMEWORK_LINESTYLES[trace.framework] if both else "-"
        ax.plot(np.arange(values.size), shown, color=color, label=name, lw=1.1,
                linestyle=style, **_marker_style(values.size))
    if log:
        _log_y(ax, arrays)
    _cover_steps(ax, max((a.size for a in arrays), default=0))
    ax.set_xlabel("step")
    ax.set_ylabel(QUANTITY_LABELS[quantity] + (" (log)" if log else ""))
    ax.set_title(title or _TITLES[quantity])
    if traces and legend:
        # "best" scans every point; past a few thousand it gets slow.
        crowded = sum(a.size for a in arrays) > 5000
        ax.legend(loc="upper right" if crowded else "best")
    slot = 0
    for trace, color in zip(traces, line_colors):
        divergence = _divergence(trace)
        if divergence is not None:
            mark_divergence(ax, *divergence, color=color, slot=slot)
            slot += 1
    return ax


def _layer_colors(n_layers: int) -> list[str]:
    # Stop short of viridis' pale yellow end, which vanishes on white.
    cmap = mpl.colormaps[LAYER_CMAP]
    return [to_hex(cmap(v)) for v in np.linspace(0.0, 0.85, max(n_layers, 1))][:n_layers]


def _layer_lines(
    ax: Axes, trace: Trace, values: np.ndarray, reference: float | None, legend: bool
) -> None:
    """Draw ``values`` ``(n, L)`` as one line per layer, plus reference and divergence."""
    n_steps, n_layers = values.shape
    steps = np.arange(n_steps)
    colors = _layer_colors(n_layers)
    for j in range(n_layers):
        ax.plot(steps, _for_log(values[:, j]), color=colors[j], label=trace.layers[j],
                lw=1.0, **_marker_style(n_steps))
    _log_y(ax, [values])
    _cover_steps(ax, n_steps)
    if reference is not None:
        _reference_line(ax, reference)
    ax.set_xlabel("step")
    if legend and n_layers <= 8:
        ax.legend(loc="best", ncols=1 if n_layers <= 4 else 2, fontsize=8)
    elif legend:
        # Too many layers for a legend: a discrete colour bar, input to output.
        cmap = ListedColormap(colors)
        norm = BoundaryNorm(np.arange(n_layers + 1) - 0.5, n_layers)
        bar = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="layer")
        ticks = _tick_positions(n_layers)
        bar.set_ticks(ticks, labels=[trace.layers[i] for i in ticks])
        bar.minorticks_off()
    divergence = _divergence(trace)
    if divergence is not None:
        mark_divergence(ax, *divergence)


def _bin_steps(values: np.ndarray, max_columns: int) -> tuple[np.ndarray, int]:
    """Max over bins of ``k`` steps: ``(n, L)`` -> ``(ceil(n / k), L)``, and ``k``.

    A bin holding a non-finite value is NaN, so divergence is never hidden.
    """
    n_steps, n_layers = values.shape
    k = max(1, -(-n_steps // max_columns))
    if k == 1:
        return values, 1
    n_bins = -(-n_steps // k)
    padded = np.full((n_bins * k, n_layers), -np.inf)
    padded[:n_steps] = np.where(np.isfinite(values), values, -np.inf)
    bad = np.zeros((n_bins * k, n_layers), dtype=bool)
    bad[:n_steps] = ~np.isfinite(values)
    peak = padded.reshape(n_bins, k, n_layers).max(axis=1)
    return np.where(bad.reshape(n_bins, k, n_layers).any(axis=1), np.nan, peak), k


def _tick_positions(n: int, most: int = 16) -> list[int]:
    if n <= most:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, most).round().astype(int).tolist()))


def _layer_ticks(ax: Axes, layers: Sequence[str]) -> None:
    ticks = _tick_positions(len(layers))
    ax.set_yticks(ticks, labels=[layers[i] for i in ticks])


def _share_y(panels: np.ndarray, traces: Sequence[Trace], quantity: str) -> None:
    """Give every panel the y limits that fit all of them (log scale)."""
    for ax in panels[1:]:
        if not panels[0].get_shared_y_axes().joined(panels[0], ax):
            try:
                ax.sharey(panels[0])
            except ValueError:  # already shared with another axes: set limits below
                pass
    data = np.concatenate([np.ravel(getattr(t, quantity)) for t in traces])
    ok = data[np.isfinite(data) & (data > 0)]
    if ok.size:
        low, high = _log_limits(ok)
        pad = (high / low) ** 0.05  # 5% margins in log space
        for ax in panels:
            ax.set_ylim(low / pad, high * pad)


def _as_series(values: ArrayLike | Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    if isinstance(values, Mapping):
        return {str(k): _numbers(v).ravel() for k, v in values.items()}
    a = _numbers(values)
    if a.ndim == 1:
        return {"": a}
    if a.ndim == 2:
        return {f"series {i}": row for i, row in enumerate(a)}
    raise ValueError(f"values must be 1-D, 2-D or a mapping, got shape {a.shape}")


def _numbers(values: object) -> np.ndarray:
    """``values`` as a float64 array, or a `TypeError` naming `depth_profile`."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            "depth_profile() expects numbers: a 1-D or 2-D array, or a mapping "
            f"from label to 1-D array, got {describe(values)}"
        ) from error
