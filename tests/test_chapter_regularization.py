"""Chapter 8's conclusions (weight regularization), pinned through the package.

The chapter's prose states these, in both frameworks; if a change to the
package made one false, the prose would be wrong, so this fails first.
Bounds are generous: they pin the conclusion, not the float.
"""

from __future__ import annotations

import numpy as np
import pytest

# PyTorch before TensorFlow (see the chapters' first cell).
from explodebook.backends import torch as torch_backend  # noqa: F401
from explodebook import RunSpec, run

from _chapter import run_cells

FRAMEWORKS = ("torch", "keras")
CLASSIC = RunSpec()
EDGE = CLASSIC.replace(learning_rate=1.5e-3)
TARGET_VARIANCE = 2.0e4  # of the unscaled regression target (about 20381)
RNN = RunSpec(model="rnn", seq_len=50, width=32, init="orthogonal",
              init_scale=1.0, learning_rate=0.1, steps=300)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_penalty_does_not_rescue_the_classic_mlp(framework: str) -> None:
    for penalty in ({"l2": 0.0}, {"l2": 0.01}, {"l2": 1.0}, {"l2": 10.0},
                    {"l1": 1.0}):
        trace = run(CLASSIC.replace(**penalty), framework)
        assert trace.diverged, penalty
        assert trace.first_nonfinite_step == 8, penalty


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_strong_l2_stabilizes_the_edge_run_at_a_cost_in_fit(framework: str) -> None:
    unregularized = run(EDGE, framework)
    assert unregularized.diverged and unregularized.first_nonfinite_step > 20
    # Weak penalties do not help.
    for l2 in (0.1, 0.3):
        assert run(EDGE.replace(l2=l2), framework).diverged, l2
    finals = []
    for l2 in (1.0, 3.0):
        trace = run(EDGE.replace(l2=l2), framework)
        assert not trace.diverged, l2
        # Bounded weights: the norm stays within a small factor of its start.
        norms = np.sqrt((trace.weight_norms**2).sum(axis=1))
        assert norms.max() < 30 * norms[0], l2
        finals.append(trace.final_loss())
    # l2 = 1 has learned something; l2 = 3 may end at about the mean
    # predictor's loss (Keras does: the chapter says so from the runs).
    assert finals[0] < TARGET_VARIANCE
    assert finals[1] > finals[0]  # stronger penalty, worse fit
    # ...and far worse than a smaller learning rate without any penalty.
    reference = run(CLASSIC.replace(learning_rate=1e-3), framework).final_loss()
    assert finals[0] > 100 * reference


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_penalty_on_recurrent_weights_prevents_the_rnn_explosion(framework: str) -> None:
    assert run(RNN, framework).diverged
    assert run(RNN.replace(l2=0.01), framework).diverged
    for penalty in ({"l2": 0.1}, {"l1": 0.1}):
        trace = run(RNN.replace(**penalty), framework)
        assert not trace.diverged, penalty
        # The recurrent layer's weights shrink instead of growing.
        assert trace.weight_norms[-1, 0] < trace.weight_norms[0, 0], penalty


def test_sgd_weight_decay_is_half_an_l2_penalty_adamw_is_decoupled() -> None:
    import torch
    from torch import nn

    from explodebook.data import batch_indices, dataset_for

    X, y = dataset_for(CLASSIC)
    idx = batch_indices(len(X), 32, 1, seed=CLASSIC.seed)[0]
    Xb, yb = torch.tensor(X[idx]), torch.tensor(y[idx])

    def step(make, l2=0.0):
        net = torch_backend.build(CLASSIC)
        before = [p.detach().clone() for p in net.parameters()]
        opt = make(net.parameters())
        loss = nn.functional.mse_loss(net(Xb), yb)
        if l2:
            loss = loss + l2 * sum(p.pow(2).sum() for n, p in net.named_parameters()
                                   if "weight" in n)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return [b - p.detach() for b, p in zip(before, net.parameters())], before

    wd = 0.1
    a, _ = step(lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=wd))
    b, _ = step(lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9), l2=wd / 2)
    assert all(torch.allclose(x, z, rtol=1e-5, atol=1e-7) for x, z in zip(a, b))
    plain, w0 = step(lambda ps: torch.optim.Adam(ps, lr=0.01))
    adamw, _ = step(lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=wd))
    coupled, _ = step(lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=wd))
    for d, p, w in zip(adamw, plain, w0):
        assert torch.allclose(d - p, 0.01 * wd * w, atol=1e-6)
    # Coupled decay reverses some of Adam's first steps: a full 2 * lr gap.
    assert float((coupled[0] - plain[0]).abs().max()) > 0.015


def test_the_prose_claims_only_what_is_checked() -> None:
    # Issue 18, item 10: the chapter says SGD's weight_decay and the penalty
    # agree "to float32 rounding" and shows the relative difference; pin it.
    chapter = run_cells("08", through="sgd_rel = ")
    assert chapter["sgd_rel"] < 1e-5
    # Every inline expression up to the classic MLP's runs evaluates, and the
    # step it shows is the one every run stops at (the loss is inf there).
    chapter = run_cells("08", through="lag = (")
    assert chapter["classic_step"] == 8
    baseline = chapter["classic_runs"]["none", "torch"]
    assert np.isinf(baseline.loss[8])
    # "The strongest penalty only makes its curve lag": it still explodes.
    strongest = chapter["classic_runs"]["l2 = 10", "torch"]
    assert strongest.grad_norm_total[7] > 1e6 * strongest.grad_norm_total[0]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_penalty_past_the_momentum_limit_stops_the_run_earlier(framework: str) -> None:
    # The predict-then-run exercise: SGD with momentum 0.9 at eta = 0.01 is
    # stable on the penalty alone only for l2 < (1 + beta) / eta = 190.
    from explodebook.metrics import total_weight_norm

    assert run(CLASSIC.replace(l2=100.0), framework).first_nonfinite_step > 8
    beyond = run(CLASSIC.replace(l2=200.0), framework)
    assert beyond.first_nonfinite_step < 8
    # The first step multiplies the kernels by 1 - 2 * eta * l2 = -3.
    norms = total_weight_norm(beyond)
    assert 2.5 < norms[1] / norms[0] < 3.5


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_clipping_at_the_typical_norm_beats_the_penalty_on_the_edge_run(framework: str) -> None:
    clipped = run(EDGE.replace(global_clipnorm=100.0), framework)
    assert not clipped.diverged
    assert clipped.final_loss() < 0.01 * run(EDGE.replace(l2=1.0), framework).final_loss()
    # The solution shows it next to the smaller learning rate without a penalty: below it.
    assert clipped.final_loss() < run(CLASSIC.replace(learning_rate=1e-3), framework).final_loss()
