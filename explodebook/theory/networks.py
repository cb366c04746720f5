"""Gradients at initialization, in numpy: per time step of a tiny RNN, per layer of an MLP."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from explodebook.theory._args import _finite_float, _floats, _matrix, _positive_int
from explodebook.theory.products import _activation, matrix_product_norms

__all__ = ["MLPGradients", "mlp_backprop_norms", "rnn_backprop_norms"]


def _forward(activation: str, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(φ(a), φ'(a))`` elementwise."""
    if activation == "tanh":
        h = np.tanh(a)
        return h, 1.0 - h * h
    if activation == "sigmoid":
        h = 1.0 / (1.0 + np.exp(-a))
        return h, h * (1.0 - h)
    if activation == "relu":
        # φ'(0) = 0, as in PyTorch and TensorFlow.
        return np.maximum(a, 0.0), (a > 0).astype(np.float64)
    return a, np.ones_like(a)


def rnn_backprop_norms(
    W_rec: ArrayLike,
    seq_len: int,
    activation: str = "tanh",
    h0: ArrayLike | None = None,
    inputs: ArrayLike | None = None,
    seed: int = 0,
    *,
    log_norms: bool = False,
) -> np.ndarray:
    """How much the last hidden state depends on each earlier one.

    Runs ``h_t = φ(a_t)``, ``a_t = W_rec h_{t-1} + u_t`` for
    ``t = 1..T`` (``T = seq_len``) and returns the norms of the Jacobians
    backpropagation through time multiplies::

        ∂h_T/∂h_t = J_T J_{T-1} ⋯ J_{t+1},   J_s = diag(φ'(a_s)) W_rec

    For ``activation="linear"`` every ``J_s = W_rec``, so the norms are
    ``‖W_recᵏ‖``, which behave like ``ρ(W_rec)ᵏ`` for large ``k``: they
    explode when the spectral radius exceeds 1. For tanh, units driven
    into saturation have ``φ' ≈ 0`` and shrink the product.

    Args:
        W_rec: ``(n, n)`` recurrent weight matrix.
        seq_len: ``T``, number of steps, ``>= 1``.
        activation: ``"tanh"``, ``"sigmoid"``, ``"relu"`` or ``"linear"``.
        h0: ``(n,)`` initial state; default ``N(0, 1)`` drawn from ``seed``.
        inputs: ``(T, n)`` input drive ``u_t`` (already projected, i.e.
            ``U x_t + b``); default ``N(0, 1)`` drawn from ``seed``.
        seed: seeds the default ``h0`` and ``inputs``.
        log_norms: return ``log10`` of the norms (see
            `matrix_product_norms`).

    Returns:
        ``(T + 1,)`` float64; element ``k`` is ``‖∂h_T/∂h_{T−k}‖₂``, from
        ``k = 0`` (``t = T``, the identity, norm 1) to ``k = T``
        (``t = 0``). Exact even when the forward states overflow in the
        linear case (its Jacobians do not depend on the states).
    """
    _activation(activation)  # validates the name
    W = _matrix("W_rec", W_rec)
    n = W.shape[0]
    T = _positive_int("seq_len", seq_len)
    rng = np.random.default_rng(seed)
    h = _floats("h0", rng.normal(size=n) if h0 is None else h0)
    u = _floats("inputs", rng.normal(size=(T, n)) if inputs is None else inputs)
    if h.shape != (n,):
        raise ValueError(f"h0 must have shape ({n},) to match W_rec, got {h.shape}")
    if u.shape != (T, n):
        raise ValueError(f"inputs must have shape ({T}, {n}) = (seq_len, n), got {u.shape}")

    jacobians = np.empty((T, n, n))
    # A linear (or ReLU) RNN with σ > 1 overflows its states; its Jacobians
    # stay exact, so the overflow is not worth a warning.
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            h, d = _forward(activation, W @ h + u[t])
            jacobians[t] = d[:, None] * W

    # ∂h_T/∂h_{T-k} = J_T ⋯ J_{T-k+1} grows by multiplying on the right;
    # its transpose J_{T-k+1}ᵀ ⋯ J_Tᵀ grows on the left, as
    # matrix_product_norms expects, and has the same spectral norm.
    transposed = np.transpose(jacobians[::-1], (0, 2, 1))
    tail = matrix_product_norms(transposed, log_norms=log_norms)
    return np.concatenate([[0.0 if log_norms else 1.0], tail])


class MLPGradients(NamedTuple):
    """Result of `mlp_backprop_norms`."""

    #: ``(depth,)`` ``‖∂L/∂W_l‖_F`` for layers ``l = 1..depth``, input to output.
    weight_grad_norms: np.ndarray
    #: ``(depth + 1,)`` the backpropagated signal ``‖∂L/∂h_l‖_F``, index
    #: ``l`` from 0 (the input) to ``depth`` (the last layer's output);
    #: backpropagation computes it from the last index to the first.
    hidden_grad_norms: np.ndarray


def mlp_backprop_norms(
    depth: int,
    width: int,
    scale: float = 1.0,
    activation: str = "relu",
    init: str = "he",
    seed: int = 0,
    batch_size: int = 32,
) -> MLPGradients:
    """Per-layer gradient norms of a random deep MLP at initialization.

    A numpy reference: ``h_0 = X ~ N(0, 1)`` of shape ``(batch_size,
    width)``, ``h_l = φ(h_{l-1} W_l)`` with ``W_l`` drawn by
    `explodebook.weights.init_matrix` (no biases: they start at zero), and
    the loss ``L = sum(h_depth ⊙ G) / batch_size`` with a fixed random
    ``G ~ N(0, 1)``, which starts every layer's backward pass from the same
    signal whatever the forward pass did.

    The draws from ``numpy.random.default_rng(seed)`` come in this order:
    the ``depth`` weight matrices (input to output), then ``X``, then ``G``.

    Args:
        depth: number of layers, ``>= 1``.
        width: units per layer (the input has ``width`` features too).
        scale: multiplies every weight matrix (``RunSpec.init_scale``).
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"linear"``.
        init: ``"he"``, ``"xavier"``, ``"normal"`` or ``"orthogonal"``.
        seed: seeds the weights, ``X`` and ``G``.
        batch_size: rows of ``X``.

    Returns:
        an `MLPGradients` ``(weight_grad_norms, hidden_grad_norms)``;
        values may be ``inf``/``nan`` once they overflow float64.
    """
    from explodebook.weights import init_matrix

    depth = _positive_int("depth", depth)
    width = _positive_int("width", width)
    batch_size = _positive_int("batch_size", batch_size)
    scale = _finite_float("scale", scale, positive=True)
    _activation(activation)
    rng = np.random.default_rng(seed)
    weights = [
        init_matrix(init, width, width, scale, rng).astype(np.float64) for _ in range(depth)
    ]
    X = rng.normal(size=(batch_size, width))
    G = rng.normal(size=(batch_size, width))

    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        hs = [X]
        derivs = []
        for W in weights:
            h, d = _forward(activation, hs[-1] @ W)
            hs.append(h)
            derivs.append(d)
        delta_h = G / batch_size  # ∂L/∂h_depth
        weight_norms = np.empty(depth)
        hidden_norms = np.empty(depth + 1)
        hidden_norms[depth] = np.linalg.norm(delta_h)
        for layer in range(depth - 1, -1, -1):
            delta_a = delta_h * derivs[layer]  # ∂L/∂a_l
            weight_norms[layer] = np.linalg.norm(hs[layer].T @ delta_a)
            delta_h = delta_a @ weights[layer].T
            hidden_norms[layer] = np.linalg.norm(delta_h)
    return MLPGradients(weight_norms, hidden_norms)
