"""A figure redrawn in place while runs train: the widgets' growing loss and gradient-norm curves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from explodebook.plots.axes import _for_log
from explodebook.plots.style import FRAMEWORK_COLORS, FRAMEWORK_LINESTYLES
from explodebook.trace import FRAMEWORKS, Trace

__all__ = ["LiveCurves"]

_NAMES = {"torch": "PyTorch", "keras": "Keras"}


class LiveCurves:
    """Loss (left) and global gradient norm (right) per step, one line per framework.

    Made once (per widget) and updated in place by `update`: only the
    lines' data, the y limits and the title change, so a frame costs one
    Agg draw (no layout engine, no new axes, ticks or legend), a fraction
    of drawing a new figure. The x axis spans the whole run from the start,
    so the curves grow from left to right as steps arrive, as in
    TensorFlow Playground. The figure is not a pyplot figure: nothing to
    close, nothing shown by a notebook's inline backend.

    Args:
        frameworks: the frameworks whose lines to draw (``"torch"``,
            ``"keras"``), in drawing order.
        figsize: width and height in inches.

    Raises:
        ValueError: an unknown framework.
    """

    def __init__(self, frameworks: Sequence[str], figsize: tuple[float, float] = (9, 3.2)) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import LogLocator, NullLocator

        unknown = [fw for fw in frameworks if fw not in FRAMEWORKS]
        if unknown:
            raise ValueError(f"LiveCurves: unknown frameworks {unknown}; choose from {FRAMEWORKS}")
        self.frameworks = tuple(frameworks)
        #: the matplotlib Figure (Agg canvas) that `update` redraws
        # layout="none": the book style turns constrained layout on, which
        # would ignore the fixed margins and measure every text per frame
        self.figure = Figure(figsize=figsize, layout="none")
        FigureCanvasAgg(self.figure)
        # Fixed margins instead of a layout engine: the frame does not move
        # while it updates, and no text extents are measured per frame.
        self.figure.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.84, wspace=0.22)
        self.axes = self.figure.subplots(1, 2)
        both = len(set(self.frameworks)) > 1
        self._lines: dict[str, list[Any]] = {}
        for ax, ylabel in zip(self.axes, ("loss (log)", "‖∇W‖₂, all layers (log)")):
            ax.set_yscale("log")
            # Minor ticks of a log axis are most of a frame's drawing (tick
            # marks and their labels); decades alone read as well here.
            ax.yaxis.set_major_locator(LogLocator(numticks=6))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
        for fw in self.frameworks:
            style = FRAMEWORK_LINESTYLES[fw] if both else "-"
            self._lines[fw] = [
                ax.plot([], [], color=FRAMEWORK_COLORS[fw], lw=1.1, ls=style, label=_NAMES[fw])[0]
                for ax in self.axes
            ]
        self.axes[0].legend(loc="upper right")
        self._title = self.figure.suptitle("")

    def update(self, traces: Sequence[Trace], steps: int, title: str = "") -> Any:
        """Show ``traces`` (complete or partial) on an x axis of ``steps`` steps.

        Args:
            traces: at most one per framework; ``loss`` and
                ``grad_norm_total`` are ``(n,)`` with ``n <= steps``. A
                framework without a trace keeps an empty line.
            steps: the run's length, the x axis' extent.
            title: text above both axes (e.g. how far the runs are).

        Returns:
            the Figure, ready to save (`explodebook.render.canvas_png`).
        """
        shown: dict[str, list[np.ndarray]] = {fw: [np.empty(0), np.empty(0)] for fw in self._lines}
        for trace in traces:
            if trace.framework in shown:
                shown[trace.framework] = [_for_log(trace.loss), _for_log(trace.grad_norm_total)]
        for fw, lines in self._lines.items():
            for line, values in zip(lines, shown[fw]):
                line.set_data(np.arange(values.size), values)
        for k, ax in enumerate(self.axes):
            ax.set_xlim(0, max(int(steps), 1))
            values = np.concatenate([shown[fw][k] for fw in shown])
            values = values[np.isfinite(values)]
            if values.size:
                low, high = float(values.min()), float(values.max())
                # Some room above and below, in log terms; a flat line gets a decade.
                ax.set_ylim(low / 1.5 if high > low else low / 10, high * 1.5 if high > low else high * 10)
        self._title.set_text(title)
        return self.figure
