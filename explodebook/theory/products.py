"""Norms of products of Jacobians: the bound by σ_max and Pascanu's conditions.

Backpropagation multiplies one Jacobian per layer (or per time step); the
norm of that product can grow or shrink exponentially with its length. This
module computes such products without overflowing, the bound that links
them to the largest singular value of a weight matrix, and the sufficient
and necessary conditions of Pascanu, Mikolov & Bengio (2013).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from explodebook.checks import expect
from explodebook.spec import check_choice
from explodebook.theory._args import _finite_float, _matrix, _positive_int

__all__ = [
    "ACTIVATION_DERIVATIVE_BOUND",
    "PascanuCondition",
    "RandomProduct",
    "gradient_bound",
    "largest_singular_value",
    "matrix_product_norms",
    "pascanu_condition",
    "random_matrix_product",
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


def _activation(name: str) -> float:
    return ACTIVATION_DERIVATIVE_BOUND[check_choice("activation", name)]


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
