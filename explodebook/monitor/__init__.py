"""Gradient monitors for the reader's own model, in both frameworks.

The backends (`explodebook.backends`) train networks built from a
`RunSpec`. A monitor watches a network *you* built and train in your own
loop, and produces the same `Trace`, so `explodebook.diagnose` and
`explodebook.plots` work on it unchanged.

- ``explodebook.monitor.torch.GradientMonitor(model, optimizer)``: hooks
  any ``nn.Module`` and its optimizer; your training loop stays as it is.
- ``explodebook.monitor.keras.GradientMonitor()``: a Keras 3 callback,
  ``model.fit(..., callbacks=[monitor])``.

Each records, per step: the loss, the gradient norm of every layer (a layer
is a module / Keras layer that directly owns trainable parameters) before
and after clipping, the largest gradient element of each layer, the weight
norm of each layer, and which step, quantity, layer and parameter first
became NaN or infinite. ``monitor.trace()`` returns the `Trace`, built by
`Trace.from_parameter_record` from one row per step in the layout of the
backends' records (`Trace.from_record`), with one column per parameter
instead of one per layer.

``import explodebook.monitor`` imports neither framework: each submodule
imports its own when it is first used (``explodebook.monitor.torch`` or
``explodebook.monitor.keras``, or the attribute of the same name here).
Both import their framework through `explodebook.frameworks`, which loads
PyTorch (and triton, when installed) before TensorFlow, in either order.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from explodebook.checks import check_framework
from explodebook.trace import FRAMEWORKS

__all__ = ["torch", "keras", "get"]


def get(framework: str) -> ModuleType:
    """Import and return the monitor module for ``"torch"`` or ``"keras"``."""
    framework = check_framework(framework)
    return importlib.import_module(f"explodebook.monitor.{framework}")


def __getattr__(name: str) -> ModuleType:
    if name in FRAMEWORKS:  # a submodule per framework
        return get(name)
    raise AttributeError(f"module 'explodebook.monitor' has no attribute {name!r}")
