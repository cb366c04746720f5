"""Hand-built traces for tests of code that reads traces (diagnose, plots)."""

from __future__ import annotations

import numpy as np

from explodebook.spec import RunSpec
from explodebook.trace import Trace, locate_nonfinite

LAYERS = ["dense_1", "output"]


def hand_trace(
    loss, grad_norms=None, weight_norms=None, framework: str = "torch", spec: RunSpec | None = None
) -> Trace:
    """A two-layer trace from a loss curve; norms default to 0.5 and 3.0.

    It has no `RunSpec` unless given one: it was not made by a run.
    """
    loss = np.asarray(loss, dtype=np.float64)
    n = loss.size
    grads = np.full((n, 2), 0.5) if grad_norms is None else np.asarray(grad_norms, float)
    weights = np.full((n, 2), 3.0) if weight_norms is None else np.asarray(weight_norms, float)
    step, kind, layer = locate_nonfinite(loss, grads, weights, LAYERS)
    with np.errstate(all="ignore"):
        total = np.sqrt((grads**2).sum(axis=1))
    return Trace(
        spec=spec,
        framework=framework,
        layers=LAYERS,
        loss=loss,
        grad_norm_total=total,
        grad_norms=grads,
        clipped_grad_norms=grads,
        grad_max_abs=grads,
        weight_norms=weights,
        first_nonfinite_step=step,
        first_nonfinite_kind=kind,
        first_nonfinite_layer=layer,
    )
