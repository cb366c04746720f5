"""Matplotlib figures to PNG bytes: the one renderer of scrubbers and widgets.

`figure_png` saves a figure and closes it; `draw_png` calls a drawing
function first and closes every figure it opened; `canvas_png` saves a
figure that is redrawn in place (`explodebook.plots.live.LiveCurves`) and
keeps it open.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

__all__ = ["figure_png", "draw_png", "canvas_png"]


def _figure(obj: Any) -> Any:
    """The matplotlib Figure of ``obj`` (a Figure, SubFigure or Axes), or None."""
    from matplotlib.figure import Figure

    # Axes -> (Sub)Figure -> Figure.
    for _ in range(4):
        if isinstance(obj, Figure):
            return obj
        obj = getattr(obj, "figure", None)
    return None


def figure_png(figure: Any, dpi: float = 80, *, fast: bool = False) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed afterwards.

    The PNG holds no ``Software`` text chunk (it names the matplotlib
    version, which would change the bytes between versions).

    Args:
        figure: a matplotlib Figure, or an Axes of it.
        dpi: resolution of the PNG.
        fast: light compression (for a PNG that only travels to a browser
            next to the kernel: ~0.1 s less per figure for ~4% more bytes);
            default: the smallest PNG, for pages that embed every frame.

    Raises:
        TypeError: ``figure`` is neither a Figure nor an Axes.
    """
    import matplotlib.pyplot as plt

    fig = _expect_figure(figure)
    try:
        return _png(fig, dpi, fast)
    finally:
        plt.close(fig)


def _expect_figure(figure: Any) -> Any:
    fig = _figure(figure)
    if fig is None:
        raise TypeError(f"expected a matplotlib Figure or Axes, got {type(figure).__name__}")
    return fig


def _png(fig: Any, dpi: float, fast: bool, whole: bool = False) -> bytes:
    """``fig`` saved as PNG bytes, without a ``Software`` chunk; ``fast``: light compression.

    ``whole``: the whole figure, as laid out, instead of the book style's
    tight bounding box (``savefig.bbox: tight``), which draws the figure a
    second time to measure it.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None},
                pil_kwargs={"compress_level": 1} if fast else {"optimize": True},
                **({"bbox_inches": fig.bbox_inches} if whole else {}))  # fmt: skip
    return buffer.getvalue()


def _figure_of(result: Any, new_figures: list[Any]) -> Any:
    """The matplotlib Figure that ``draw`` returned (or made)."""
    import numpy as np

    obj = result
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.size:
        obj = obj.flat[0]  # an array of Axes, as plt.subplots returns
    if obj is None and len(new_figures) == 1:
        obj = new_figures[0]  # draw() used pyplot and returned nothing
    fig = _figure(obj)
    if fig is None:
        raise TypeError(
            "draw must return a matplotlib Figure or Axes (or create exactly one "
            f"pyplot figure); got {type(result).__name__}"
        )
    return fig


def draw_png(draw: Callable[..., Any], args: tuple[Any, ...], dpi: float = 80) -> bytes:
    """Call ``draw(*args)`` and return its figure as PNG (as `figure_png`).

    ``draw`` returns a Figure or an Axes (or an array of Axes, as
    ``plt.subplots`` gives), or draws into one new pyplot figure and
    returns None. Every figure it opened is closed afterwards, even when
    it raises.

    Raises:
        TypeError: ``draw`` returned something else.
    """
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    fig = None
    try:
        result = draw(*args)
        new = [plt.figure(n) for n in plt.get_fignums() if n not in before]
        fig = _figure_of(result, new)
        return figure_png(fig, dpi)
    finally:
        # Pages embed every frame: leaking one open figure per frame would
        # also leak its memory for the life of the kernel.
        for n in set(plt.get_fignums()) - before:
            plt.close(n)
        if fig is not None:
            plt.close(fig)


def canvas_png(figure: Any, dpi: float = 72) -> bytes:
    """A figure that is updated in place, as PNG bytes, light compression; the figure stays open.

    For frames that only travel to a browser next to the kernel (a
    widget's live curves): ``compress_level=1`` and no ``Software`` chunk,
    as `figure_png` with ``fast=True``.

    Raises:
        TypeError: ``figure`` is neither a Figure nor an Axes.
    """
    # drawn once: the figure's own margins, not a tight box measured per frame
    return _png(_expect_figure(figure), dpi, fast=True, whole=True)
