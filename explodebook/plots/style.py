"""The book's plot style: framework and layer colours, axis labels, the style file.

One colour per framework (Okabe & Ito's colour-blind-safe palette), one
colour map for layers, the labels and titles of the recorded quantities,
and `use_style` for fonts, grid and colour cycle.
"""

from __future__ import annotations

from importlib import resources

import matplotlib.pyplot as plt
from matplotlib import patheffects

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
