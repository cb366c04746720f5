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
became NaN or infinite. ``monitor.trace()`` returns the `Trace`.

``import explodebook.monitor`` imports neither framework: each submodule
imports its own when it is first used (``explodebook.monitor.torch`` or
``explodebook.monitor.keras``, or the attribute of the same name here).
Both import their framework through `explodebook.frameworks`, which loads
PyTorch (and triton, when installed) before TensorFlow, in either order.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from explodebook.checks import check_framework
from explodebook.spec import RunSpec
from explodebook.trace import FRAMEWORKS, Trace, locate_nonfinite, max_layers, sum_layers

__all__ = ["torch", "keras", "get", "assemble_trace"]


def get(framework: str) -> ModuleType:
    """Import and return the monitor module for ``"torch"`` or ``"keras"``."""
    framework = check_framework(framework)
    return importlib.import_module(f"explodebook.monitor.{framework}")


def __getattr__(name: str) -> ModuleType:
    if name in FRAMEWORKS:  # a submodule per framework
        return get(name)
    raise AttributeError(f"module 'explodebook.monitor' has no attribute {name!r}")


def assemble_trace(
    values: np.ndarray,
    *,
    framework: str,
    layers: list[str],
    owner: np.ndarray,
    parameter_names: list[str],
    spec: RunSpec | None = None,
    wall_time: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> Trace:
    """Build a `Trace` from a monitor's per-parameter record (both frameworks).

    Args:
        values: ``(n, 1 + 4 * P)`` float64; each row is the loss, then ``P``
            columns each of: gradient L2 norms, weight L2 norms, largest
            ``|gradient element|``, gradient L2 norms after clipping, one
            column per parameter (variable).
        framework: ``"torch"`` or ``"keras"``.
        layers: the ``L`` layer names, input to output.
        owner: ``(P,)`` index of each parameter's layer.
        parameter_names: the ``P`` parameter names.
        spec: the run's `RunSpec` when the model is one of the book's
            runs rebuilt by hand; ``None`` (a model of your own) leaves the
            trace without one (``Trace.spec is None``).
        wall_time: seconds of training, for ``Trace.wall_time``.
        extra: more entries for ``Trace.extra`` (JSON-serialisable).

    Returns:
        the `Trace`. Layer norms combine their parameters' norms in float64
        (``sqrt`` of the sum of squares), so a layer norm is finite exactly
        when its parameters' are; the first non-finite step, kind and layer
        follow `explodebook.trace.locate_nonfinite`, and
        ``extra["first_nonfinite_parameter"]`` names the parameter by the
        same rule.
    """
    values = np.asarray(values, dtype=np.float64)
    n_params, n_layers = len(parameter_names), len(layers)
    if values.ndim != 2 or values.shape[1] != 1 + 4 * n_params:
        raise ValueError(
            f"values must have shape (n, {1 + 4 * n_params}) for {n_params} parameters, "
            f"got {values.shape}"
        )
    loss = values[:, 0]
    grad, weight, max_abs, clipped = (
        values[:, 1 + i * n_params : 1 + (i + 1) * n_params] for i in range(4)
    )
    with np.errstate(invalid="ignore", over="ignore"):
        grad_sq = sum_layers(grad**2, owner, n_layers)
        grad_norms = np.sqrt(grad_sq)
        weight_norms = np.sqrt(sum_layers(weight**2, owner, n_layers))
        clipped_norms = np.sqrt(sum_layers(clipped**2, owner, n_layers))
        total = np.sqrt(grad_sq.sum(axis=1))
    step, kind, layer = locate_nonfinite(loss, grad_norms, weight_norms, layers)
    info: dict[str, Any] = {
        "parameters": {
            name: [parameter_names[i] for i in np.flatnonzero(owner == k)]
            for k, name in enumerate(layers)
        },
        "first_nonfinite_parameter": _blame_parameter(step, kind, grad, weight, parameter_names),
    }
    info.update(extra or {})
    return Trace(
        spec=spec,
        framework=framework,
        layers=layers,
        loss=loss,
        grad_norm_total=total,
        grad_norms=grad_norms,
        clipped_grad_norms=clipped_norms,
        grad_max_abs=max_layers(max_abs, owner, n_layers),
        weight_norms=weight_norms,
        first_nonfinite_step=step,
        first_nonfinite_kind=kind,
        first_nonfinite_layer=layer,
        wall_time=float(wall_time),
        extra=info,
    )



def _blame_parameter(
    step: int | None,
    kind: str | None,
    grad: np.ndarray,
    weight: np.ndarray,
    names: list[str],
) -> str | None:
    """The parameter to blame, by the rule `locate_nonfinite` uses for layers."""
    if step is None or kind == "loss":
        return None
    if kind == "weight":
        return names[int(np.argmax(~np.isfinite(weight[step])))]
    bad = ~np.isfinite(grad[step])
    return names[len(names) - 1 - int(np.argmax(bad[::-1]))]
