"""The monitors' per-parameter record, combined into the per-layer arrays of a `Trace`.

A monitor (`explodebook.monitor`) records one column per parameter
(variable) where the backends record one per layer; `combine_parameters`
checks such a record and combines its columns by layer, and
`blame_parameter` names the parameter to blame for a non-finite step.
``Trace.from_parameter_record`` uses both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["combine_parameters", "blame_parameter", "sum_layers", "max_layers"]


def combine_parameters(
    values: np.ndarray, owner: np.ndarray, n_layers: int, n_params: int
) -> dict[str, np.ndarray]:
    """Check a per-parameter record and combine its columns per layer.

    Args:
        values: ``(n, 1 + 4 * P)`` float64, in the layout of
            ``Trace.from_parameter_record``.
        owner: ``(P,)`` index of each parameter's layer.
        n_layers: ``L``.
        n_params: ``P``.

    Returns:
        the trace's arrays by field name (``loss``, ``grad_norm_total``,
        ``grad_norms``, ``clipped_grad_norms``, ``grad_max_abs``,
        ``weight_norms``), plus ``grad`` and ``weight``: the ``(n, P)``
        per-parameter gradient and weight norms. Layer norms combine their
        parameters' norms in float64 (``sqrt`` of the sum of squares), so a
        layer norm is finite exactly when its parameters' are.

    Raises:
        ValueError: ``values`` has the wrong shape, or ``owner`` does not
            give a layer index for every parameter.
    """
    if values.ndim != 2 or values.shape[1] != 1 + 4 * n_params:
        raise ValueError(
            f"values must have shape (n, {1 + 4 * n_params}) for {n_params} parameters, "
            f"got {values.shape}"
        )
    if owner.shape != (n_params,) or (n_params and (owner.min() < 0 or owner.max() >= n_layers)):
        raise ValueError(
            f"owner must give one layer index in [0, {n_layers}) for each of the "
            f"{n_params} parameters"
        )
    grad, clipped, max_abs, weight = (
        values[:, 1 + i * n_params : 1 + (i + 1) * n_params] for i in range(4)
    )
    with np.errstate(invalid="ignore", over="ignore"):
        grad_sq = sum_layers(grad**2, owner, n_layers)
        return {
            "loss": values[:, 0],
            "grad_norm_total": np.sqrt(grad_sq.sum(axis=1)),
            "grad_norms": np.sqrt(grad_sq),
            "clipped_grad_norms": np.sqrt(sum_layers(clipped**2, owner, n_layers)),
            "grad_max_abs": max_layers(max_abs, owner, n_layers),
            "weight_norms": np.sqrt(sum_layers(weight**2, owner, n_layers)),
            "grad": grad,
            "weight": weight,
        }


def sum_layers(values: np.ndarray, owner: np.ndarray, n_layers: int) -> np.ndarray:
    """Sum per-parameter values into per-layer values.

    Args:
        values: ``(n, P)``, one column per parameter (e.g. squared norms).
        owner: ``(P,)`` int, the layer index of each parameter.
        n_layers: ``L``.

    Returns:
        ``(n, L)`` float64. ``np.add.at`` keeps an inf or NaN inside its
        own layer (a masked sum would spread it).
    """
    out = np.zeros((values.shape[0], n_layers))
    np.add.at(out.T, owner, values.T)
    return out


def max_layers(values: np.ndarray, owner: np.ndarray, n_layers: int) -> np.ndarray:
    """Largest per-parameter value of each layer: ``(n, P)`` -> ``(n, L)``."""
    return np.column_stack([values[:, owner == k].max(axis=1) for k in range(n_layers)])


def blame_parameter(
    step: int | None,
    kind: str | None,
    grad: np.ndarray,
    weight: np.ndarray,
    names: list[str],
) -> str | None:
    """The parameter to blame, by the rule ``locate_nonfinite`` uses for layers."""
    if step is None or kind == "loss":
        return None
    if kind == "weight":
        return names[int(np.argmax(~np.isfinite(weight[step])))]
    bad = ~np.isfinite(grad[step])
    return names[len(names) - 1 - int(np.argmax(bad[::-1]))]
