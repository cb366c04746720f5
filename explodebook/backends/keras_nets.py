"""The Keras network of a `RunSpec`: build it, load its initial weights, group them by layer.

``keras.Sequential`` of ``Dense`` layers, or ``SimpleRNN`` / ``LSTM`` /
``GRU`` layers read out by a ``Dense`` head, with L1/L2 penalties as
``kernel_regularizer`` / ``recurrent_regularizer``; the same names,
signatures and order as `explodebook.backends.torch_nets`.
"""

from __future__ import annotations

from typing import Any

# Keras 3 picks its backend when it is first imported; these networks are
# written for TensorFlow, so import_tensorflow asks for it unless the user
# already chose one (checked below). It also loads torch (and triton) first
# when installed: triton loaded after TensorFlow crashes the process
# (explodebook.frameworks).
from explodebook.frameworks import import_tensorflow

import_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from explodebook.spec import BATCH_NORM_MOMENTUM, NORM_EPSILON, RunSpec  # noqa: E402
from explodebook.weights import LayerWeights, initial_weights, input_size, layer_names  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"explodebook.backends.keras needs the TensorFlow backend of Keras, but "
        f"KERAS_BACKEND={keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow "
        "before Keras is first imported"
    )

__all__ = ["build", "load_weights", "layer_weights", "RecurrentRegressor"]


_CELLS: dict[str, type[keras.layers.Layer]] = {
    "simple": keras.layers.SimpleRNN,
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
}


def _make_norm(kind: str, name: str) -> keras.layers.Layer:
    """The normalization layer of ``RunSpec.normalization`` (``"batch"``/``"layer"``)."""
    if kind == "batch":
        return keras.layers.BatchNormalization(
            momentum=BATCH_NORM_MOMENTUM, epsilon=NORM_EPSILON, name=name
        )
    if kind == "layer":
        return keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name=name)
    raise ValueError(f"normalization={kind!r} is not allowed: choose 'batch' or 'layer'")


def _regularizer(spec: RunSpec) -> keras.regularizers.Regularizer | None:
    # Keras' L1L2 is l1 * sum|W| + l2 * sum W**2: the spec's convention.
    if spec.l1 or spec.l2:
        return keras.regularizers.L1L2(l1=float(spec.l1), l2=float(spec.l2))
    return None


class RecurrentRegressor(keras.Model):
    """A stack of recurrent layers read out by a dense layer at the last step.

    Input ``(batch, seq_len, features)``, output ``(batch, 1)``; the Keras
    twin of the PyTorch backend's ``RecurrentRegressor``. ``truncation=k``
    runs the first ``seq_len - k`` steps, then cuts the gradient off the
    final states (``stop_gradient``) and runs the last ``k`` steps from them,
    so gradients flow through the last ``k`` steps only (truncated
    backpropagation through time).
    """

    def __init__(
        self,
        cell: str,
        units: int,
        depth: int,
        activation: str = "tanh",
        truncation: int | None = None,
        regularizer: keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        options: dict[str, Any] = {"activation": activation} if cell == "simple" else {}
        if cell == "gru":
            options["reset_after"] = True  # the Keras 3 default, and PyTorch's GRU
        # return_state=True everywhere: truncation needs every layer's final
        # state; return_sequences feeds each layer's outputs to the next.
        self.recurrent = [
            _CELLS[cell](
                units,
                return_sequences=k < depth,
                return_state=True,
                kernel_regularizer=regularizer,
                recurrent_regularizer=regularizer,
                name=f"{cell}_{k}",
                **options,
            )
            for k in range(1, depth + 1)
        ]
        self.head = keras.layers.Dense(1, kernel_regularizer=regularizer, name="output")
        self.truncation = truncation

    def call(self, x: tf.Tensor) -> tf.Tensor:
        states: list[list[tf.Tensor] | None] = [None] * len(self.recurrent)
        cut = x.shape[1] - (self.truncation or x.shape[1])
        if cut > 0:
            h = x[:, :cut]
            for k, layer in enumerate(self.recurrent):
                h, *state = layer(h)
                # The state carries over, its history does not.
                states[k] = [keras.ops.stop_gradient(s) for s in state]
            x = x[:, cut:]
        h = x
        for layer, state in zip(self.recurrent, states):
            h, *_ = layer(h, initial_state=state)
        return self.head(h)


def build(spec: RunSpec) -> keras.Model:
    """The network a spec describes, with its initial weights loaded.

    Returns:
        a ``keras.Sequential`` MLP mapping ``(batch, 20)`` to ``(batch, 1)``,
        or a `RecurrentRegressor` mapping ``(batch, seq_len, 2)`` to
        ``(batch, 1)``. Its layers are named ``layer_names(spec)``.
    """
    reg = _regularizer(spec)
    if spec.model == "mlp" and (spec.normalization != "none" or spec.residual):
        model: keras.Model = _block_mlp(spec, reg)
    elif spec.model == "mlp":
        hidden = [
            keras.layers.Dense(
                spec.width, activation=spec.activation, kernel_regularizer=reg, name=name
            )
            for name in layer_names(spec)[:-1]
        ]
        head = keras.layers.Dense(1, kernel_regularizer=reg, name="output")
        model = keras.Sequential([keras.Input((input_size(spec),)), *hidden, head])
    else:
        model = RecurrentRegressor(
            spec.cell, spec.width, spec.depth, spec.activation, spec.truncation, reg
        )
        model(np.zeros((1, spec.seq_len, input_size(spec)), np.float32))  # create weights
    load_weights(model, spec, initial_weights(spec))
    return model


def _block_mlp(spec: RunSpec, reg: keras.regularizers.Regularizer | None) -> keras.Model:
    # Functional API: Dense -> Norm -> Activation per hidden layer, and an
    # Add for the residual connection of hidden layers 2..depth.
    inputs = keras.Input((input_size(spec),))
    h = inputs
    for k, name in enumerate(layer_names(spec)[:-1]):
        z = keras.layers.Dense(spec.width, kernel_regularizer=reg, name=name)(h)
        if spec.normalization != "none":
            z = _make_norm(spec.normalization, f"{name}_norm")(z)
        z = keras.layers.Activation(spec.activation, name=f"{name}_act")(z)
        h = keras.layers.Add(name=f"{name}_add")([h, z]) if spec.residual and k > 0 else z
    outputs = keras.layers.Dense(1, kernel_regularizer=reg, name="output")(h)
    return keras.Model(inputs, outputs)


def load_weights(model: keras.Model, spec: RunSpec, weights: list[LayerWeights]) -> None:
    """Copy canonical weights (Keras' layout) into a model made by `build`.

    The canonical layout is Keras' own, so this is ``layer.set_weights``,
    except for the GRU: Keras keeps its two biases (``reset_after=True``) in
    one ``(2, 3 * units)`` array, input bias in row 0, recurrent bias in
    row 1.
    """
    for name, w in zip(layer_names(spec), weights, strict=True):
        layer = model.get_layer(name)
        if "gamma" in w:
            norm = model.get_layer(f"{name}_norm")
            extra = []
            if isinstance(norm, keras.layers.BatchNormalization):
                # moving mean and variance, reset to Keras' initial values
                extra = [np.zeros_like(w["gamma"]), np.ones_like(w["gamma"])]
            norm.set_weights([w["gamma"], w["beta"], *extra])
        if "recurrent_kernel" not in w:
            layer.set_weights([w["kernel"], w["bias"]])
        elif "recurrent_bias" in w:
            layer.set_weights(
                [w["kernel"], w["recurrent_kernel"], np.stack([w["bias"], w["recurrent_bias"]])]
            )
        else:
            layer.set_weights([w["kernel"], w["recurrent_kernel"], w["bias"]])


def layer_weights(model: keras.Model, spec: RunSpec) -> list[list[keras.Variable]]:
    """Trainable variables grouped by layer, in ``layer_names(spec)`` order.

    A normalization layer's ``gamma`` and ``beta`` belong to the hidden
    layer it follows.
    """
    groups = []
    for name in layer_names(spec):
        group = list(model.get_layer(name).trainable_variables)
        if spec.normalization != "none" and name != "output":
            group += list(model.get_layer(f"{name}_norm").trainable_variables)
        groups.append(group)
    return groups
