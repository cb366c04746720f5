"""`Trace`: the framework-neutral numpy record of one training run."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explodebook.checks import (
    check_framework,
    describe,
    expect,
    expect_int,
    expect_spec,
    expect_trace,
)
from explodebook.records import blame_parameter, combine_parameters
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
        spec: the run's `RunSpec` for a run of the package's backends;
            ``None`` for a model of the reader's own recorded by a monitor
            (`explodebook.monitor`), which has no spec: ``extra["source"]``
            and ``extra["model"]`` say where such a trace came from. Nothing
            downstream invents a spec (or its data set) for it.
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

    spec: RunSpec | None
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
        if self.spec is not None:
            expect(self.spec, RunSpec, "Trace(spec=...)", "a RunSpec, or None for a monitored model")
        self.framework = check_framework(self.framework, "Trace.framework")
        # A string is iterable too: Trace(layers="ab") would quietly become
        # two layers called "a" and "b".
        layers = self.layers
        ok = isinstance(layers, Iterable) and not isinstance(layers, (str, bytes))
        layers = list(layers) if ok else []
        if not ok or not all(isinstance(name, str) for name in layers):
            raise TypeError(
                "Trace(layers=...) expects a list of layer names (str), input to "
                f"output, got {describe(self.layers)}"
            )
        self.layers = layers
        n = None
        for name, ndim in _ARRAYS.items():
            value = getattr(self, name)
            try:
                a = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"Trace.{name} expects an array of numbers, got {describe(value)}"
                ) from error
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
        """Mean loss over the last ``window`` finite steps (NaN if none).

        Raises:
            ValueError: ``window`` is not an integer >= 1.
        """
        window = expect_int(window, "window", 1)
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

        Raises:
            TypeError: ``record`` is not numbers or ``spec`` not a `RunSpec`.
            ValueError: ``record`` has the wrong shape, or ``framework`` is
                not one of `FRAMEWORKS`.
        """
        from explodebook.weights import layer_names

        # Checked here, before layer_names and the slicing use them.
        expect_spec(spec, "Trace.from_record(spec=...)")
        framework = check_framework(framework)
        try:
            record = np.asarray(record, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(
                "Trace.from_record() expects a 2-D array of numbers as record, "
                f"got {describe(record)}"
            ) from error
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
        arrays = {
            "loss": record[:, 0],
            "grad_norm_total": record[:, 1],
            "grad_norms": grad_norms,
            "clipped_grad_norms": clipped,
            "grad_max_abs": grad_max,
            "weight_norms": weight_norms,
        }
        return cls._located(arrays, spec=spec, framework=framework, layers=layers,
                            wall_time=wall_time)

    @classmethod
    def _located(cls, arrays: dict[str, np.ndarray], *, spec: RunSpec | None, framework: str,
                 layers: list[str], wall_time: float, extra: dict[str, Any] | None = None,
                 nonfinite: tuple[int | None, str | None, str | None] | None = None) -> Trace:
        """The trace of ``arrays``, its first non-finite step located (`locate_nonfinite`)."""
        step, kind, layer = nonfinite or locate_nonfinite(
            arrays["loss"], arrays["grad_norms"], arrays["weight_norms"], layers
        )
        return cls(
            spec=spec,
            framework=framework,
            layers=layers,
            **arrays,
            first_nonfinite_step=step,
            first_nonfinite_kind=kind,
            first_nonfinite_layer=layer,
            wall_time=float(wall_time),
            extra=extra if extra is not None else {},
        )

    @classmethod
    def from_parameter_record(
        cls,
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
        """Build a trace from a monitor's per-parameter record (both frameworks).

        The monitors (`explodebook.monitor`) record one column per
        parameter (variable) where the backends record one per layer, in the
        same order as `from_record`, without the total column.

        Args:
            values: ``(n, 1 + 4 * P)`` float64; each row is the loss, then
                ``P`` columns each of: gradient L2 norms, gradient L2 norms
                after clipping, largest ``|gradient element|`` and weight L2
                norms, one column per parameter.
            framework: ``"torch"`` or ``"keras"``.
            layers: the ``L`` layer names, input to output.
            owner: ``(P,)`` index of each parameter's layer.
            parameter_names: the ``P`` parameter names.
            spec: the run's `RunSpec` when the model is one of the book's
                runs rebuilt by hand; ``None`` (a model of your own) leaves
                the trace without one (``Trace.spec is None``).
            wall_time: seconds of training, for ``Trace.wall_time``.
            extra: more entries for ``Trace.extra`` (JSON-serialisable).

        Returns:
            the `Trace`. Layer norms combine their parameters' norms in
            float64 (``sqrt`` of the sum of squares), so a layer norm is
            finite exactly when its parameters' are; ``grad_norm_total``
            combines all of them the same way; the first non-finite step,
            kind and layer follow `locate_nonfinite`, and
            ``extra["first_nonfinite_parameter"]`` names the parameter by
            the same rule.

        Raises:
            ValueError: ``values`` has the wrong shape, or ``owner`` does
                not give a layer index for every parameter.
        """
        values = np.asarray(values, dtype=np.float64)
        arrays = combine_parameters(values, np.asarray(owner), len(layers), len(parameter_names))
        grad, weight = arrays.pop("grad"), arrays.pop("weight")
        step, kind, layer = locate_nonfinite(
            arrays["loss"], arrays["grad_norms"], arrays["weight_norms"], layers
        )
        info: dict[str, Any] = {
            "parameters": {
                name: [parameter_names[i] for i in np.flatnonzero(np.asarray(owner) == k)]
                for k, name in enumerate(layers)
            },
            "first_nonfinite_parameter": blame_parameter(
                step, kind, grad, weight, parameter_names
            ),
        }
        info.update(extra or {})
        return cls._located(arrays, spec=spec, framework=framework, layers=layers,
                            wall_time=wall_time, extra=info, nonfinite=(step, kind, layer))

    # -- persistence (npz + JSON, no pickle): explodebook.tracefile --------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the trace to one ``.npz`` file (arrays + a JSON header).

        See `explodebook.tracefile.save`.

        Raises:
            TypeError: ``path`` is not a file path.
        """
        from explodebook import tracefile

        tracefile.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        """Read a trace written by `save`, checking everything it reads.

        See `explodebook.tracefile.load` for what is checked and raised.
        """
        from explodebook import tracefile

        return tracefile.load(path)

    def equals(self, other: Trace, *, ignore_time: bool = True) -> bool:
        """True if both traces hold identical numbers (NaN equals NaN).

        Raises:
            TypeError: ``other`` is not a `Trace`.
        """
        expect_trace(other, "Trace.equals()")
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
        if self.spec is None:
            steps = f"{self.steps_run} steps of {self.extra.get('model', 'a monitored model')}"
        else:
            steps = f"{self.steps_run}/{self.spec.steps} steps"
        return f"<Trace {self.framework} {steps}, {state}>"


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
