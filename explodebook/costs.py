"""What runs cost at a given `Speed`: the model behind `explodebook.budget`.

Per step:

* a fixed dispatch cost per step, per layer and, for an RNN, per time step
  and layer (PyTorch runs eagerly, tens of microseconds per operation;
  Keras runs compiled chunks of steps, a little cheaper per operation);
* multiply-adds: the forward pass's (sum of fan_in x fan_out over layers;
  an RNN's per time step, times its cell's gate count: 1 simple, 3 GRU,
  4 LSTM) times ``batch_size``, three times over (forward, and backward for
  the inputs and the weights);
* a cost per parameter: the recording of every gradient and weight, their
  norms, and the optimizer's update. It grows past about 4 million
  parameters, where a step's arrays no longer fit the caches (and are
  allocated afresh each step): 7 ns per parameter at 1 million, 14 ns at
  7 million, 50-100 ns at 64 million, measured;

plus a set-up cost (initial weights, and Keras' tracing of its loop). The
constants were fitted to runs timed on the project's machines (2 cores of
an AMD EPYC, shared with other work, so on the slow side); `explodebook.budget`
scales them to the reader's machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from explodebook.checks import check_framework
from explodebook.spec import RunSpec
from explodebook.weights import GATES, input_size

__all__ = [
    "Costs",
    "COSTS",
    "Speed",
    "KNOBS",
    "reference_costs",
    "run_seconds",
    "step_seconds",
    "total_seconds",
    "fields_to_lower",
]


class Speed(NamedTuple):
    """Cost of three kinds of work on this machine relative to the reference
    machine (1.0: as fast; 2.0: twice as slow).

    Attributes:
        op: dispatching one small operation (Python and framework overhead).
        mac: one multiply-add of a matrix product.
        elem: one element of a memory-bound pass over an array.
    """

    op: float
    mac: float
    elem: float


#: ``(spec, framework)`` of each of several runs.
Runs = Sequence[tuple[RunSpec, str]]


@dataclass(frozen=True)
class Costs:
    """One framework's constants, in seconds on the reference machine.

    Attributes:
        step: per step: dispatch, batch gather, bookkeeping.
        layer: per layer per step: its forward and backward operations.
        timestep: per RNN layer and time step per step, by cell.
        mac: per multiply-add.
        param: per parameter per step, below 4 million parameters.
        setup: per run.
        setup_layer: per MLP layer per run.
        setup_rnn_layer: per RNN layer per run.
        setup_param: per parameter per run: initial weights, copies.
    """

    step: float
    layer: float
    timestep: Mapping[str, float]
    mac: float
    param: float
    setup: float
    setup_layer: float
    setup_rnn_layer: float
    setup_param: float


#: The constants of each framework.
COSTS = {
    # Eager: each layer's forward and backward are separate dispatches.
    # PyTorch's CPU LSTM takes a fused (oneDNN) path; its GRU does not.
    "torch": Costs(
        step=150e-6, layer=45e-6, timestep={"simple": 35e-6, "lstm": 25e-6, "gru": 140e-6},
        mac=0.04e-9, param=7e-9, setup=0.02, setup_layer=0.0, setup_rnn_layer=0.0,
        setup_param=30e-9,
    ),
    # Compiled chunks of steps: less Python per step, TensorFlow's two
    # threads for larger matrix products, and a graph to trace per shape.
    "keras": Costs(
        step=100e-6, layer=55e-6, timestep={"simple": 25e-6, "lstm": 55e-6, "gru": 100e-6},
        mac=0.025e-9, param=8e-9, setup=0.1, setup_layer=0.02, setup_rnn_layer=0.3,
        setup_param=60e-9,
    ),
}  # fmt: skip

# Past this many parameters, the cost per parameter grows as
# (n / _PARAM_KNEE) ** _PARAM_GROWTH (arrays leave the caches).
_PARAM_KNEE = 4e6
_PARAM_GROWTH = 0.75


def reference_costs(
    spec: RunSpec, framework: str, values: Mapping[str, int]
) -> tuple[float, float, float, float, float]:
    """Set-up and per-step costs of a run on the reference machine, by kind.

    Args:
        spec: the run.
        framework: ``"torch"`` or ``"keras"``.
        values: ``steps``, ``depth``, ``width``, ``batch_size`` and
            ``seq_len`` to cost it at (the spec's own, or lowered ones).

    Returns:
        ``(setup_op, setup_elem, step_op, step_mac, step_elem)`` seconds;
        a kind is scaled by the matching `Speed` factor.
    """
    c = COSTS[framework]
    depth, width, batch = values["depth"], values["width"], values["batch_size"]
    n_in = input_size(spec)
    extra = (
        1.0
        + 0.5 * (spec.normalization != "none")
        + 0.25 * bool(spec.l1 or spec.l2)
        + 0.25 * (spec.clipping is not None)
    )
    if spec.model == "mlp":
        macs = n_in * width + (depth - 1) * width * width + width  # per sample, forward
        params = macs + depth * width + 1
        if spec.normalization != "none":
            params += 2 * depth * width  # gamma and beta
        step_op = c.step + c.layer * (depth + 1) * extra
        step_mac = 3 * batch * macs * c.mac
        setup_op = c.setup + c.setup_layer * (depth + 1)
    else:
        gates = GATES[spec.cell]
        seq_len = values["seq_len"]
        k = min(spec.truncation or seq_len, seq_len)
        # Forward over all seq_len time steps, backward over the last k.
        passes = seq_len + 2 * k
        per_t = gates * width * (n_in + width) + (depth - 1) * gates * width * 2 * width
        biases = depth * gates * width * (2 if spec.cell == "gru" else 1)
        params = per_t + biases + width + 1
        step_op = c.step + c.layer * 2 * extra + c.timestep[spec.cell] * depth * passes / 3
        step_mac = batch * (per_t * passes + 3 * (width + 1)) * c.mac
        setup_op = c.setup + c.setup_rnn_layer * depth
    growth = max(1.0, params / _PARAM_KNEE) ** _PARAM_GROWTH
    step_elem = params * c.param * growth * (1.5 if spec.clipping is not None else 1.0)
    return setup_op, params * c.setup_param, step_op, step_mac, step_elem


#: Fields a refusal may suggest lowering, in the order they are tried.
KNOBS = ("steps", "depth", "width", "batch_size", "seq_len")


def run_seconds(
    spec: RunSpec, framework: str, speed: Speed, values: Mapping[str, int] | None = None
) -> float:
    """Estimated seconds of a run at ``speed``, its `KNOBS` at ``values`` (default: the spec's)."""
    values = {name: getattr(spec, name) for name in KNOBS} | dict(values or {})
    setup_op, setup_elem, step_op, step_mac, step_elem = reference_costs(spec, framework, values)
    per_step = step_op * speed.op + step_mac * speed.mac + step_elem * speed.elem
    return setup_op * speed.op + setup_elem * speed.elem + values["steps"] * per_step


def step_seconds(spec: RunSpec, framework: str) -> float:
    """Estimated seconds of one training step on the reference machine
    (no calibration): what the backends size their chunks of steps by."""
    check_framework(framework)
    values = {name: getattr(spec, name) for name in KNOBS}
    _, _, step_op, step_mac, step_elem = reference_costs(spec, framework, values)
    return step_op + step_mac + step_elem


def total_seconds(runs: Runs, speed: Speed, caps: Mapping[str, int] | None = None) -> float:
    """Estimated seconds of all ``runs`` at ``speed``, each field in ``caps`` capped there."""
    total = 0.0
    for spec, framework in runs:
        values = None
        if caps:
            values = {name: min(cap, getattr(spec, name)) for name, cap in caps.items()}
        total += run_seconds(spec, framework, speed, values)
    return total


def fields_to_lower(runs: Runs, speed: Speed, limit: float) -> list[tuple[str, int | None]]:
    """Fields to lower, most effective first, with the largest value that fits.

    A field's effect is how much halving it (in every run) cuts the total;
    ``None`` as the value: lowering this field alone cannot fit the budget.
    Fields whose halving saves under a fifth of the time are left out.
    """
    total = total_seconds(runs, speed)
    found = []
    for name in KNOBS:
        if name == "seq_len" and all(spec.model != "rnn" for spec, _ in runs):
            continue
        top = max(getattr(spec, name) for spec, _ in runs)
        if top <= 1:
            continue
        saving = 1 - total_seconds(runs, speed, {name: max(1, top // 2)}) / total
        if saving < 0.2:
            continue
        fits: int | None = None
        if total_seconds(runs, speed, {name: 1}) <= limit:
            low, high = 1, top  # the total fits at low, not at high
            while high - low > 1:
                mid = (low + high) // 2
                if total_seconds(runs, speed, {name: mid}) <= limit:
                    low = mid
                else:
                    high = mid
            fits = low
        found.append((name, fits, saving))
    found.sort(key=lambda item: -item[2])
    return [(name, fits) for name, fits, _ in found]
