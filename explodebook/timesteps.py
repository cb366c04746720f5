"""How far back in time the gradient reaches: ‖∂L/∂x_t‖ per input time step.

A recurrent network trained by backpropagation through time learns a
long-term dependency only if the loss, computed at the last step, sends a
usable gradient back to the early inputs. `input_gradient_norms` measures
that signal at initialization: it builds a spec's recurrent network with its
initial weights, through the same backend code `explodebook.run` uses, feeds
it one batch of the spec's training data and returns the norm of the
gradient of the loss with respect to the input at every time step.

The gradient with respect to the *inputs* is used rather than the one with
respect to the hidden states because it is defined the same way for every
cell (a simple RNN has one state, an LSTM two, a GRU one) and needs no hook
inside the framework's fused recurrent layer: the input is an ordinary
tensor the framework differentiates. It carries the same information, since
``∂L/∂x_t = (∂h_t/∂x_t)^T ∂L/∂h_t`` (plus the cell-state term for an LSTM)
with a factor ``∂h_t/∂x_t`` that does not depend on how far ``t`` is from
the end of the sequence.

Typical use::

    spec = RunSpec(model="rnn", cell="lstm", seq_len=80)
    norms = input_gradient_norms(spec, "keras")   # shape (80,)
    norms[0] / norms[-1]   # << 1: vanishing, >> 1: exploding
"""

from __future__ import annotations

import numpy as np

from explodebook.checks import check_framework, expect_spec, plain
from explodebook.data import dataset_for
from explodebook.spec import RunSpec, SpecError

__all__ = ["input_gradient_norms"]


def input_gradient_norms(
    spec: RunSpec, framework: str = "torch", batch_size: int | None = None
) -> np.ndarray:
    """‖∂L/∂x_t‖₂ for each time step t = 1..T of a recurrent spec, at initialization.

    The network is the one ``run(spec, framework)`` starts from (same
    initial weights); the batch is the first ``batch_size`` sequences of the
    spec's training set; the loss ``L`` is the mean squared error over that
    batch, as in training (no L1/L2 penalty: it does not depend on the
    inputs). For each time step ``t`` the gradient ``∂L/∂x_t`` has shape
    ``(batch_size, features)``; its Frobenius norm (the L2 norm over the
    batch and the input features together) is returned. Under truncated
    backpropagation (``spec.truncation = k``) the first ``T - k`` entries
    are 0.

    Args:
        spec: a ``model="rnn"`` spec; its cell, width, depth, seq_len, init,
            init_scale, truncation and seed are used.
        framework: ``"torch"`` (autograd on an input with
            ``requires_grad``) or ``"keras"`` (a ``tf.GradientTape`` that
            watches the input).
        batch_size: sequences in the batch; ``None`` uses
            ``spec.batch_size``.

    Returns:
        float64 array of shape ``(spec.seq_len,)``: entry ``t - 1`` is
        ‖∂L/∂x_t‖₂. Entries can be ``inf`` or ``nan`` when the gradient
        overflows float32.

    Raises:
        TypeError: ``spec`` is not a `RunSpec`.
        SpecError: ``spec`` is not a recurrent spec (``model="mlp"``).
        ValueError: ``framework`` or ``batch_size`` is not allowed.
    """
    expect_spec(spec, "input_gradient_norms()")
    if spec.model != "rnn":
        raise SpecError(
            f"RunSpec.model={spec.model!r} is not allowed here: gradients per "
            "time step need a recurrent network, model='rnn' "
            "(with cell 'simple', 'lstm' or 'gru')"
        )
    framework = check_framework(framework)
    X, y = dataset_for(spec)
    n = spec.batch_size if batch_size is None else plain(batch_size)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(X):
        raise ValueError(
            f"batch_size={batch_size!r} is not allowed: expected an integer "
            f"between 1 and {len(X)} (the training sequences), or None"
        )
    x_batch, y_batch = np.array(X[:n]), np.array(y[:n])
    if framework == "torch":
        grad = _torch_input_grad(spec, x_batch, y_batch)
    else:
        grad = _keras_input_grad(spec, x_batch, y_batch)
    # (batch, T, features) -> (T,), in float64 so that squaring a large
    # but finite float32 gradient does not overflow.
    return np.sqrt(np.sum(np.square(grad.astype(np.float64)), axis=(0, 2)))


def _torch_input_grad(spec: RunSpec, x_batch: np.ndarray, y_batch: np.ndarray) -> np.ndarray:
    from explodebook.backends import torch as torch_backend
    from explodebook.frameworks import import_torch

    torch = import_torch()

    model = torch_backend.build(spec)
    x = torch.from_numpy(x_batch).requires_grad_()
    loss = torch.nn.functional.mse_loss(model(x), torch.from_numpy(y_batch))
    loss.backward()
    return x.grad.numpy()


def _keras_input_grad(spec: RunSpec, x_batch: np.ndarray, y_batch: np.ndarray) -> np.ndarray:
    from explodebook.backends import keras as keras_backend
    from explodebook.frameworks import import_tensorflow

    tf, keras = import_tensorflow()

    model = keras_backend.build(spec)
    x = tf.constant(x_batch)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = keras.losses.MeanSquaredError()(y_batch, model(x, training=True))
    return tape.gradient(loss, x).numpy()
