"""`Trace`: the framework-neutral numpy record of one training run."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explodebook.spec import RunSpec

__all__ = ["Trace", "FRAMEWORKS", "locate_nonfinite"]

#: Framework names used in traces and in the API.
FRAMEWORKS = ("torch", "keras")

# Array fields, with the number of dimensions each must have.
_ARRAYS = {
    "loss": 1,
    "grad_norm_total": 1,
    "grad_norms": 2,
    "clipped_grad_norms": 2,
    "grad_max_abs": 2,
    "weight_norms": 2,
}


@dataclass(eq=False)
class Trace:
    """What one run did, step by step, as plain float64 numpy arrays.

    Step ``t`` holds the loss and gradients computed at the weights the
    network had *before* update ``t`` (so row 0 describes the initial
    weights). ``n`` below is the number of steps actually run: less than
    ``spec.steps`` when the run stopped at the first non-finite value.

    Attributes:
        spec: the run's `RunSpec`.
        framework: ``"torch"`` or ``"keras"``.
        layers: layer names, input to output (length ``L``).
        loss: ``(n,)`` training loss of each step's batch (the data term,
            without any L1/L2 penalty).
        grad_norm_total: ``(n,)`` global L2 norm of all gradients before
            clipping, from the per-layer norms in float64 (equal, up to
            float32 rounding, to what ``torch.nn.utils.clip_grad_norm_``
            returns).
        grad_norms: ``(n, L)`` L2 norm of each layer's gradient (all its
            parameters together) before clipping.
        clipped_grad_norms: ``(n, L)`` the same after clipping (equal to
            ``grad_norms`` when the spec does not clip).
        grad_max_abs: ``(n, L)`` largest absolute gradient element per
            layer, before clipping.
        weight_norms: ``(n, L)`` L2 norm of each layer's parameters.
        first_nonfinite_step: first step at which the loss, a gradient or a
            weight was NaN or infinite; ``None`` if none was.
        first_nonfinite_kind: ``"weight"``, ``"gradient"`` or ``"loss"``:
            what was non-finite at that step, in that order of precedence
            (non-finite weights make everything after them non-finite).
        first_nonfinite_layer: the layer to blame, in the order the values
            are computed: for weights the first non-finite layer from the
            input (the forward pass meets it first), for gradients the first
            from the output (backpropagation meets it first); ``None`` when
            only the loss was non-finite.
        wall_time: seconds the training loop took; it varies from run to
            run, so `equals` ignores it by default.
    """

    spec: RunSpec
    framework: str
    layers: list[str]
    loss: np.ndarray
    grad_norm_total: np.ndarray
    grad_norms: np.ndarray
    clipped_grad_norms: np.ndarray
    grad_max_abs: np.ndarray
    weight_norms: np.ndarray
    first_nonfinite_step: int | None = None
    first_nonfinite_kind: str | None = None
    first_nonfinite_layer: str | None = None
    wall_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise ValueError(
                f"Trace.framework={self.framework!r}: choose one of {list(FRAMEWORKS)}"
            )
        n = None
        for name, ndim in _ARRAYS.items():
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.ndim != ndim:
                raise ValueError(f"Trace.{name} must have {ndim} dimension(s), got shape {a.shape}")
            if ndim == 2 and a.shape[1] != len(self.layers):
                raise ValueError(
                    f"Trace.{name} has {a.shape[1]} columns for {len(self.layers)} layers"
                )
            if n is None:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(f"Trace.{name} has {a.shape[0]} steps, loss has {n}")
            setattr(self, name, a)
        self.layers = list(self.layers)

    # -- derived facts ----------------------------------------------------

    @property
    def steps_run(self) -> int:
        """Number of steps recorded."""
        return int(self.loss.shape[0])

    @property
    def diverged(self) -> bool:
        """True if the loss, a gradient or a weight became non-finite."""
        return self.first_nonfinite_step is not None

    @property
    def label(self) -> str:
        """The framework's display name, as a short label for legends."""
        return {"torch": "PyTorch", "keras": "Keras"}[self.framework]

    def final_loss(self, window: int = 50) -> float:
        """Mean loss over the last ``window`` finite steps (NaN if none)."""
        finite = self.loss[np.isfinite(self.loss)]
        return float(finite[-window:].mean()) if finite.size else float("nan")

    @classmethod
    def from_record(
        cls, record: np.ndarray, spec: RunSpec, framework: str, wall_time: float = 0.0
    ) -> Trace:
        """Build a trace from the backends' per-step record matrix.

        Args:
            record: ``(n, 2 + 4 * L)`` float64; each row is ``loss``,
                ``grad_norm_total``, then ``L`` columns each of
                ``grad_norms``, ``clipped_grad_norms``, ``grad_max_abs`` and
                ``weight_norms``.
            spec, framework, wall_time: as in `Trace`.
        """
        from explodebook.weights import layer_names

        layers = layer_names(spec)
        n_layers = len(layers)
        if record.ndim != 2 or record.shape[1] != 2 + 4 * n_layers:
            raise ValueError(
                f"record must have shape (n, {2 + 4 * n_layers}) for {n_layers} layers, "
                f"got {record.shape}"
            )
        grad_norms, clipped, grad_max, weight_norms = (
            record[:, 2 + i * n_layers : 2 + (i + 1) * n_layers] for i in range(4)
        )
        step, kind, layer = locate_nonfinite(record[:, 0], grad_norms, weight_norms, layers)
        return cls(
            spec=spec,
            framework=framework,
            layers=layers,
            loss=record[:, 0],
            grad_norm_total=record[:, 1],
            grad_norms=grad_norms,
            clipped_grad_norms=clipped,
            grad_max_abs=grad_max,
            weight_norms=weight_norms,
            first_nonfinite_step=step,
            first_nonfinite_kind=kind,
            first_nonfinite_layer=layer,
            wall_time=wall_time,
        )

    # -- persistence (npz + JSON, no pickle) ------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the trace to one ``.npz`` file (arrays + a JSON header)."""
        header = {
            "format": "explodebook.Trace/1",
            "spec": self.spec.to_dict(),
            "framework": self.framework,
            "layers": self.layers,
            "first_nonfinite_step": self.first_nonfinite_step,
            "first_nonfinite_kind": self.first_nonfinite_kind,
            "first_nonfinite_layer": self.first_nonfinite_layer,
            "wall_time": self.wall_time,
            "extra": self.extra,
        }
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, header=np.array(json.dumps(header)), **arrays)
        with open(path, "wb") as f:
            f.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        """Read a trace written by `save`."""
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(str(npz["header"]))
            if header.get("format") != "explodebook.Trace/1":
                raise ValueError(f"{path!s} is not an explodebook trace file")
            arrays = {name: npz[name] for name in _ARRAYS}
        return cls(
            spec=RunSpec.from_dict(header["spec"]),
            framework=header["framework"],
            layers=header["layers"],
            first_nonfinite_step=header["first_nonfinite_step"],
            first_nonfinite_kind=header["first_nonfinite_kind"],
            first_nonfinite_layer=header["first_nonfinite_layer"],
            wall_time=header["wall_time"],
            extra=header["extra"],
            **arrays,
        )

    def equals(self, other: Trace, *, ignore_time: bool = True) -> bool:
        """True if both traces hold identical numbers (NaN equals NaN)."""
        if (
            self.spec != other.spec
            or self.framework != other.framework
            or self.layers != other.layers
            or self.first_nonfinite_step != other.first_nonfinite_step
            or self.first_nonfinite_kind != other.first_nonfinite_kind
            or self.first_nonfinite_layer != other.first_nonfinite_layer
            or (not ignore_time and self.wall_time != other.wall_time)
        ):
            return False
        return all(
            np.array_equal(getattr(self, n), getattr(other, n), equal_nan=True) for n in _ARRAYS
        )

    def __repr__(self) -> str:
        state = (
            f"diverged at step {self.first_nonfinite_step} "
            f"({self.first_nonfinite_kind}, {self.first_nonfinite_layer})"
            if self.diverged
            else f"final loss {self.final_loss():.4g}"
        )
        return f"<Trace {self.framework} {self.steps_run}/{self.spec.steps} steps, {state}>"


def locate_nonfinite(
    loss: np.ndarray, grad_norms: np.ndarray, weight_norms: np.ndarray, layers: list[str]
) -> tuple[int | None, str | None, str | None]:
    """Find the first non-finite step, what was non-finite and which layer.

    Backends compute norms in float64, so a norm is finite exactly when
    every element it summarises is finite.

    Args:
        loss: ``(n,)``; grad_norms, weight_norms: ``(n, L)``.
        layers: the ``L`` layer names, input to output.

    Returns:
        ``(step, kind, layer)`` as described in `Trace`, or
        ``(None, None, None)``.
    """
    bad_w = ~np.isfinite(weight_norms)
    bad_g = ~np.isfinite(grad_norms)
    bad_step = ~np.isfinite(loss) | bad_w.any(axis=1) | bad_g.any(axis=1)
    if not bad_step.any():
        return None, None, None
    step = int(np.argmax(bad_step))
    if bad_w[step].any():
        return step, "weight", layers[int(np.argmax(bad_w[step]))]
    if bad_g[step].any():
        last = len(layers) - 1 - int(np.argmax(bad_g[step][::-1]))
        return step, "gradient", layers[last]
    return step, "loss", None


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
