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

from explodebook.plots import axes, curves, layers, phase, style
from explodebook.plots.axes import mark_divergence
from explodebook.plots.curves import depth_profile, grad_norm_curve, loss_curve
from explodebook.plots.layers import compare, grad_heatmap, layer_norms, weight_norms
from explodebook.plots.phase import phase_diagram
from explodebook.plots.style import (
    DIVERGENCE_COLOR,
    FRAMEWORK_COLORS,
    FRAMEWORK_LINESTYLES,
    LAYER_CMAP,
    NONFINITE_COLOR,
    QUANTITY_LABELS,
    SERIES_COLORS,
    style_path,
    use_style,
)

__all__ = [*style.__all__, *curves.__all__, *layers.__all__, *axes.__all__, "phase_diagram"]
