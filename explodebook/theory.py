"""The mechanism of exploding and vanishing gradients, in plain numpy.

Backpropagation multiplies one Jacobian per layer (or per time step). The
norm of that product can grow or shrink exponentially with its length: this
module computes such products without overflowing, the bound that links
them to the largest singular value of a weight matrix, the sufficient and
necessary conditions of Pascanu, Mikolov & Bengio (2013), per-step gradient
norms of a tiny RNN and per-layer gradient norms of a deep MLP at
initialization, and how many multiplications it takes to overflow a
floating-point format.

No deep-learning framework is imported here, so chapters can show the
mechanism before they show a framework.

References:
    Bengio, Simard & Frasconi (1994), "Learning long-term dependencies with
    gradient descent is difficult", IEEE Trans. Neural Networks 5(2).
    Pascanu, Mikolov & Bengio (2013), "On the difficulty of training
    recurrent neural networks", ICML, section 2.1.
    Goodfellow, Bengio & Courville (2016), "Deep Learning", sections 8.2.5
    (cliffs and exploding gradients) and 10.7 (long-term dependencies).
    Zhang, Lipton, Li & Smola, "Dive into Deep Learning", section 5.4
    (numerical stability and initialization).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from explodebook.checks import describe, expect, expect_int, is_real
from explodebook.spec import check_choice

__all__ = [
    "ACTIVATION_DERIVATIVE_BOUND",
    "FLOAT_LIMITS",
    "MLPGradients",
    "PascanuCondition",
    "RandomProduct",
    "gradient_bound",
    "largest_singular_value",
    "matrix_product_norms",
    "mlp_backprop_norms",
    "overflow_steps",
    "pascanu_condition",
    "random_matrix_product",
    "rnn_backprop_norms",
    "spectral_radius",
]

#: Upper bound γ on ``|φ'(x)|`` over all ``x`` for each activation φ:
#: tanh' = 1 - tanh² peaks at 1 (x = 0), the logistic sigmoid's derivative
#: s(1 - s) peaks at 1/4, ReLU's derivative is 0 or 1, the identity's is 1.
ACTIVATION_DERIVATIVE_BOUND: dict[str, float] = {
    "tanh": 1.0,
    "sigmoid": 0.25,
    "relu": 1.0,
    "linear": 1.0,
}

#: Largest finite value of each floating-point format.
#: bfloat16 keeps float32's 8 exponent bits and 7 mantissa bits, so its
#: maximum is ``(2 - 2**-7) * 2**127``; numpy has no bfloat16, hence the
#: constant (it equals ``ml_dtypes.finfo(ml_dtypes.bfloat16).max`` and
#: ``torch.finfo(torch.bfloat16).max``).
FLOAT_LIMITS: dict[str, float] = {
    "float16": float(np.finfo(np.float16).max),  # 65504
    "bfloat16": (2.0 - 2.0**-7) * 2.0**127,  # ≈ 3.39e38
    "float32": float(np.finfo(np.float32).max),  # ≈ 3.40e38
    "float64": float(np.finfo(np.float64).max),  # ≈ 1.80e308
}


# -- validation helpers ------------------------------------------------------


def _matrix(name: str, value: ArrayLike, *, square: bool = True) -> np.ndarray:
    """``value`` as a finite float64 2-D (square) array, or a clear error."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a 2-D array of numbers, got {describe(value)}") from e
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {a.shape}")
    if square and a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must contain only finite numbers (found NaN or inf)")
    return a


def _positive_int(name: str, value: object, low: int = 1) -> int:
    return expect_int(value, name, low)


def _floats(name: str, value: ArrayLike) -> np.ndarray:
    """``value`` as a float64 array (any shape), or a `TypeError` naming it."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of numbers, got {describe(value)}") from e


def _finite_float(name: str, value: object, *, positive: bool = False) -> float:
    if not is_real(value):
        raise ValueError(f"{name}={value!r} is not allowed: expected a finite number")
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0):
        kind = "finite number > 0" if positive else "finite number"
        raise ValueError(f"{name}={value!r} is not allowed: expected a {kind}")
    return v


def _activation(name: str) -> float:
    return ACTIVATION_DERIVATIVE_BOUND[check_choice("activation", name)]


# -- norms of matrix products ------------------------------------------------


def largest_singular_value(W: ArrayLike) -> float:
    """The spectral norm ``σ_max(W) = ‖W‖₂`` of a matrix.

    It is the most a matrix can stretch a vector: ``‖W v‖ ≤ σ_max ‖v‖``,
    which is why it, not the spectral radius, bounds gradient growth.

    Args:
        W: ``(m, n)`` finite matrix.

    Returns:
        the largest singular value, ``>= 0``.
    """
    a = _matrix("W", W, square=False)
    return float(np.linalg.svd(a, compute_uv=False)[0])


def spectral_radius(W: ArrayLike) -> float:
    """The spectral radius ``ρ(W) = max |λᵢ(W)|`` of a square matrix.

    ``ρ(W) ≤ σ_max(W)``, with equality for normal matrices (symmetric,
    orthogonal, ...). ``‖Wᵏ‖^(1/k) → ρ(W)`` as ``k → ∞`` (Gelfand's
    formula), so ρ decides whether powers of one matrix eventually grow or
    shrink, while σ_max bounds every single step.

    Args:
        W: ``(n, n)`` finite matrix.

    Returns:
        the largest absolute value of the eigenvalues, ``>= 0``.
    """
    a = _matrix("W", W)
    return float(np.max(np.abs(np.linalg.eigvals(a))))


def matrix_product_norms(
    matrices: np.ndarray | Iterable[ArrayLike], *, log_norms: bool = False
) -> np.ndarray:
    """Spectral norms of the running products ``M₁, M₂M₁, …, Mₖ⋯M₁``.

    Computed in float64 with renormalization: after each multiplication the
    running product is divided by its norm and the logarithm of that norm
    is accumulated. The product itself never overflows or underflows, so
    even products of thousands of matrices are measured correctly.

    Args:
        matrices: ``(k, n, n)`` array or an iterable of ``k`` finite
            matrices; ``Mᵢ`` may be rectangular as long as consecutive
            shapes chain (``Mᵢ₊₁.shape[1] == Mᵢ.shape[0]``).
        log_norms: return ``log10`` of the norms instead of the norms.

    Returns:
        ``(k,)`` float64: ``‖Mⱼ⋯M₁‖₂`` for ``j = 1..k``. Without
        ``log_norms`` a norm beyond float64's range is ``inf`` (and one
        below it ``0.0``), without a warning; with ``log_norms`` it is the
        exact ``log10`` (``-inf`` once the product is exactly zero).
    """
    if isinstance(matrices, np.ndarray) and matrices.ndim != 3:
        raise ValueError(
            f"matrices must have shape (k, n, n) or be a list of matrices, "
            f"got an array of shape {matrices.shape}"
        )
    expect(
        matrices,
        Iterable,
        "matrix_product_norms()",
        "a (k, n, n) array or a list of matrices",
    )
    items = list(matrices)
    if not items:
        raise ValueError("matrices is empty: need at least one matrix")

    log10 = np.empty(len(items), dtype=np.float64)
    q: np.ndarray | None = None  # the running product divided by its norm
    log_scale = 0.0  # log10 of the norm that q was divided by
    for j, m in enumerate(items):
        a = _matrix(f"matrices[{j}]", m, square=False)
        if q is not None and a.shape[1] != q.shape[0]:
            raise ValueError(
                f"matrices[{j}] has shape {a.shape}, which cannot multiply the "
                f"running product of shape {q.shape} from the left"
            )
        r = a if q is None else a @ q
        s = float(np.linalg.svd(r, compute_uv=False)[0])
        if s == 0.0:
            # An exactly zero product stays zero: nothing left to scale.
            log10[j:] = -np.inf
            break
        log_scale += math.log10(s)
        log10[j] = log_scale
        q = r / s
    if log_norms:
        return log10
    with np.errstate(over="ignore", under="ignore"):
        return np.power(10.0, log10)


class RandomProduct(NamedTuple):
    """Result of `random_matrix_product`."""

    #: ``(n, n)`` the product ``Mₖ⋯M₁`` in float64 (``inf``/``nan`` entries
    #: once it leaves float64's range).
    product: np.ndarray
    #: ``(k,)`` ``‖Mⱼ⋯M₁‖₂`` for ``j = 1..k`` (exact, see
    #: `matrix_product_norms`).
    norms: np.ndarray


def random_matrix_product(
    n: int = 4, k: int = 100, scale: float = 1.0, seed: int = 0
) -> RandomProduct:
    """Multiply ``k`` random Gaussian matrices: the D2L demonstration.

    Dive into Deep Learning (§5.4) multiplies 100 random 4×4 matrices with
    standard normal entries and watches the product explode. The norm grows
    geometrically with ``k``: its rate per matrix tends to the top Lyapunov
    exponent of Gaussian matrices, ``ln(scale) + ½(ln 2 + ψ(n/2))`` with
    ψ the digamma function (Newman 1986), a factor of about ``1.75·scale``
    per matrix for ``n = 4`` (a little under the ``scale·√n = 2·scale`` by
    which one matrix stretches a typical vector). Below ``scale ≈ 0.57``
    (for ``n = 4``) the product vanishes instead.

    Args:
        n: matrix size.
        k: number of matrices.
        scale: standard deviation of the entries (``N(0, scale²)``).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        a `RandomProduct` ``(product, norms)``.
    """
    n = _positive_int("n", n)
    k = _positive_int("k", k)
    scale = _finite_float("scale", scale, positive=True)
    rng = np.random.default_rng(seed)
    matrices = rng.normal(0.0, scale, size=(k, n, n))
    product = np.eye(n)
    # Overflow to inf (and inf - inf = nan) is the point of the demo, not an
    # error: silence numpy's warnings and let the values show it.
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for m in matrices:
            product = m @ product
    return RandomProduct(product, matrix_product_norms(matrices))


def gradient_bound(
    steps: int | ArrayLike, sigma_max: float, gamma: float = 1.0
) -> float | np.ndarray:
    """Upper bound ``(γ·σ_max)^steps`` on the norm of a product of Jacobians.

    For ``h_t = φ(W h_{t-1} + U x_t + b)`` each step's Jacobian is
    ``∂h_t/∂h_{t-1} = diag(φ'(a_t)) W``, whose norm is at most
    ``γ·σ_max(W)`` when ``|φ'| ≤ γ``. So for ``t > k``::

        ‖∂h_t/∂h_k‖₂ ≤ (γ · σ_max(W))^(t−k)

    The same holds layer by layer for an MLP whose layers all have
    ``σ_max ≤ sigma_max``. It is only an upper bound: below 1 it forces
    vanishing, above 1 it *allows* explosion (see `pascanu_condition`).

    Args:
        steps: ``t − k`` (an integer ``>= 0``, or an array of them).
        sigma_max: largest singular value of ``W``, ``>= 0``.
        gamma: bound on ``|φ'|``, e.g. ``ACTIVATION_DERIVATIVE_BOUND["tanh"]``.

    Returns:
        the bound, with the shape of ``steps`` (a float for a scalar);
        ``inf`` beyond float64's range, without a warning.
    """
    sigma_max = _finite_float("sigma_max", sigma_max)
    gamma = _finite_float("gamma", gamma)
    if sigma_max < 0 or gamma < 0:
        raise ValueError(
            f"sigma_max={sigma_max!r} and gamma={gamma!r} must both be >= 0"
        )
    s = np.asarray(steps)
    if s.dtype.kind not in "iu" or (s < 0).any():
        raise ValueError(f"steps={steps!r} is not allowed: expected integer(s) >= 0")
    with np.errstate(over="ignore", under="ignore"):
        bound = np.power(gamma * sigma_max, s.astype(np.float64))
    return float(bound) if bound.ndim == 0 else bound


# -- Pascanu, Mikolov & Bengio (2013) ----------------------------------------


@dataclass(frozen=True)
class PascanuCondition:
    """What the largest singular value of ``W_rec`` says about its gradients.

    Attributes:
        activation: the recurrent activation.
        sigma_max: ``σ₁``, the largest singular value of ``W_rec``.
        gamma: ``γ``, the bound on the activation's derivative.
        threshold: ``1/γ``, the value ``σ₁`` is compared with (``inf``
            when ``γ = 0``).
        vanishing_guaranteed: ``σ₁ < 1/γ``: the sufficient condition for
            vanishing gradients holds.
        exploding_possible: ``σ₁ > 1/γ``: the necessary (not sufficient)
            condition for exploding gradients holds.
        verdict: one sentence stating which, for printing.
    """

    activation: str
    sigma_max: float
    gamma: float
    threshold: float
    vanishing_guaranteed: bool
    exploding_possible: bool
    verdict: str

    def __str__(self) -> str:
        return self.verdict


def pascanu_condition(
    W_rec: ArrayLike, activation: str = "tanh", *, rtol: float = 1e-9
) -> PascanuCondition:
    """Pascanu et al. (2013)'s conditions on the recurrent weight matrix.

    With ``γ`` the bound on ``|φ'|`` (1 for tanh, 1/4 for the sigmoid) and
    ``σ₁`` the largest singular value of ``W_rec``, every step's Jacobian
    has norm at most ``γσ₁`` (see `gradient_bound`). Hence:

    * ``σ₁ < 1/γ`` is **sufficient** for vanishing: the long-term
      components ``∂h_t/∂h_k`` shrink to zero exponentially as ``t − k``
      grows, whatever the inputs;
    * ``σ₁ > 1/γ`` is **necessary, not sufficient**, for exploding: the
      gradients *can* explode, but need not (tanh units that saturate have
      ``φ' ≈ 0`` and can keep the product small).

    When ``σ₁ = 1/γ`` (within ``rtol``, e.g. an orthogonal ``W_rec`` with
    tanh) neither holds: the bound is 1, so the long-term components cannot
    explode, but they are not guaranteed to vanish either.

    Args:
        W_rec: ``(n, n)`` recurrent weight matrix, ``h_t = φ(W_rec h_{t-1}
            + …)`` (the bound does not depend on the orientation: ``W`` and
            ``Wᵀ`` have the same singular values).
        activation: one of `ACTIVATION_DERIVATIVE_BOUND`.
        rtol: relative tolerance under which ``σ₁`` counts as equal to
            ``1/γ`` (floating-point round-off makes an orthogonal matrix's
            ``σ₁`` differ from 1 by ~1e-16).

    Returns:
        a `PascanuCondition`; ``str()`` of it is the verdict.
    """
    gamma = _activation(activation)
    sigma = largest_singular_value(_matrix("W_rec", W_rec))
    threshold = math.inf if gamma == 0 else 1.0 / gamma
    at_boundary = math.isclose(sigma, threshold, rel_tol=rtol)
    vanishing = sigma < threshold and not at_boundary
    exploding = sigma > threshold and not at_boundary
    facts = f"σ₁ = {sigma:.4g}, 1/γ = {threshold:.4g} for {activation}"
    if vanishing:
        verdict = (
            f"vanishing guaranteed: {facts}; σ₁ < 1/γ is sufficient for the "
            "long-term gradient components to vanish"
        )
    elif exploding:
        verdict = (
            f"exploding possible (necessary condition met, not sufficient): "
            f"{facts}; σ₁ > 1/γ is necessary for exploding gradients, "
            "but does not guarantee them"
        )
    else:
        verdict = (
            f"boundary: {facts}; σ₁ = 1/γ, so the long-term gradient "
            "components cannot explode, but are not guaranteed to vanish"
        )
    return PascanuCondition(
        activation=activation,
        sigma_max=sigma,
        gamma=gamma,
        threshold=threshold,
        vanishing_guaranteed=vanishing,
        exploding_possible=exploding,
        verdict=verdict,
    )


# -- gradients through a tiny RNN and a deep MLP -----------------------------


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


# -- overflow ------------------------------------------------------------------


def overflow_steps(
    growth_factor: float, start: float = 1.0, dtype: str = "float32"
) -> int | None:
    """Multiplications by ``growth_factor`` until a value passes ``dtype``'s maximum.

    The smallest ``n >= 0`` with ``start · growth_factorⁿ > FLOAT_LIMITS[dtype]``,
    computed exactly (not by a float loop, whose rounding can be off by one).
    E.g. a gradient multiplied by 2 at every layer passes float16's 65504
    after 16 layers and float32's ≈3.4e38 after 128.

    This counts the exact value; a computation carried out *in* ``dtype``
    rounds at every step and turns a value into ``inf`` only once it is
    half a unit in the last place above the maximum, so it can overflow a
    step later (or sooner, through accumulated rounding).

    Args:
        growth_factor: the factor, ``> 0``.
        start: the initial magnitude, ``> 0``.
        dtype: ``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"``.

    Returns:
        the number of multiplications (0 if ``start`` already exceeds the
        maximum), or ``None`` if ``growth_factor <= 1`` and ``start`` does
        not exceed it: the value then never overflows.
    """
    if not isinstance(dtype, str) or dtype not in FLOAT_LIMITS:
        raise ValueError(f"dtype={dtype!r} is not allowed: choose one of {list(FLOAT_LIMITS)}")
    g = _finite_float("growth_factor", growth_factor, positive=True)
    s = _finite_float("start", start, positive=True)
    limit = FLOAT_LIMITS[dtype]
    if s > limit:
        return 0
    if g <= 1.0:
        return None
    # n = floor(log(limit / s) / log(g)) + 1, in 50-digit decimal arithmetic
    # (every float converts to Decimal exactly).
    with localcontext() as ctx:
        ctx.prec = 50
        ratio = (Decimal(limit) / Decimal(s)).ln() / Decimal(g).ln()
        n = int(ratio.to_integral_value(rounding="ROUND_FLOOR")) + 1
        near_tie = abs(ratio - ratio.to_integral_value()) < Decimal("1e-30")
    if near_tie:
        # s·gᵏ may equal the limit exactly (e.g. powers of two): decide with
        # exact rational arithmetic whether it *exceeds* it.
        exact_s, exact_g, exact_limit = Fraction(s), Fraction(g), Fraction(limit)
        n = max(n - 2, 0)
        while exact_s * exact_g**n <= exact_limit:
            n += 1
    return n
