"""`GradientMonitor`: a Keras 3 callback that records per-layer gradient norms.

Add it to the callbacks of ``fit``; the model's code does not change::

    monitor = GradientMonitor()
    model.fit(x, y, epochs=5, batch_size=32, callbacks=[monitor])
    trace = monitor.trace()                   # an explodebook.Trace
    explodebook.diagnose(trace)

Callbacks never see gradients: Keras 3 computes and applies them inside
the compiled ``train_step``. So for the duration of ``fit`` the monitor
wraps two methods of *this* model and optimizer instance (not their
classes), and asks ``fit`` to trace its training function again so that the
wrappers are compiled into it:

- ``optimizer.apply`` (which ``apply_gradients`` calls), where the
  gradients arrive: before handing them on it computes, in the graph, the
  L2 norm and largest element of every variable's gradient, the norm after
  the optimizer's own clipping (``clipnorm``, ``clipvalue``,
  ``global_clipnorm``, through the optimizer's ``_clip_gradients``, the
  same as `explodebook.backends.keras`) and every variable's weight norm
  before the update, all with fused segment reductions
  (`LayerReducer`), in float64;
- the model's compiled loss (``model._compile_loss.call``, the loss given
  to ``compile``), to take each batch's data loss *without* the
  regularization penalties of ``model.losses``, as the `Trace` contract
  says (and the PyTorch monitor records); ``model.compute_loss``, whose
  value (penalties included) is used only for a model without a compiled
  loss that overrides ``compute_loss`` itself. ``logs["loss"]`` is not used:
  in Keras 3 it is the running mean over the epoch so far, penalties
  included, not the batch's loss.

Each step's row is written into a ring buffer (a ``tf.Variable``) inside
the compiled step; the callback reads the buffer in bulk, once every few
hundred steps and at the end of training, so no batch waits for a
device-to-host copy and ``fit`` keeps dispatching its batch-end callbacks
asynchronously (the monitor defines no ``on_train_batch_end``). At
``on_train_end`` the original methods are restored and the training
function is dropped, so the next ``fit`` traces a clean one.

Cost: a few dozen small ops per step inside the compiled step (about two
per variable, plus a fixed twenty); and one tracing of the training
function per ``fit`` call (about a second on a small model), which a
model's first ``fit`` pays anyway.

Works with ``jit_compile`` off and on, with ``steps_per_execution`` of 1 or
more, with ``run_eagerly=True``, and across several epochs and several
``fit`` calls (the steps accumulate; ``reset()`` forgets them), also for
subclassed models that create their variables on their first call. A layer is a
Keras layer that directly owns trainable variables, named by its path
(``variable.path`` without the variable's name, and without the model's
own name when every variable shares it), in the order of
``model.trainable_variables``. Not supported: distribution strategies with
several replicas, and ``LossScaleOptimizer`` (its ``apply`` receives the
scaled gradients; the monitor would record them scaled).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

# Importing the Keras backend chooses TensorFlow for Keras (unless the user
# chose), quietens TensorFlow's C++ log, and imports torch before
# TensorFlow when torch is installed (see explodebook.backends.get).
from explodebook.backends.keras import applied_gradients  # noqa: I001
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from explodebook.monitor.keras_steps import LayerReducer  # noqa: E402
from explodebook.spec import RunSpec  # noqa: E402
from explodebook.trace import Trace  # noqa: E402


__all__ = ["GradientMonitor", "layer_groups"]


def layer_groups(model: keras.Model) -> dict[str, list[Any]]:
    """Trainable variables grouped by the layer that directly owns them.

    Returns:
        ``{layer name: [variable, ...]}`` in ``model.trainable_variables``
        order. A layer's name is its variables' path without the variable
        name (``"sequential/dense"``), with a first component shared by
        every variable (the model's name) removed (``"dense"``).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"GradientMonitor needs a keras.Model, got {type(model).__name__}")
    variables = list(model.trainable_variables)
    if not variables:
        raise ValueError(
            f"{type(model).__name__} {model.name!r} has no trainable variables to monitor "
            "(build it first, e.g. with keras.Input, or by calling it on a batch)"
        )
    owners = [v.path.rsplit("/", 1)[0] if "/" in v.path else model.name for v in variables]
    heads = {o.split("/", 1)[0] for o in owners}
    if len(heads) == 1 and all("/" in o for o in owners):
        owners = [o.split("/", 1)[1] for o in owners]
    groups: dict[str, list[Any]] = {}
    for owner, v in zip(owners, variables):
        groups.setdefault(owner, []).append(v)
    return groups


class GradientMonitor(keras.callbacks.Callback):
    """Record per-layer gradient and weight norms of every step of ``fit``.

    Args:
        spec: the `RunSpec` the trace should carry, when you rebuilt one of
            the book's runs; by default none (``trace.spec is None``): a
            model of your own has no spec.
        capacity: rows of the on-device ring buffer; the callback reads it
            every ``capacity // 2`` steps (at least ``2 * steps_per_execution``
            rows are used).
    """

    def __init__(self, *, spec: RunSpec | None = None, capacity: int = 1024) -> None:
        super().__init__()
        if spec is not None and not isinstance(spec, RunSpec):
            raise TypeError(f"spec must be a RunSpec or None, got {type(spec).__name__}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 2:
            raise ValueError(f"capacity must be an integer >= 2, got {capacity!r}")
        self.spec = spec
        self.capacity = capacity
        self.layers: list[str] = []
        self.parameter_names: list[str] = []
        self.owner = np.zeros(0, int)
        self._variables: list[Any] = []
        self._rows: list[np.ndarray] = []
        self._read = 0  # rows read from the buffer so far
        self._buffer: tf.Variable | None = None
        self._counter: tf.Variable | None = None
        self._loss_missing = False  # set while tracing a step that saw no loss
        self._patched: list[tuple[Any, str, bool, Any]] = []
        self._pending_loss: Any = None
        self._data_loss: Any = None  # the compiled loss of the step being traced
        self._calls = 0
        self._spe = 1
        self._flush_every = 1
        self._ready = False
        self._start = 0.0
        self._elapsed = 0.0
        self.model_name = ""

    # -- public API ---------------------------------------------------------

    @property
    def steps_recorded(self) -> int:
        """Steps read from the device so far (all of them after ``fit``)."""
        return sum(len(r) for r in self._rows)

    def trace(self) -> Trace:
        """The recorded steps as a `Trace` (framework ``"keras"``)."""
        self._flush()
        if not self._rows or self.steps_recorded == 0:
            raise ValueError(
                "the monitor recorded no step: pass it to model.fit(..., callbacks=[monitor])"
            )
        if self._loss_missing:
            raise ValueError(
                "the monitor saw no loss: the model's train_step did not call "
                "compute_loss (a custom train_step should call self.compute_loss)"
            )
        return Trace.from_parameter_record(
            np.concatenate(self._rows),
            framework="keras",
            layers=self.layers,
            owner=self.owner,
            parameter_names=self.parameter_names,
            spec=self.spec,
            wall_time=self._elapsed,
            extra={"source": "explodebook.monitor.keras", "model": self.model_name},
        )

    def reset(self) -> None:
        """Forget the recorded steps."""
        self._flush()
        self._rows = []
        self._elapsed = 0.0
        self._loss_missing = False

    def close(self) -> None:
        """Restore the model's and optimizer's own methods (``fit`` does it at the end).

        Only needed if ``fit`` stopped with an exception. Idempotent.
        """
        for obj, name, had_own, original in reversed(self._patched):
            if had_own:
                object.__setattr__(obj, name, original)
            else:
                object.__delattr__(obj, name)
        if self._patched and self.model is not None:
            # The compiled training function holds the wrappers: drop it.
            self.model.train_function = None
        self._patched = []

    def __repr__(self) -> str:
        return (
            f"<GradientMonitor (Keras) {self.model_name or 'unattached'}: "
            f"{len(self.layers)} layers, {self.steps_recorded} steps read>"
        )

    # -- callback hooks -------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        model = self.model
        if model.optimizer is None:
            raise ValueError("the model has no optimizer: compile it before fit")
        self._flush()  # rows left by a fit that ended with an exception
        self.close()  # and its wrappers
        self._spe = int(getattr(model, "steps_per_execution", 1) or 1)
        self._flush_every = max(1, (max(self.capacity, 2 * self._spe) // 2) // self._spe)
        self._calls = 0
        self._ready = False
        if model.trainable_variables:
            self._setup()
        # else: a subclassed model creates its variables in its first call,
        # inside the traced training step; the apply wrapper sets up then.
        self._patch(model.optimizer, "apply", self._wrap_apply(model.optimizer.apply))
        self._patch(model, "compute_loss", self._wrap_compute_loss(model.compute_loss))
        compiled = getattr(model, "_compile_loss", None)
        if compiled is not None:
            self._patch(compiled, "call", self._wrap_data_loss(compiled.call))
        # fit made its training function before calling on_train_begin; make
        # it again, so that it is traced (on its first call) with the wrappers.
        model.make_train_function(force=True)
        self._start = time.perf_counter()

    def _setup(self) -> None:
        """Group the variables into layers and make the buffer (eagerly)."""
        model = self.model
        groups = layer_groups(model)
        variables = [v for group in groups.values() for v in group]
        if self._variables and [id(v) for v in variables] != [id(v) for v in self._variables]:
            if self._rows:
                raise ValueError(
                    "this monitor holds steps of another model (or other trainable "
                    "variables): use a new GradientMonitor, or call reset() first"
                )
            self._buffer = None
        optimizer = model.optimizer
        self.model_name = model.name
        self.layers = list(groups)
        self._variables = variables
        self.parameter_names = [v.path for v in variables]
        self.owner = np.array([k for k, group in enumerate(groups.values()) for _ in group])
        self._index = {id(v): i for i, v in enumerate(variables)}
        # One segment per variable: per-variable norms, summed per layer at
        # the end, so the trace can also name the first non-finite variable.
        self._reducer = LayerReducer([[v] for v in variables])
        self._clipping = bool(
            optimizer.clipnorm or optimizer.clipvalue or optimizer.global_clipnorm
        )
        size = max(self.capacity, 2 * self._spe)
        width = 1 + 4 * len(variables)
        if self._buffer is None or tuple(self._buffer.shape) != (size, width):
            self._buffer = tf.Variable(tf.zeros((size, width), tf.float64), trainable=False)
            self._counter = tf.Variable(0, dtype=tf.int64, trainable=False)
            self._read = 0
        self._ready = True

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Not on_train_batch_end: defining it would make fit convert every
        # batch's logs to Python numbers, a device sync per batch.
        self._calls += 1
        if self._calls >= self._flush_every:
            self._flush()
            self._calls = 0

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._elapsed += time.perf_counter() - self._start
        self._flush()
        self.close()

    # -- internals ------------------------------------------------------------

    def _patch(self, obj: Any, name: str, wrapper: Any) -> None:
        had_own = name in vars(obj)
        self._patched.append((obj, name, had_own, vars(obj).get(name)))
        object.__setattr__(obj, name, wrapper)

    def _wrap_compute_loss(self, original: Any) -> Any:
        def compute_loss(*args: Any, **kwargs: Any) -> Any:
            self._data_loss = None
            loss = original(*args, **kwargs)
            # The compiled loss alone if it ran (no penalties), else the
            # whole value (a model that computes its loss its own way).
            self._pending_loss = loss if self._data_loss is None else self._data_loss
            self._data_loss = None
            return loss

        return compute_loss

    def _wrap_data_loss(self, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            loss = original(*args, **kwargs)
            self._data_loss = loss
            return loss

        return call

    def _wrap_apply(self, original: Any) -> Any:
        optimizer = self.model.optimizer

        def apply(grads: Any, trainable_variables: Any = None) -> Any:
            variables = (
                list(trainable_variables)
                if trainable_variables is not None
                else list(optimizer._trainable_variables)
            )
            self._record(list(grads), variables)
            return original(grads, trainable_variables)

        return apply

    def _record(self, grads: list[Any], variables: list[Any]) -> None:
        """The in-graph part: one row of per-variable norms into the buffer."""
        if not self._ready:
            with tf.init_scope():  # create the buffer outside the graph
                self._setup()
        given = {self._index[id(v)]: g for g, v in zip(grads, variables) if id(v) in self._index}
        ours = [
            given[i] if given.get(i) is not None else tf.zeros(v.shape, v.dtype)
            for i, v in enumerate(self._variables)
        ]
        loss = self._pending_loss
        self._pending_loss = None
        if loss is not None and _same_graph(loss):
            loss = tf.reshape(tf.cast(loss, tf.float64), [1])
        else:  # known while tracing, so no op is needed to remember it
            self._loss_missing = True
            loss = tf.constant([np.nan], tf.float64)
        self._write_row(loss, ours)

    def _write_row(self, loss: tf.Tensor, grads: list[tf.Tensor]) -> None:
        # About 2P + 20 small ops (P variables), the same whatever the
        # model's size: on a tiny model their dispatch is the monitor's cost.
        # (Compiling them as one nested XLA cluster was measured no faster on
        # the CPU.)
        grad_norms, grad_max, weight_norms = self._reducer.record(grads, self._variables)
        clipped = grad_norms
        if self._clipping:  # what the optimizer will apply, clipped its own way
            clipped = self._reducer.l2(applied_gradients(self.model.optimizer, grads))
        # The layout of Trace.from_parameter_record, one column per variable.
        row = tf.concat([loss, grad_norms, clipped, grad_max, weight_norms], axis=0)
        size = self._buffer.shape[0]
        self._buffer.scatter_nd_update([[self._counter % size]], row[None])
        self._counter.assign_add(1)

    def _flush(self) -> None:
        """Copy the rows written since the last read from the device."""
        if self._counter is None:
            return
        written = int(self._counter.numpy())
        new = written - self._read
        if new <= 0:
            return
        size = self._buffer.shape[0]
        if new > size:
            raise RuntimeError(
                f"{new - size} steps were overwritten before they were read: "
                "raise GradientMonitor(capacity=...)"
            )
        buffer = self._buffer.numpy()
        self._rows.append(buffer[np.arange(self._read, written) % size])
        self._read = written


def _same_graph(tensor: Any) -> bool:
    # The loss kept by the compute_loss wrapper belongs to the step being
    # traced (or is eager, with run_eagerly=True); a loss left over from
    # another function (evaluation) does not.
    if tf.executing_eagerly():
        return True
    try:
        return tensor.graph is tf.compat.v1.get_default_graph()
    except AttributeError:
        return False
