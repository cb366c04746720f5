"""Do PyTorch and Keras agree? The specs both backends are compared on.

Both backends start from the same numpy initial weights (`explodebook.weights`)
and see the same batches (`explodebook.data`), so the same `RunSpec` must give
the same `Trace` in both, up to float32 rounding. This module holds the specs
that claim is checked on, once: ``tests/test_parity.py`` asserts the
agreement and the book's page "Do PyTorch and Keras agree?" shows the tables
computed from the same specs (`compare_steps`, `compare_outcome`).

Two kinds of agreement are checked:

- **step for step** (`STEP_SPECS`, a few steps each): every recorded
  quantity (`FIELDS`) agrees to `RTOL`, relative, at every step;
- **outcome** (`OUTCOME_SPECS`, full-length runs): over hundreds of steps
  rounding differences can grow (training is chaotic), so there only the
  outcome is compared: whether the run goes non-finite, and at which step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explodebook.spec import RunSpec
from explodebook.trace import Trace

__all__ = [
    "FIELDS",
    "OUTCOME_SPECS",
    "RTOL",
    "STEP_SPECS",
    "STEPS",
    "OutcomeRow",
    "StepRow",
    "compare_outcome",
    "compare_steps",
    "relative_difference",
]

#: Steps of the step-for-step comparison (enough for rounding to compound a
#: little, few enough that chaos has not amplified it).
STEPS = 5
#: Largest relative difference allowed in any recorded quantity at any step.
RTOL = 1e-4
#: The recorded per-step quantities compared (`Trace` fields).
FIELDS = (
    "loss", "grad_norm_total", "grad_norms", "clipped_grad_norms", "grad_max_abs", "weight_norms",
)  # fmt: skip

_RNN = {"model": "rnn", "seq_len": 12, "width": 8, "steps": STEPS}

#: The step-for-step specs, covering every model, cell, regularizer,
#: optimizer, clipping mode, normalization and schedule the backends implement.
STEP_SPECS: dict[str, RunSpec] = {
    "default mlp": RunSpec(steps=STEPS),
    "deep tanh mlp": RunSpec(
        depth=4, width=16, activation="tanh", init="xavier", task="regression-scaled", steps=STEPS
    ),
    "simple rnn": RunSpec(**_RNN),
    "relu simple rnn": RunSpec(activation="relu", **_RNN),
    "lstm": RunSpec(cell="lstm", **_RNN),
    "gru": RunSpec(cell="gru", **_RNN),
    "truncated lstm": RunSpec(cell="lstm", depth=2, truncation=4, **_RNN),
    "truncated gru": RunSpec(cell="gru", depth=2, truncation=3, **_RNN),
    "truncated simple rnn": RunSpec(truncation=1, **_RNN),
    "l2 mlp": RunSpec(l2=0.01, steps=STEPS),
    "l1 mlp": RunSpec(l1=0.01, task="regression-scaled", steps=STEPS),
    "l1 l2 gru": RunSpec(cell="gru", l1=1e-3, l2=1e-2, **_RNN),
    "adam mlp": RunSpec(optimizer="adam", learning_rate=1e-3, steps=STEPS),
    "adam lstm": RunSpec(cell="lstm", optimizer="adam", learning_rate=1e-2, **_RNN),
    "batch norm mlp": RunSpec(depth=3, width=16, normalization="batch", steps=STEPS),
    "layer norm mlp": RunSpec(depth=3, width=16, normalization="layer", steps=STEPS),
    "batch norm tanh l2 mlp": RunSpec(
        depth=3, width=16, activation="tanh", normalization="batch", l2=0.01,
        task="regression-scaled", steps=STEPS,
    ),
    "residual mlp": RunSpec(depth=4, width=16, residual=True, task="regression-scaled", steps=STEPS),
    "residual batch norm mlp": RunSpec(
        depth=4, width=16, residual=True, normalization="batch", task="regression-scaled",
        steps=STEPS,
    ),
    "residual layer norm mlp": RunSpec(
        depth=4, width=16, residual=True, normalization="layer", task="regression-scaled",
        steps=STEPS,
    ),
    "warm-up sgd": RunSpec(warmup_steps=3, momentum=0.0, steps=STEPS),
    "warm-up adam": RunSpec(warmup_steps=4, optimizer="adam", learning_rate=1e-2, steps=STEPS),
    "warm-up batch norm adam": RunSpec(
        depth=2, normalization="batch", warmup_steps=2, optimizer="adam", steps=STEPS
    ),
    # Clipping: these specs clip at every step (tests check that it acted).
    "clipnorm": RunSpec(clipnorm=1.0, steps=STEPS),
    "clipvalue": RunSpec(clipvalue=0.5, steps=STEPS),
    "global_clipnorm": RunSpec(global_clipnorm=1.0, steps=STEPS),
    "clipnorm lstm": RunSpec(cell="lstm", clipnorm=0.05, **_RNN),
}

#: The clipping specs of `STEP_SPECS`.
CLIPPED = ("clipnorm", "clipvalue", "global_clipnorm", "clipnorm lstm")

#: Full-length runs whose outcome must agree (the article's classic set-up,
#: which goes non-finite, and two ways of taming it).
OUTCOME_SPECS: dict[str, RunSpec] = {
    "classic (diverges)": RunSpec(),
    "scaled targets": RunSpec(task="regression-scaled"),
    "clipnorm=1.0": RunSpec(clipnorm=1.0),
}


def relative_difference(a: Trace, b: Trace, fields: tuple[str, ...] = FIELDS) -> float:
    """Largest relative difference between two traces over fields and steps.

    Args:
        a, b: traces of the same spec (``a`` is the reference, PyTorch by
            convention), each field of shape ``(steps,)`` or ``(steps, layers)``.
        fields: the `Trace` fields compared.

    Returns:
        ``max |b - a| / |a|`` over every finite entry with ``a != 0``;
        ``inf`` if the shapes or the places of non-finite values differ.
    """
    worst = 0.0
    for field in fields:
        x = np.asarray(getattr(a, field), dtype=np.float64)
        y = np.asarray(getattr(b, field), dtype=np.float64)
        if x.shape != y.shape or not np.array_equal(np.isfinite(x), np.isfinite(y)):
            return float("inf")
        both = np.isfinite(x) & (x != 0)
        if both.any():
            worst = max(worst, float(np.max(np.abs(y[both] - x[both]) / np.abs(x[both]))))
    return worst


@dataclass(frozen=True)
class StepRow:
    """One spec's step-for-step comparison (a row of the page's table)."""

    name: str
    steps: int
    difference: float  # relative_difference(torch, keras)

    @property
    def agree(self) -> bool:
        return self.difference <= RTOL


@dataclass(frozen=True)
class OutcomeRow:
    """One full-length spec's outcome in both frameworks."""

    name: str
    steps: int
    first_nonfinite: tuple[int | None, int | None]  # (torch, keras)
    final_loss: tuple[float, float]  # last finite loss, (torch, keras)

    @property
    def agree(self) -> bool:
        return self.first_nonfinite[0] == self.first_nonfinite[1]


def compare_steps(name: str, torch_trace: Trace, keras_trace: Trace) -> StepRow:
    """The step-for-step row of one spec, from its two traces."""
    return StepRow(name, torch_trace.steps_run, relative_difference(torch_trace, keras_trace))


def _last_finite(loss: np.ndarray) -> float:
    finite = np.asarray(loss)[np.isfinite(loss)]
    return float(finite[-1]) if finite.size else float("nan")


def compare_outcome(name: str, torch_trace: Trace, keras_trace: Trace) -> OutcomeRow:
    """The outcome row of one spec, from its two traces."""
    return OutcomeRow(
        name,
        torch_trace.steps_run,
        (torch_trace.first_nonfinite_step, keras_trace.first_nonfinite_step),
        (_last_finite(torch_trace.loss), _last_finite(keras_trace.loss)),
    )
