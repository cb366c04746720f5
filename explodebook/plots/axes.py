"""Drawing helpers the plots share: log axes, colours, labels, divergence marks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap, to_hex, to_rgb
from matplotlib.text import Annotation
from matplotlib.ticker import LogLocator
from numpy.typing import ArrayLike

from explodebook.checks import describe, expect
from explodebook.plots.style import (
    _HALO,
    _MARKERS_UP_TO,
    _PER_LAYER,
    _SHADES,
    _TITLES,
    DIVERGENCE_COLOR,
    FRAMEWORK_COLORS,
    FRAMEWORK_LINESTYLES,
    LAYER_CMAP,
    QUANTITY_LABELS,
)
from explodebook.trace import Trace, locate_nonfinite

__all__ = ["mark_divergence"]


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
    compact: bool = False,
) -> Axes:
    """One line per trace of a per-step quantity (``loss``, ``grad_norm_total``).

    ``compact``: no dot per step on short runs, and a divergence marked by
    an "x" at the line's last finite point only (no dashed line, no text),
    for figures crowded with runs.
    """
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
                linestyle=style, **({} if compact else _marker_style(values.size)))
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
    for trace, color, values in zip(traces, line_colors, arrays):
        divergence = _divergence(trace)
        if divergence is not None and compact:
            shown = _for_log(values) if log else values
            finite = np.flatnonzero(np.isfinite(shown))
            last = finite[-1] if finite.size else 0
            ax.plot(last, shown[last] if finite.size else 1.0, "x", color=color, ms=7, mew=2)
        elif divergence is not None:
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
