"""Chapter 5's conclusions (rectified linear activation), pinned through the package.

The chapter's prose states these, in both frameworks; if a change to the
package made one false, the prose would be wrong, so this fails first.
Bounds are generous: they pin the conclusion, not the float.
"""

from __future__ import annotations

import pytest

from explodebook import RunSpec, run, theory
from explodebook.metrics import first_layer_gradient

FRAMEWORKS = ("torch", "keras")
AT_INIT = RunSpec(depth=20, width=32, task="regression-scaled", steps=1)
SIGMOID = AT_INIT.replace(activation="sigmoid", init="xavier")
TANH = AT_INIT.replace(activation="tanh", init="xavier")
RELU = AT_INIT.replace(activation="relu", init="he")


def first_over_output(trace) -> float:
    return first_layer_gradient(trace) / float(trace.grad_norms[0][-1])


def test_derivative_bounds() -> None:
    bounds = theory.ACTIVATION_DERIVATIVE_BOUND
    assert (bounds["sigmoid"], bounds["tanh"], bounds["relu"]) == (0.25, 1.0, 1.0)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_profile_at_init(framework: str) -> None:
    # Sigmoid vanishes towards the input; tanh + Glorot and ReLU + He keep
    # the size within a small factor; ReLU with He x 1.5 is inflated.
    assert first_over_output(run(SIGMOID, framework)) < 1e-6
    assert 0.1 < first_over_output(run(TANH, framework)) < 10
    assert 0.05 < first_over_output(run(RELU, framework)) < 10
    relu15 = run(RELU.replace(init_scale=1.5), framework)
    assert first_layer_gradient(relu15) > 1e5 * first_layer_gradient(run(RELU, framework))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_weight_scale_decides(framework: str) -> None:
    g1 = first_layer_gradient(run(RELU, framework))
    # About s**2 per layer above He's scale, about s per layer below it.
    up = (first_layer_gradient(run(RELU.replace(init_scale=1.5), framework)) / g1) ** (1 / 20)
    down = (first_layer_gradient(run(RELU.replace(init_scale=0.5), framework)) / g1) ** (1 / 20)
    assert 1.9 < up < 2.6
    assert 0.4 < down < 0.6
    # Tanh with large weights explodes; the sigmoid does not, even at 16x.
    assert first_layer_gradient(run(TANH.replace(init_scale=4.0), framework)) > 100
    for s in (1.0, 4.0, 16.0):
        assert first_over_output(run(SIGMOID.replace(init_scale=s), framework)) < 1


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_before_and_after(framework: str) -> None:
    finals = {}
    for name, spec in (("sigmoid", SIGMOID), ("tanh", TANH), ("relu", RELU)):
        trace = run(spec.replace(steps=300), framework)
        assert not trace.diverged, name
        finals[name] = trace.final_loss()
    assert finals["sigmoid"] > 0.8  # stalls at the level of predicting the mean
    assert finals["tanh"] < 0.2 and finals["relu"] < 0.2
    exploded = run(RELU.replace(steps=300, init_scale=1.5), framework)
    assert exploded.diverged and exploded.first_nonfinite_step <= 5


def test_the_gradient_is_the_jacobians_from_the_output_down() -> None:
    """dL/dh_k = dL/dh_D J_D J_(D-1) ... J_(k+1), with J_l = diag(phi'(a_l)) W_l
    (row vectors), as the chapter writes it; layers of different widths make
    any other order fail."""
    import torch

    torch.manual_seed(0)
    widths = [3, 5, 4, 6, 2]  # h_0 ... h_D, D = 4
    weights = [torch.randn(widths[l + 1], widths[l], dtype=torch.float64) for l in range(4)]
    h0 = torch.randn(widths[0], dtype=torch.float64)
    hs, pre = [h0], []
    for W in weights:
        pre.append(W @ hs[-1])
        hs.append(torch.tanh(pre[-1]))
    k = 1
    hk = hs[k].detach().requires_grad_(True)
    h = hk
    for W in weights[k:]:
        h = torch.tanh(W @ h)
    loss = (h**2).sum()
    (grad_k,) = torch.autograd.grad(loss, hk)
    row = 2 * hs[-1]  # dL/dh_D
    for l in range(4, k, -1):  # J_D first, down to J_(k+1)
        J = torch.diag(1 - torch.tanh(pre[l - 1]) ** 2) @ weights[l - 1]
        row = row @ J
    assert torch.allclose(row, grad_k)


def test_he_fan_in_keeps_the_backward_signal_between_equal_widths() -> None:
    # He's 2/fan-in is derived for the forward pass; between layers of one
    # width it keeps the backward signal's size too, in expectation.
    import numpy as np

    ratios = []
    for seed in range(20):
        g = theory.mlp_backprop_norms(20, 32, 1.0, "relu", "he", seed=seed).hidden_grad_norms
        ratios.append(np.log(g[0] / g[-1]))
    assert abs(np.mean(ratios)) < np.log(2)


def test_exercise_solutions_quote_the_runs() -> None:
    import math
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _chapter import run_cells

    ns = run_cells("05", "lr_loss =")
    # relu-ex-he: one drawn He-uniform layer keeps the variance, n sigma^2 about 2
    assert abs(ns["he_n_var"] - 2) < 0.2 and abs(ns["he_ratio"] - 1) < 0.15
    # relu-ex-depth: s**2 per layer holds from 5 to 10 layers, overshoots over 35
    norms, growth = ns["depth_norms"], ns["per_layer_growth"]
    for torch_norm, keras_norm in norms.values():
        assert math.isclose(torch_norm, keras_norm, rel_tol=1e-4)
    assert abs(growth(5, 10) - 1.44) < 0.1 and growth(20, 40) < 1.35
    assert 1.44**35 / (norms[40][0] / norms[5][0]) > 5 and norms[40][0] > 1e5
    # relu-ex-lr: trains at 0.001 and 0.01, stalls at the mean at 0.03, explodes at 0.1
    loss, runs = ns["lr_loss"], ns["lr_runs"]
    for fw in FRAMEWORKS:
        assert not runs[0.001, fw].diverged and loss[0.001, fw] < 0.5
        assert loss[0.01, fw] < loss[0.001, fw]
        assert not runs[0.03, fw].diverged and 0.9 < loss[0.03, fw] < 1.1
        assert runs[0.1, fw].diverged and runs[0.1, fw].first_nonfinite_step < 10
