"""Per-step plots: loss and global gradient norm per step, norms against depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike

from explodebook.checks import describe
from explodebook.plots.axes import (
    _as_list,
    _axes,
    _expect_axes,
    _for_log,
    _log_y,
    _marker_style,
    _reference_line,
    _step_lines,
    mark_divergence,
)
from explodebook.plots.style import SERIES_COLORS
from explodebook.trace import Trace

__all__ = ["loss_curve", "grad_norm_curve", "depth_profile"]


def loss_curve(
    trace_or_traces: Trace | Sequence[Trace],
    ax: Axes | None = None,
    log: bool = True,
    title: str | None = None,
    labels: Sequence[str] | Mapping[str, str] | None = None,
    colors: Sequence[str] | None = None,
    divergence: str = "annotated",
    legend: bool = True,
) -> Axes:
    """Plot the training loss per step of one or more runs.

    Each run is drawn in its framework's colour (`FRAMEWORK_COLORS`; a
    framework's further runs in darker or lighter shades of it). Where a run
    diverged, a dashed line and an annotation mark the step
    (``divergence="annotated"``), or, with many runs on one axes, only an
    "x" where its line ends (``"compact"``, which also leaves out the dot
    per step of short runs).

    Args:
        trace_or_traces: a `Trace` or a sequence of them; ``loss`` is
            ``(n,)``.
        ax: where to draw; a new figure if ``None``.
        log: log y axis (non-positive losses are left out).
        title: the finding to state; a descriptive default if ``None``.
        labels: legend labels: one per trace, or a mapping from framework
            (``"torch"``) or `Trace.label` (``"PyTorch"``) to a label.
        colors: one colour per trace, to override the framework colours.
        divergence: ``"annotated"`` or ``"compact"``, as above.
        legend: draw a legend (labels starting with ``_`` are left out of it).

    Returns:
        the Axes.

    Raises:
        ValueError: ``divergence`` is neither ``"annotated"`` nor ``"compact"``.
    """
    traces = _as_list(trace_or_traces, "loss_curve()")
    _expect_axes(ax, "loss_curve(ax=...)")
    if divergence not in ("annotated", "compact"):
        raise ValueError(
            f"loss_curve(divergence=...) must be 'annotated' or 'compact', got {divergence!r}"
        )
    return _step_lines(traces, "loss", ax, log, title, labels, colors, legend,
                       compact=divergence == "compact")  # fmt: skip


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
