"""Chapter 1's conclusions, pinned through the package in both frameworks.

The chapter's prose states these; if a change to the package made one
false, the prose would be wrong, so this fails first.
"""

from __future__ import annotations

import numpy as np
import pytest

from explodebook import RunSpec, run

from _chapter import run_cells

FRAMEWORKS = ("torch", "keras")
TRAIN = RunSpec(depth=10, width=32, task="regression-scaled", steps=300)
DEPTHS = [1, 2, 4, 6, 8, 10, 12, 15, 20]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ten_layers_train_at_1_1_and_diverge_at_1_15(framework: str) -> None:
    assert not run(TRAIN.replace(init_scale=1.1), framework).diverged
    assert run(TRAIN.replace(init_scale=1.15), framework).diverged
    assert run(TRAIN.replace(init_scale=1.5), framework).first_nonfinite_step <= 3


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_small_scale_neither_diverges_nor_learns(framework: str) -> None:
    vanishing = run(TRAIN.replace(init_scale=0.5), framework)
    healthy = run(TRAIN.replace(init_scale=1.0), framework)
    assert not vanishing.diverged and vanishing.final_loss() > 0.9  # target variance is 1
    assert healthy.final_loss() < 0.1


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_first_layer_gradient_rate_per_layer_is_about_s_or_s_squared(framework: str) -> None:
    def rate(scale: float) -> float:
        base = RunSpec(width=32, task="regression-scaled", steps=1, init_scale=scale)
        norms = [run(base.replace(depth=d), framework).grad_norms[0, 0] for d in DEPTHS]
        return float(np.exp(np.polyfit(DEPTHS, np.log(norms), 1)[0]))

    assert 0.4 < rate(0.5) < 0.6  # about s: vanishing
    assert 0.85 < rate(1.0) < 1.15  # He keeps the size
    assert 1.9 < rate(1.5) < 2.6  # about s**2: the forward pass explodes too


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_rnn_gradient_grows_with_the_recurrent_singular_value(framework: str) -> None:
    base = RunSpec(model="rnn", width=32, seq_len=50, init="orthogonal", steps=1)
    norms = [run(base.replace(init_scale=s), framework).grad_norms[0, 0] for s in (0.5, 0.9, 1.0, 1.1, 1.5, 2.0)]
    assert np.all(np.diff(norms) > 0)
    assert norms[-1] > 100 * norms[0]


def test_random_product_boundary_of_the_exercise() -> None:
    # The solution: within a factor of 100 of 1 from 0.56 to 0.60, closest
    # at 0.58; one matrix stretches by about s*sqrt(n) = 2s, the average
    # log-growth is smaller (about 1.75 s), so the boundary is near 0.57.
    from explodebook import theory

    scales = np.round(np.arange(0.50, 0.65, 0.01), 2)
    final = np.array([theory.random_matrix_product(4, 100, s, seed=0).norms[-1] for s in scales])
    within = scales[np.abs(np.log10(final)) <= 2]
    assert within.min() == 0.56 and within.max() == 0.60
    assert scales[np.argmin(np.abs(np.log10(final)))] == 0.58
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 20000))
    stretch = np.linalg.norm(rng.normal(size=(20000, 4, 4)) @ x.T[..., None], axis=(1, 2)) / np.linalg.norm(x, axis=0)
    assert abs(np.sqrt(np.mean(stretch**2)) - 2.0) < 0.05  # root-mean-square stretch: sqrt(n)
    long = theory.random_matrix_product(4, 4000, 0.5, seed=0).norms  # stays in range
    rate = np.exp(np.log(long[-1]) / len(long)) / 0.5
    assert 1.65 < rate < 1.85  # the average growth factor per unit scale, below sqrt(n)


def test_the_rnn_table_is_at_initialization() -> None:
    ns = run_cells("01", "rnn_sweep = sweep(")
    assert all(t.steps_run == 1 for traces in ns["rnn_sweep"].traces.values() for t in traces)
    shown = ns["_shown"]
    assert shown['diverged["torch"]'] == ns["diverged"]["torch"] <= 3


def test_homogeneity_of_the_derivation_exercise() -> None:
    # ch1-ex-homogeneous: zero biases and an unscaled output layer, so scaling
    # the L hidden matrices by s scales the output by s**L and the output's
    # gradient with respect to W1 by s**(L-1), exactly (up to float32).
    import torch

    from explodebook.backends import torch as torch_backend

    depth, s = 6, 1.5
    x = torch.randn(16, 20, generator=torch.Generator().manual_seed(0))

    def output_and_grad(scale: float):
        net = torch_backend.build(RunSpec(depth=depth, width=32, init_scale=scale))
        out = net(x).sum()
        first = next(m for m in net if isinstance(m, torch.nn.Linear))
        out.backward()
        return out.item(), first.weight.grad.clone()

    f1, g1 = output_and_grad(1.0)
    fs, gs = output_and_grad(s)
    assert np.isclose(fs, s**depth * f1, rtol=1e-4)
    assert torch.allclose(gs, s ** (depth - 1) * g1, rtol=1e-4, atol=1e-6)


def test_exercise_solutions_quote_the_runs() -> None:
    ns = run_cells("01", "boundary_growth =")
    assert ns["largest_stable"] == {"torch": 1.1, "keras": 1.1}
    assert ns["boundary_scales"][ns["above"]] == 1.15
    assert ns["boundary_growth"] > 5  # "ten layers compound it"
    assert (ns["product_within"].min(), ns["product_within"].max()) == (0.56, 0.6)
    assert ns["product_closest"] == 0.58
