"""`explodebook.theory` against references computed another way."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

from explodebook import theory
from explodebook.theory import (
    ACTIVATION_DERIVATIVE_BOUND,
    FLOAT_LIMITS,
    gradient_bound,
    largest_singular_value,
    matrix_product_norms,
    mlp_backprop_norms,
    overflow_steps,
    pascanu_condition,
    random_matrix_product,
    rnn_backprop_norms,
    spectral_radius,
)


def _orthogonal(n: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q


# -- matrix products -----------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5])
def test_product_norms_match_multi_dot(k: int) -> None:
    matrices = np.random.default_rng(k).normal(size=(k, 3, 3))
    # M_j ⋯ M_1 in one call (multi_dot needs at least two matrices).
    products = [matrices[0]] + [np.linalg.multi_dot(list(matrices[j::-1])) for j in range(1, k)]
    expected = [np.linalg.norm(p, 2) for p in products]
    np.testing.assert_allclose(matrix_product_norms(matrices), expected, rtol=1e-12)


def test_product_norms_accept_a_chain_of_rectangular_matrices() -> None:
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(4, 2)), rng.normal(size=(3, 4)), rng.normal(size=(5, 3))
    expected = [np.linalg.norm(a, 2), np.linalg.norm(b @ a, 2), np.linalg.norm(c @ b @ a, 2)]
    np.testing.assert_allclose(matrix_product_norms([a, b, c]), expected, rtol=1e-12)


def test_log_norms_agree_with_direct_computation_without_overflow() -> None:
    matrices = np.random.default_rng(3).normal(size=(30, 4, 4))
    direct = np.log10(matrix_product_norms(matrices))
    np.testing.assert_allclose(matrix_product_norms(matrices, log_norms=True), direct, rtol=1e-12)
    running = np.eye(4)
    for j, m in enumerate(matrices):
        running = m @ running
        assert math.isclose(direct[j], np.log10(np.linalg.norm(running, 2)), rel_tol=1e-10)


def test_overflowing_product_gives_inf_without_warning_and_exact_logs() -> None:
    # c·Q with Q orthogonal: the product of k of them has norm exactly c**k,
    # 1e400 for k = 40, beyond float64.
    c, k = 1e10, 40
    matrices = np.stack([c * _orthogonal(3, seed) for seed in range(k)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norms = matrix_product_norms(matrices)
        logs = matrix_product_norms(matrices, log_norms=True)
    np.testing.assert_allclose(logs, 10 * np.arange(1, k + 1), rtol=1e-12)
    assert np.isinf(norms[-1]) and np.isfinite(norms[29])
    np.testing.assert_allclose(norms[:30], 10.0 ** (10 * np.arange(1, 31)), rtol=1e-12)


def test_underflowing_and_zero_products() -> None:
    tiny = np.stack([1e-20 * _orthogonal(2, s) for s in range(20)])  # 1e-400 at the end
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert matrix_product_norms(tiny)[-1] == 0.0
    np.testing.assert_allclose(
        matrix_product_norms(tiny, log_norms=True), -20 * np.arange(1, 21), rtol=1e-12
    )
    nilpotent = np.array([[0.0, 1.0], [0.0, 0.0]])  # N @ N = 0
    logs = matrix_product_norms([nilpotent] * 3, log_norms=True)
    assert logs[0] == 0.0 and np.isneginf(logs[1:]).all()


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((2, 2)), "shape"),
        ([], "empty"),
        ([np.eye(2), np.array([[np.nan, 0], [0, 1]])], "matrices\\[1\\].*finite"),
        ([np.eye(2), np.eye(3)], "matrices\\[1\\] has shape"),
    ],
)
def test_product_norms_reject_bad_input(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        matrix_product_norms(bad)  # type: ignore[arg-type]


def test_random_matrix_product_is_the_product_of_seeded_gaussians() -> None:
    result = random_matrix_product(n=4, k=10, scale=0.5, seed=7)
    draws = np.random.default_rng(7).normal(0.0, 0.5, size=(10, 4, 4))
    np.testing.assert_allclose(result.product, np.linalg.multi_dot(list(draws[::-1])), rtol=1e-12)
    assert result.norms.shape == (10,)
    assert math.isclose(result.norms[-1], np.linalg.norm(result.product, 2), rel_tol=1e-10)


def test_random_matrix_product_d2l_setting_explodes_and_small_scale_vanishes() -> None:
    assert random_matrix_product(4, 100).norms[-1] > 1e10
    assert random_matrix_product(4, 100, scale=0.1).norms[-1] < 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = random_matrix_product(4, 2000)
    assert not np.isfinite(huge.product).all() and np.isinf(huge.norms[-1])


def test_random_product_grows_at_the_gaussian_lyapunov_rate() -> None:
    # Newman (1986): ln‖Mₖ⋯M₁‖ / k -> ½(ln 2 + ψ(n/2)) for N(0, 1) entries;
    # ψ(2) = 1 - Euler's γ. The rate of a long product agrees.
    euler_gamma = 0.5772156649015329
    rate = 0.5 * (math.log(2) + 1 - euler_gamma)  # n = 4: about ln 1.75
    k = 5000
    log10_norm = matrix_product_norms(
        np.random.default_rng(0).normal(size=(k, 4, 4)), log_norms=True
    )[-1]
    assert abs(log10_norm * math.log(10) / k - rate) < 0.02
    # scale multiplies every factor, so it adds ln(scale) to the rate.
    small = random_matrix_product(4, k, scale=0.5, seed=1).norms[-1]
    assert abs(math.log(small) / k - (rate + math.log(0.5))) < 0.02  # < 0: vanishes


# -- spectral quantities ---------------------------------------------------------


def test_spectral_radius_of_triangular_and_rotation_matrices() -> None:
    # Eigenvalues of a triangular matrix are its diagonal.
    upper = np.array([[0.5, 10.0, 3.0], [0.0, -0.7, 1.0], [0.0, 0.0, 0.2]])
    assert math.isclose(spectral_radius(upper), 0.7, rel_tol=1e-12)
    # 2·rotation has eigenvalues 2·e^{±iθ}: complex, of modulus 2.
    theta = 0.3
    rotation = 2 * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    assert math.isclose(spectral_radius(rotation), 2.0, rel_tol=1e-12)
    w = np.random.default_rng(0).normal(size=(6, 6))
    assert math.isclose(spectral_radius(w), np.abs(np.linalg.eigvals(w)).max(), rel_tol=1e-12)


def test_largest_singular_value_is_root_of_largest_eigenvalue_of_gram() -> None:
    w = np.random.default_rng(1).normal(size=(5, 3))
    expected = math.sqrt(np.linalg.eigvalsh(w.T @ w).max())
    assert math.isclose(largest_singular_value(w), expected, rel_tol=1e-12)
    # A non-normal matrix: tiny spectral radius, large singular value.
    upper = np.array([[0.5, 10.0], [0.0, 0.5]])
    assert largest_singular_value(upper) > 10 > 0.5 == spectral_radius(upper)


def test_spectral_helpers_name_the_bad_argument() -> None:
    with pytest.raises(ValueError, match="W must be a square matrix"):
        spectral_radius(np.ones((2, 3)))
    with pytest.raises(ValueError, match="W must contain only finite"):
        largest_singular_value([[np.inf]])


def test_gradient_bound_formula_and_that_it_bounds_real_jacobians() -> None:
    assert gradient_bound(3, 2.0, 0.25) == 0.125
    np.testing.assert_allclose(gradient_bound(np.arange(4), 1.5), 1.5 ** np.arange(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gradient_bound(5000, 1.5) == math.inf
    w = np.random.default_rng(2).normal(size=(5, 5))
    norms = rnn_backprop_norms(w, 12, "tanh")
    bound = gradient_bound(np.arange(13), largest_singular_value(w), 1.0)
    assert (norms <= bound * (1 + 1e-12)).all()
    with pytest.raises(ValueError, match="steps"):
        gradient_bound(1.5, 1.0)


# -- Pascanu et al. (2013) ---------------------------------------------------------


def test_pascanu_half_identity_guarantees_vanishing() -> None:
    result = pascanu_condition(np.diag([0.5, 0.5, 0.5]), "tanh")
    assert result.vanishing_guaranteed and not result.exploding_possible
    assert result.verdict.startswith("vanishing guaranteed")
    assert result.sigma_max == 0.5 and result.threshold == 1.0
    # Sufficient means it really happens: norms shrink at least like 0.5**k.
    norms = rnn_backprop_norms(np.diag([0.5, 0.5, 0.5]), 10, "tanh")
    assert (norms <= 0.5 ** np.arange(11) * (1 + 1e-12)).all()


def test_pascanu_doubled_orthogonal_makes_exploding_possible_only() -> None:
    result = pascanu_condition(2 * _orthogonal(4, 0), "tanh")
    assert result.exploding_possible and not result.vanishing_guaranteed
    assert result.verdict.startswith(
        "exploding possible (necessary condition met, not sufficient)"
    )
    assert math.isclose(result.sigma_max, 2.0, rel_tol=1e-12)


def test_pascanu_sigmoid_threshold_is_four() -> None:
    assert pascanu_condition(3 * np.eye(2), "sigmoid").vanishing_guaranteed
    assert pascanu_condition(5 * np.eye(2), "sigmoid").exploding_possible
    assert pascanu_condition(3 * np.eye(2), "sigmoid").threshold == 4.0


def test_pascanu_boundary_claims_neither() -> None:
    result = pascanu_condition(_orthogonal(5, 1), "tanh")  # σ₁ = 1 up to round-off
    assert not result.vanishing_guaranteed and not result.exploding_possible
    assert "cannot explode" in result.verdict and "not guaranteed to vanish" in result.verdict


def test_pascanu_is_necessary_not_sufficient_saturated_tanh_does_not_explode() -> None:
    # σ₁ = 3 > 1, yet a strongly driven tanh RNN saturates and its
    # gradients vanish: the condition allows explosion, it does not cause it.
    w = 3 * np.eye(3)
    assert pascanu_condition(w).exploding_possible
    norms = rnn_backprop_norms(w, 30, "tanh", h0=np.ones(3), inputs=np.full((30, 3), 5.0))
    assert norms[-1] < 1e-10


def test_pascanu_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match="activation='softplus'.*tanh"):
        pascanu_condition(np.eye(2), "softplus")


# -- RNN and MLP gradients against torch.autograd ---------------------------------


@pytest.mark.parametrize("activation", ["tanh", "linear", "sigmoid", "relu"])
def test_rnn_backprop_norms_match_torch_autograd(activation: str) -> None:
    torch = pytest.importorskip("torch")
    n, T = 3, 6
    rng = np.random.default_rng(5)
    w = 1.3 * rng.normal(size=(n, n))
    h0, u = rng.normal(size=n), rng.normal(size=(T, n))
    ours = rnn_backprop_norms(w, T, activation, h0=h0, inputs=u)

    phi = {
        "tanh": torch.tanh,
        "linear": lambda a: a,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
    }[activation]
    W, U = torch.from_numpy(w), torch.from_numpy(u)

    def run_from(t: int, h: torch.Tensor) -> torch.Tensor:
        for s in range(t, T):  # steps t+1..T (u is 0-indexed)
            h = phi(W @ h + U[s])
        return h

    states = [torch.from_numpy(h0)]
    for t in range(T):
        states.append(phi(W @ states[-1] + U[t]))
    expected = []
    for k in range(T + 1):
        t = T - k
        jac = torch.autograd.functional.jacobian(lambda h, t=t: run_from(t, h), states[t])
        expected.append(torch.linalg.matrix_norm(jac, ord=2).item())
    np.testing.assert_allclose(ours, expected, rtol=1e-10)


def test_linear_rnn_norms_are_norms_of_matrix_powers() -> None:
    w = np.random.default_rng(4).normal(size=(4, 4))
    expected = [np.linalg.norm(np.linalg.matrix_power(w, k), 2) for k in range(9)]
    np.testing.assert_allclose(rnn_backprop_norms(w, 8, "linear"), expected, rtol=1e-10)
    logs = rnn_backprop_norms(w, 8, "linear", log_norms=True)
    np.testing.assert_allclose(logs, np.log10(expected), rtol=1e-10, atol=1e-12)


def test_rnn_backprop_norms_validate_shapes() -> None:
    with pytest.raises(ValueError, match="inputs must have shape \\(4, 2\\)"):
        rnn_backprop_norms(np.eye(2), 4, inputs=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="seq_len=0"):
        rnn_backprop_norms(np.eye(2), 0)


@pytest.mark.parametrize("activation, init", [("relu", "he"), ("tanh", "xavier")])
def test_mlp_backprop_norms_match_torch_autograd(activation: str, init: str) -> None:
    torch = pytest.importorskip("torch")
    from explodebook.weights import init_matrix

    depth, width, scale, seed, batch = 4, 6, 1.7, 3, 5
    ours = mlp_backprop_norms(depth, width, scale, activation, init, seed, batch)

    # The draws in the documented order: weights, then X, then G.
    rng = np.random.default_rng(seed)
    weights = [
        torch.tensor(init_matrix(init, width, width, scale, rng), dtype=torch.float64,
                     requires_grad=True)
        for _ in range(depth)
    ]
    X = torch.from_numpy(rng.normal(size=(batch, width)))
    G = torch.from_numpy(rng.normal(size=(batch, width)))
    phi = torch.relu if activation == "relu" else torch.tanh
    hs = [X.requires_grad_(True)]
    for w in weights:
        hs.append(phi(hs[-1] @ w))
        hs[-1].retain_grad()
    loss = (hs[-1] * G).sum() / batch
    loss.backward()
    np.testing.assert_allclose(
        ours.weight_grad_norms, [w.grad.norm().item() for w in weights], rtol=1e-10
    )
    np.testing.assert_allclose(
        ours.hidden_grad_norms, [h.grad.norm().item() for h in hs], rtol=1e-10
    )


# -- overflow ------------------------------------------------------------------------


def _exact_loop(growth: float, start: float, limit: float) -> int:
    value, n = Fraction(start), 0
    while value <= Fraction(limit):
        value *= Fraction(growth)
        n += 1
    return n


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("growth", [2.0, 10.0, 1.5, 1.1, 3.7, 255.999])
def test_overflow_steps_match_a_direct_loop(dtype: str, growth: float) -> None:
    limit = FLOAT_LIMITS[dtype]
    assert overflow_steps(growth, dtype=dtype) == _exact_loop(growth, 1.0, limit)
    assert overflow_steps(growth, 0.001, dtype) == _exact_loop(growth, 0.001, limit)
    # A plain float64 loop agrees away from ties.
    value, n = 1.0, 0
    while value <= limit:
        value *= growth
        n += 1
    assert overflow_steps(growth, dtype=dtype) == n


def test_overflow_steps_exact_ties_and_known_values() -> None:
    assert overflow_steps(2.0, dtype="float16") == 16  # 2**16 = 65536 > 65504
    assert overflow_steps(2.0, dtype="float32") == 128
    assert overflow_steps(2.0, dtype="float64") == 1024
    # start·g = the limit exactly: equal is not above, one more step is.
    assert overflow_steps(2.0, start=FLOAT_LIMITS["float16"] / 2, dtype="float16") == 2
    assert overflow_steps(2.0, start=FLOAT_LIMITS["float16"], dtype="float16") == 1
    assert overflow_steps(0.5, start=1e6, dtype="float16") == 0
    assert overflow_steps(1.0) is None and overflow_steps(0.9) is None


def test_overflow_steps_validate_arguments() -> None:
    with pytest.raises(ValueError, match="dtype='float8'"):
        overflow_steps(2.0, dtype="float8")
    with pytest.raises(ValueError, match="growth_factor=-2"):
        overflow_steps(-2)
    with pytest.raises(ValueError, match="start=nan"):
        overflow_steps(2.0, start=float("nan"))


def test_float_limits_agree_with_the_frameworks() -> None:
    torch = pytest.importorskip("torch")
    assert FLOAT_LIMITS["float16"] == 65504.0 == torch.finfo(torch.float16).max
    assert FLOAT_LIMITS["bfloat16"] == torch.finfo(torch.bfloat16).max
    assert FLOAT_LIMITS["float32"] == torch.finfo(torch.float32).max
    try:
        import ml_dtypes
    except ImportError:
        return
    assert FLOAT_LIMITS["bfloat16"] == float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)


def test_activation_bounds_are_the_maxima_of_the_derivatives() -> None:
    x = np.linspace(-10, 10, 200_001)
    sig = 1 / (1 + np.exp(-x))
    derivative = {
        "tanh": 1 - np.tanh(x) ** 2,
        "sigmoid": sig * (1 - sig),
        "relu": (x > 0).astype(float),
        "linear": np.ones_like(x),
    }
    for name, values in derivative.items():
        assert math.isclose(values.max(), ACTIVATION_DERIVATIVE_BOUND[name], rel_tol=1e-9)


def test_theory_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, explodebook.theory; "
        "assert not {'torch', 'tensorflow', 'keras'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert theory.__all__
