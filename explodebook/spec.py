"""`RunSpec`: everything that defines one training run, validated on creation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from explodebook.checks import expect, plain

__all__ = ["RunSpec", "SpecError", "CHOICES", "NORM_EPSILON", "BATCH_NORM_MOMENTUM", "check_choice"]

#: Allowed values of the string-valued fields.
CHOICES: dict[str, tuple[str, ...]] = {
    "model": ("mlp", "rnn"),
    "activation": ("relu", "tanh", "sigmoid", "linear"),
    "init": ("he", "xavier", "normal", "orthogonal"),
    "cell": ("simple", "lstm", "gru"),
    "task": ("regression", "regression-scaled", "adding"),
    "optimizer": ("sgd", "adam"),
    "normalization": ("none", "batch", "layer"),
}

# Which task each model can learn: an MLP takes flat feature vectors, an RNN
# takes sequences.
_TASKS_FOR_MODEL = {
    "mlp": ("regression", "regression-scaled"),
    "rnn": ("adding",),
}

# Upper bounds that keep one run within seconds on a 2-core CPU; they are
# there to stop a typo (depth=1000) from hanging a notebook, not to forbid
# experiments: raise them here if you need to.
_LIMITS = {
    "depth": 64,
    "width": 1024,
    "seq_len": 2000,
    "batch_size": 1000,
    "steps": 100_000,
}


#: Epsilon of both normalization layers of ``normalization="batch"`` /
#: ``"layer"`` (Keras' default; PyTorch's is 1e-5): one value for both
#: frameworks, so that their runs agree.
NORM_EPSILON = 1e-3
#: Batch normalization's moving-statistics momentum in Keras' convention
#: (the weight of the old value); PyTorch's ``momentum`` is ``1 -`` this.
BATCH_NORM_MOMENTUM = 0.99


class SpecError(ValueError):
    """A `RunSpec` field has a value that is not allowed.

    The message names the field, the value given and what is allowed.
    """


@dataclass(frozen=True)
class RunSpec:
    """One training run, framework-neutral.

    The same spec given to `explodebook.backends.torch.run` and
    `explodebook.backends.keras.run` builds the same network from the same
    initial weights, trains it on the same batches in the same order, and
    records the same quantities.

    The defaults are the classic exploding set-up of the source article's
    companion tutorial: an MLP with one hidden layer of 25 ReLU units,
    He-uniform initialization, on an unscaled regression target, trained
    with SGD (learning rate 0.01, momentum 0.9) in batches of 32 for 1600
    steps (100 epochs of 500 samples).

    Numpy scalars are accepted wherever Python values are (``np.int64`` for
    an integer field; ``np.float32``, ``np.float64`` or a numpy integer for
    a number field; ``np.bool_`` for ``residual`` and ``stop_on_nonfinite``)
    and stored as the Python values they hold. Bools, numpy's included, are
    not numbers here: ``depth=True`` is refused.

    Attributes:
        model: ``"mlp"`` (dense layers) or ``"rnn"`` (recurrent layers).
        depth: number of hidden layers (MLP) or stacked recurrent layers
            (RNN), at least 1.
        width: units per hidden layer (MLP) or hidden size (RNN).
        activation: hidden activation of the MLP and of the ``"simple"``
            RNN cell (which takes ``"tanh"`` or ``"relu"`` only); ``None``
            picks ``"relu"`` for an MLP and ``"tanh"`` for an RNN. LSTM and
            GRU cells use their standard gates, so for them it must be
            ``None`` or ``"tanh"``.
        init: how every weight matrix is initialized (biases start at 0):
            ``"he"`` uniform on +-sqrt(6 / fan_in), ``"xavier"`` (Glorot)
            uniform on +-sqrt(6 / (fan_in + fan_out)), ``"normal"``
            N(0, 1 / fan_in), ``"orthogonal"`` a (semi-)orthogonal matrix.
        init_scale: factor applied to every initial weight matrix. For
            ``"orthogonal"`` it is the gain: every singular value equals it.
        cell: RNN cell, ``"simple"`` (Elman), ``"lstm"`` or ``"gru"``.
        seq_len: sequence length of the ``"adding"`` task.
        truncation: truncated backpropagation through time: gradients flow
            through the last ``truncation`` time steps only. ``None`` means
            full backpropagation through time.
        task: ``"regression"`` (20 features, unscaled target: the classic
            set-up), ``"regression-scaled"`` (same data, standardized
            target) or ``"adding"`` (the adding problem).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        learning_rate: step size, > 0.
        momentum: SGD momentum in [0, 1). For Adam it is ``beta_1``, the
            decay of Adam's running mean of gradients (its own momentum),
            whose usual value 0.9 is also this field's default.
        batch_size: samples per step.
        steps: number of optimizer updates.
        clipnorm: clip each variable's gradient to this L2 norm (Keras
            ``clipnorm``: per variable, not global).
        clipvalue: clip every gradient element to [-clipvalue, clipvalue].
        global_clipnorm: rescale all gradients together so their global L2
            norm is at most this (Keras ``global_clipnorm``, PyTorch
            ``clip_grad_norm_``). At most one clipping mode is allowed.
        l1: L1 penalty ``l1 * sum|W|`` on every kernel and recurrent kernel.
        l2: L2 penalty ``l2 * sum W**2`` on every kernel and recurrent
            kernel (Keras' convention: no factor 1/2).
        normalization: ``"none"``, ``"batch"`` (batch normalization) or
            ``"layer"`` (layer normalization) after every hidden dense layer
            of an MLP, before its activation: Dense -> Norm -> activation.
            Both frameworks use epsilon 1e-3 (Keras' default; PyTorch's is
            1e-5) and, for batch normalization, moving statistics updated
            with momentum 0.99 in Keras' convention (PyTorch
            ``momentum=0.01``). Training uses the batch's own statistics;
            the moving statistics are not trainable and not recorded. The
            norm layer's ``gamma``/``beta`` belong to the hidden layer's
            group in a trace. MLP only.
        residual: MLP only: hidden layers 2..``depth`` (those whose input
            has the layer's own width) add their input to their output,
            ``h_l = h_{l-1} + act(norm(h_{l-1} W_l + b_l))``. Needs
            ``depth >= 2``.
        warmup_steps: linear learning-rate warm-up: step ``t`` (from 0)
            uses ``learning_rate * min(1, (t + 1) / warmup_steps)``, so the
            rate rises from ``learning_rate / warmup_steps`` to
            ``learning_rate`` over the first ``warmup_steps`` steps and
            stays there. 0 (the default) means no warm-up.
        stop_on_nonfinite: stop the run at the first step where the loss,
            a gradient or a weight is NaN or infinite (the trace says so).
            ``False`` keeps training, to show that NaN never goes away.
        seed: seeds the data, the initial weights and the batch order.
    """

    model: str = "mlp"
    depth: int = 1
    width: int = 25
    activation: str | None = None
    init: str = "he"
    init_scale: float = 1.0
    cell: str = "simple"
    seq_len: int = 20
    truncation: int | None = None
    task: str | None = None
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    batch_size: int = 32
    steps: int = 1600
    clipnorm: float | None = None
    clipvalue: float | None = None
    global_clipnorm: float | None = None
    l1: float = 0.0
    l2: float = 0.0
    normalization: str = "none"
    residual: bool = False
    warmup_steps: int = 0
    stop_on_nonfinite: bool = True
    seed: int = 1

    def __post_init__(self) -> None:
        # Numpy scalars (from np.arange, np.linspace, an array element)
        # become the Python values they hold, so that a spec built from
        # them compares, hashes and serialises exactly like one built from
        # Python numbers; validation below still refuses bools in number
        # fields, numpy bools included.
        for f in fields(self):
            value = getattr(self, f.name)
            converted = plain(value)
            if converted is not value:
                object.__setattr__(self, f.name, converted)
        # Resolve model-dependent defaults first, so that the validated and
        # stored spec is explicit (and two specs that mean the same run
        # compare and hash equal).
        if self.activation is None:
            object.__setattr__(
                self, "activation", "relu" if self.model == "mlp" else "tanh"
            )
        if self.task is None:
            object.__setattr__(
                self, "task", "regression" if self.model == "mlp" else "adding"
            )
        _validate(self)

    # -- convenience -----------------------------------------------------

    def replace(self, **changes: Any) -> RunSpec:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunSpec:
        """Inverse of `to_dict`; unknown keys raise `SpecError`.

        Raises:
            TypeError: ``values`` is not a mapping.
            SpecError: a key is not a field, or a value is not allowed.
        """
        expect(
            values,
            Mapping,
            "RunSpec.from_dict()",
            "a dict of RunSpec fields (as RunSpec.to_dict() returns)",
        )
        known = {f.name for f in fields(cls)}
        # key=str: keys of mixed types (a stray int) still sort.
        unknown = sorted(set(values) - known, key=str)
        if unknown:
            raise SpecError(
                f"unknown RunSpec field(s) {unknown}; allowed: {sorted(known)}"
            )
        return cls(**values)

    @property
    def clipping(self) -> tuple[str, float] | None:
        """The clipping mode in use as ``(name, threshold)``, or ``None``."""
        for name in ("clipnorm", "clipvalue", "global_clipnorm"):
            value = getattr(self, name)
            if value is not None:
                return name, float(value)
        return None


def _fail(name: str, value: Any, allowed: str) -> None:
    raise SpecError(f"RunSpec.{name}={value!r} is not allowed: {allowed}")


def _check_int(spec: RunSpec, name: str, low: int, high: int | None) -> None:
    value = getattr(spec, name)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, value, f"expected an integer between {low} and {high}")
    if value < low or (high is not None and value > high):
        _fail(name, value, f"expected an integer between {low} and {high}")


def _check_float(
    spec: RunSpec,
    name: str,
    *,
    low: float,
    low_open: bool,
    high: float | None = None,
    high_open: bool = True,
    optional: bool = False,
) -> None:
    value = getattr(spec, name)
    lo = "(" if low_open else "["
    hi = ")" if high_open or high is None else "]"
    allowed = f"expected a finite number in {lo}{low}, {high if high is not None else 'inf'}{hi}"
    if optional:
        allowed += " or None"
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(name, value, allowed)
    if not math.isfinite(value):
        _fail(name, value, allowed)
    if value < low or (low_open and value == low):
        _fail(name, value, allowed)
    if high is not None and (value > high or (high_open and value == high)):
        _fail(name, value, allowed)


def check_choice(
    name: str, value: Any, argument: str | None = None, error: type[ValueError] = ValueError
) -> str:
    """Return ``value`` as a plain ``str`` if it is one of ``CHOICES[name]``.

    The one check of the string-valued choices (activation, init, cell,
    optimizer, ...), for `RunSpec` and for every function that takes one
    of them by name.

    Args:
        name: a key of `CHOICES`, e.g. ``"activation"``.
        value: the name given.
        argument: how the message names the argument; default ``name``.
        error: the class raised, e.g. `SpecError` for a `RunSpec` field.

    Raises:
        ValueError: ``"activation='swish' is not allowed: choose one of
            ['relu', 'tanh', 'sigmoid', 'linear']"``.
    """
    allowed = CHOICES[name]
    value = plain(value)
    # isinstance first: `in` would compare a list or an array by equality.
    if not (isinstance(value, str) and value in allowed):
        raise error(
            f"{argument or name}={value!r} is not allowed: choose one of {list(allowed)}"
        )
    return str(value)


def _validate(spec: RunSpec) -> None:
    for name in CHOICES:
        check_choice(name, getattr(spec, name), f"RunSpec.{name}", SpecError)

    tasks = _TASKS_FOR_MODEL[spec.model]
    if spec.task not in tasks:
        _fail("task", spec.task, f"model={spec.model!r} takes task in {list(tasks)}")
    if spec.model == "rnn" and spec.cell != "simple" and spec.activation != "tanh":
        _fail(
            "activation",
            spec.activation,
            f"the {spec.cell!r} cell uses its standard tanh/sigmoid gates; "
            "leave activation=None (or 'tanh'), or use cell='simple'",
        )

    if spec.model == "rnn" and spec.cell == "simple" and spec.activation not in ("tanh", "relu"):
        _fail(
            "activation",
            spec.activation,
            "a simple RNN cell takes 'tanh' or 'relu' (the two PyTorch's nn.RNN offers)",
        )

    for name in ("depth", "width", "seq_len", "batch_size", "steps"):
        _check_int(spec, name, 1, _LIMITS[name])
    if spec.truncation is not None:
        _check_int(spec, "truncation", 1, spec.seq_len)
        if spec.model != "rnn":
            _fail("truncation", spec.truncation, "truncated BPTT needs model='rnn'; use None")

    if spec.task in ("regression", "regression-scaled"):
        from explodebook.data import REGRESSION_TRAIN_SIZE

        if spec.batch_size > REGRESSION_TRAIN_SIZE:
            _fail(
                "batch_size",
                spec.batch_size,
                f"at most the {REGRESSION_TRAIN_SIZE} training samples",
            )

    _check_float(spec, "init_scale", low=0.0, low_open=True, high=1e6)
    _check_float(spec, "learning_rate", low=0.0, low_open=True, high=1e3)
    _check_float(spec, "momentum", low=0.0, low_open=False, high=1.0)
    for name in ("clipnorm", "clipvalue", "global_clipnorm"):
        _check_float(spec, name, low=0.0, low_open=True, optional=True)
    set_clips = [
        n for n in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(spec, n) is not None
    ]
    if len(set_clips) > 1:
        raise SpecError(
            f"RunSpec sets {len(set_clips)} clipping modes {set_clips}; "
            "at most one of clipnorm, clipvalue, global_clipnorm is allowed"
        )
    for name in ("l1", "l2"):
        _check_float(spec, name, low=0.0, low_open=False, high=1e3)
    if spec.normalization != "none" and spec.model != "mlp":
        _fail(
            "normalization",
            spec.normalization,
            "normalization layers are implemented for model='mlp' only; use 'none'",
        )
    if not isinstance(spec.residual, bool):
        _fail("residual", spec.residual, "expected True or False")
    if spec.residual and spec.model != "mlp":
        _fail("residual", spec.residual, "residual connections need model='mlp'; use False")
    if spec.residual and spec.depth < 2:
        _fail(
            "residual",
            spec.residual,
            f"with depth={spec.depth} no hidden layer has an input of its own width "
            "to skip over; use depth >= 2 or residual=False",
        )
    _check_int(spec, "warmup_steps", 0, _LIMITS["steps"])
    if not isinstance(spec.stop_on_nonfinite, bool):
        _fail("stop_on_nonfinite", spec.stop_on_nonfinite, "expected True or False")
    _check_int(spec, "seed", 0, 2**32 - 1)
