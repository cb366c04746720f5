"""Keras backend: ``run(spec)`` trains the network of a spec and records it into a `Trace`.

Written the Keras 3 way: ``keras.Sequential`` of ``Dense`` layers, or
``SimpleRNN`` / ``LSTM`` / ``GRU`` layers read out by a ``Dense`` head;
L1/L2 penalties as ``kernel_regularizer`` / ``recurrent_regularizer`` (so
they arrive in ``model.losses``); clipping configured on the optimizer
(``clipnorm``, ``clipvalue``, ``global_clipnorm``), which applies it inside
``apply_gradients``. Same public names as `explodebook.backends.torch`, and
the same trace for the same spec. The networks themselves (``build``,
``load_weights``, ``layer_weights``, ``RecurrentRegressor``) are built in
`explodebook.backends.keras_nets` and importable from here.

The training loop is a custom ``tf.GradientTape`` step rather than
``model.fit``, because every step records gradient norms before and after
clipping. For speed, many steps run inside one compiled ``tf.function``
(a ``tf.range`` loop); calling a compiled function once per step would cost
more than the tiny network's arithmetic. The compiled loop is kept, with its
model and optimizer, for the next run of a spec that differs only in values
(learning rate, seed, initialization, steps, target scaling), so that run
skips tracing. Each step's loss, gradients and weights leave the compiled
loop as one flat vector; their norms are computed afterwards, for a whole
chunk of steps at once (`explodebook.flat`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Keras 3 picks its backend when it is first imported; this module is written
# for TensorFlow (tf.GradientTape, tf.function), so import_tensorflow asks for
# it unless the user already chose one (explodebook.backends.keras_nets
# checks). It also loads torch (and triton) first when installed: triton
# loaded after TensorFlow crashes the process (explodebook.frameworks).
from explodebook.frameworks import import_tensorflow

import_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# The networks; importing them checks that Keras runs on TensorFlow.
from explodebook.backends import PUBLIC_NAMES  # noqa: E402
from explodebook.backends.common import TrainingLoop, run_within_budget  # noqa: E402
from explodebook.backends.keras_nets import (  # noqa: E402
    RecurrentRegressor,
    build,
    layer_weights,
    load_weights,
)
from explodebook.data import batch_indices, dataset_for  # noqa: E402
from explodebook.flat import FlatLayout, first_nonfinite_row  # noqa: E402
from explodebook.spec import RunSpec  # noqa: E402
from explodebook.trace import Trace  # noqa: E402
from explodebook.weights import initial_weights  # noqa: E402

__all__ = list(PUBLIC_NAMES)  # the same names, in the same order, in both

#: Steps per call of the compiled training loop. Between calls the run
#: checks for non-finite values, so a diverging run stops early.
CHUNK_STEPS = 200


@keras.saving.register_keras_serializable(package="explodebook")
class _LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear learning-rate warm-up: step ``t`` (from 0) uses
    ``learning_rate * min(1, (t + 1) / warmup_steps)``.

    Keras calls a schedule with the optimizer's ``iterations``, the number
    of updates already applied, so the first update uses ``t = 0``.
    """

    def __init__(self, learning_rate: float, warmup_steps: int) -> None:
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: Any) -> Any:
        t = keras.ops.cast(step, "float32")
        return self.learning_rate * keras.ops.minimum(1.0, (t + 1.0) / self.warmup_steps)

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


def make_optimizer(spec: RunSpec, weights: list[keras.Variable]) -> keras.optimizers.Optimizer:
    """The spec's optimizer, with its clipping mode configured on it, built for ``weights``.

    Building creates the optimizer's slots (momentum, Adam's moments) now:
    variables cannot be created inside the compiled training loop.
    """
    clip = dict([spec.clipping]) if spec.clipping else {}  # e.g. {"clipnorm": 1.0}
    learning_rate: float | _LinearWarmup = float(spec.learning_rate)
    if spec.warmup_steps:
        learning_rate = _LinearWarmup(spec.learning_rate, spec.warmup_steps)
    if spec.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=spec.momentum, **clip)
    else:
        # epsilon: PyTorch's default 1e-8 (Keras' is 1e-7). Keras adds it to
        # sqrt(v) before bias correction, PyTorch after, so tiny gradients
        # still step slightly differently.
        optimizer = keras.optimizers.Adam(
            learning_rate, beta_1=spec.momentum, beta_2=0.999, epsilon=1e-8, **clip
        )
    optimizer.build(weights)
    return optimizer


def applied_gradients(optimizer: keras.optimizers.Optimizer, grads: list[tf.Tensor]) -> list[tf.Tensor]:
    """The gradients ``optimizer.apply_gradients`` will actually apply.

    Keras 3 clips inside ``apply_gradients`` with the private method
    ``_clip_gradients`` (per-variable ``tf.clip_by_norm`` for ``clipnorm``,
    Keras' ``clip_by_global_norm``, ``clip`` for ``clipvalue``). Calling that
    same method records exactly what the optimizer applies, including its
    edge cases (a non-finite global norm makes every gradient NaN). Should a
    Keras version drop it, TensorFlow's public equivalents are used.
    """
    method = getattr(optimizer, "_clip_gradients", None)
    if method is not None:
        return list(method(grads))
    if optimizer.clipnorm:
        return [tf.clip_by_norm(g, optimizer.clipnorm) for g in grads]
    if optimizer.global_clipnorm:
        return tf.clip_by_global_norm(grads, optimizer.global_clipnorm)[0]
    if optimizer.clipvalue:
        return [tf.clip_by_value(g, -optimizer.clipvalue, optimizer.clipvalue) for g in grads]
    return list(grads)


@dataclass
class _Trainer:
    """A model, its optimizer and their compiled training loop, kept for reuse.

    ``train(X, y, idx)`` runs ``len(idx)`` steps (``idx``: ``(n, batch)``
    sample indices) and returns their ``(n, layout.width)`` float32 step
    vectors, which ``layout.rows`` reduces to the trace's record.
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    train: Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]
    layout: FlatLayout


def _make_trainer(spec: RunSpec, x_shape: tuple[int, ...]) -> _Trainer:
    model = build(spec)
    groups = layer_weights(model, spec)
    variables = [v for group in groups for v in group]
    optimizer = make_optimizer(spec, variables)
    mse = keras.losses.MeanSquaredError()
    clipping = spec.clipping is not None
    layout = FlatLayout.of([[v.shape for v in group] for group in groups], clipping)

    def step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = mse(yb, model(xb, training=True))
            # model.losses: the regularizers' penalties, recomputed from the
            # current weights on every access (empty without l1/l2).
            objective = sum(model.losses, loss)
        grads = tape.gradient(objective, variables)
        # The step's flat vector (`explodebook.flat`): loss, gradients and
        # weights (read before the update below), then the gradients as
        # the optimizer will clip them. One concat; the norms are computed
        # after the loop, for all steps at once.
        values = [loss, *grads, *variables, *(applied_gradients(optimizer, grads) if clipping else [])]
        flat = tf.constant([-1])  # one shape constant for all the reshapes
        row = tf.concat([v if len(v.shape) == 1 else tf.reshape(v, flat) for v in values], axis=0)
        # Raw gradients: the optimizer clips them itself.
        optimizer.apply_gradients(zip(grads, variables))
        return row

    @tf.function(
        input_signature=[
            tf.TensorSpec(x_shape, tf.float32),
            tf.TensorSpec((x_shape[0], 1), tf.float32),
            tf.TensorSpec((None, spec.batch_size), tf.int64),
        ],
        # Not jit_compile=True: XLA runs a warm MLP ~8x faster, but compiling
        # costs 1-3 s per network, more than a whole run takes without it.
    )
    def train(X: tf.Tensor, y: tf.Tensor, idx: tf.Tensor) -> tf.Tensor:
        n = tf.shape(idx)[0]
        rows = tf.TensorArray(tf.float32, size=n, element_shape=(layout.width,))
        for i in tf.range(n):
            rows = rows.write(i, step(tf.gather(X, idx[i]), tf.gather(y, idx[i])))
        return rows.stack()

    # Trace now, so that the trace's wall_time measures training only.
    train.get_concrete_function()
    return _Trainer(model, optimizer, train, layout)


# Spec fields that change the compiled graph. The others (learning rate,
# seed, initialization, steps, which regression target) only change values
# the graph reads: the weights, the optimizer's learning-rate variable and
# the data passed in. With a warm-up the learning rate is a constant of the
# schedule, inside the graph, so it joins the key (see `_trainer`).
_GRAPH_FIELDS = (
    "model", "depth", "width", "activation", "cell", "seq_len", "truncation",
    "optimizer", "momentum", "batch_size", "clipnorm", "clipvalue",
    "global_clipnorm", "l1", "l2", "normalization", "residual", "warmup_steps",
)  # fmt: skip
_TRAINERS: dict[tuple[Any, ...], _Trainer] = {}
_MAX_TRAINERS = 16


def clear_cache() -> None:
    """Forget the compiled training loops kept for reuse by `run`."""
    _TRAINERS.clear()


def _trainer(spec: RunSpec, x_shape: tuple[int, ...]) -> _Trainer:
    """A trainer for ``spec``, reset to the spec's initial state.

    Reusing a trainer avoids tracing the loop again (about a second); it is
    safe because every piece of state is reset: the weights, the
    optimizer's slots and step counter, and its learning rate.
    """
    warmup_rate = float(spec.learning_rate) if spec.warmup_steps else None
    key = (tuple(getattr(spec, f) for f in _GRAPH_FIELDS), warmup_rate, x_shape)
    trainer = _TRAINERS.pop(key, None)
    if trainer is None:
        trainer = _make_trainer(spec, x_shape)
    else:
        load_weights(trainer.model, spec, initial_weights(spec))
        for v in trainer.optimizer.variables:
            v.assign(tf.zeros(v.shape, v.dtype))
        if not spec.warmup_steps:  # a schedule's rate is part of the key
            trainer.optimizer.learning_rate = float(spec.learning_rate)
    _TRAINERS[key] = trainer  # most recently used last
    while len(_TRAINERS) > _MAX_TRAINERS:
        _TRAINERS.pop(next(iter(_TRAINERS)))
    return trainer


# The run's budget, progress bar and Ctrl-C handling. Imported here, apart
# from the framework imports above and their required order; it imports no
# framework itself.
from explodebook import budget  # noqa: E402


def run(
    spec: RunSpec, *, max_seconds: float | None = budget.DEFAULT, progress: bool | None = None
) -> Trace:
    """Train the Keras network of ``spec`` in compiled chunks of steps, into a `Trace`.

    `explodebook.run` without its cache (``max_seconds`` and ``progress``
    as there); a run over budget is refused with a ``BudgetError`` before
    anything is compiled. The compiled loop runs on past a non-finite value
    to the end of its chunk; with ``spec.stop_on_nonfinite`` the trace is
    cut at the first one, as PyTorch's is. The first Ctrl-C stops after the
    chunk under way (``RunInterrupted`` with the steps done), a second one
    at once, without a trace, and the half-run loop is not reused.
    """
    return run_within_budget(spec, "keras", _train, max_seconds, progress)


def _forget(trainer: _Trainer) -> None:
    # Drop a trainer from the cache of compiled loops.
    for key, kept in list(_TRAINERS.items()):
        if kept is trainer:
            del _TRAINERS[key]


def _train(spec: RunSpec, plan: budget.Plan) -> Trace:
    X_np, y_np = dataset_for(spec)
    # A KeyboardInterrupt inside _trainer leaves no trainer half reset in
    # the cache: it takes the trainer out while it resets it.
    trainer = _trainer(spec, X_np.shape)
    X, y = tf.constant(X_np), tf.constant(y_np)
    batches = batch_indices(len(X_np), spec.batch_size, spec.steps, seed=spec.seed)

    # Steps per call: CHUNK_STEPS, fewer if their step vectors would take
    # more than FLUSH_BYTES (large networks) or the call more than about
    # CHECK_SECONDS (between calls the run checks for Ctrl-C and moves the
    # progress bar). The number of steps per call does not change the trace.
    chunk = min(
        trainer.layout.steps_per_flush(CHUNK_STEPS),
        max(1, int(budget.CHECK_SECONDS / budget.step_seconds(spec, "keras"))),
    )
    chunks: list[np.ndarray] = [np.empty((0, 2 + 4 * len(trainer.layout.layer_sizes)))]
    loop = TrainingLoop(spec, "keras", plan)
    if loop.observed:  # a quarter of the chunks' time: a widget's first frame sooner
        chunk = max(1, chunk // 4)
    try:
        with loop.running() as stop:
            for first in range(0, spec.steps, chunk):
                if stop.requested:
                    break
                loop.bar.to(first)
                if first:
                    loop.report(lambda: np.concatenate(chunks))
                idx = tf.constant(batches[first : first + chunk], tf.int64)
                chunks.append(trainer.layout.rows(trainer.train(X, y, idx).numpy()))
                if spec.stop_on_nonfinite:
                    bad = first_nonfinite_row(chunks[-1])
                    if bad is not None:
                        # The compiled loop ran on past the first non-finite step;
                        # the record ends there, where the PyTorch loop stops.
                        chunks[-1] = chunks[-1][: bad + 1]
                        break
    except KeyboardInterrupt:
        # A second Ctrl-C may have stopped the loop half-way through a call:
        # do not reuse that model and optimizer.
        _forget(trainer)
        raise

    trace = Trace.from_record(np.concatenate(chunks), spec, "keras", loop.wall_time)
    return loop.finish(trace)  # after a first Ctrl-C: the steps done, as a trace
