"""Chapter 4's conclusions (re-design the network), pinned through the package.

The chapter's prose states these, in both frameworks; if a change to the
package made one false, the prose would be wrong, so this fails first.
Bounds are generous: they pin the conclusion, not the float.
"""

from __future__ import annotations

import numpy as np
import pytest

from explodebook import RunSpec, run

FRAMEWORKS = ("torch", "keras")
DEEP = RunSpec(depth=10, width=32, init_scale=1.2, task="regression-scaled", steps=300)
CLASSIC = RunSpec()
TBPTT = RunSpec(model="rnn", width=32, seq_len=50, init="orthogonal", init_scale=2.0, steps=100)
LEARNABLE = RunSpec(
    model="rnn", width=32, seq_len=10, init="xavier", optimizer="adam", learning_rate=0.01,
    steps=500,
)  # fmt: skip
BASELINE = 1 / 6  # the adding problem: always answering 1.0


# -- fewer layers -------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_gradient_gain_of_s_1_2_grows_by_about_s_squared_per_layer(framework: str) -> None:
    depths = [1, 2, 4, 6, 10]
    at_init = DEEP.replace(steps=1)

    def gain(depth: int) -> float:
        ratios = [
            run(at_init.replace(depth=depth, seed=s), framework).grad_norm_total[0]
            / run(at_init.replace(depth=depth, seed=s, init_scale=1.0), framework).grad_norm_total[0]
            for s in (1, 2)
        ]
        return float(np.exp(np.mean(np.log(ratios))))

    gains = np.array([gain(d) for d in depths])
    assert np.all(np.diff(gains) > 0)  # every layer added multiplies it
    rate = float(np.exp(np.polyfit(depths, np.log(gains), 1)[0]))
    assert 1.3 < rate < 1.6  # about 1.2**2 = 1.44
    assert gains[-1] > 10 * gains[1]  # 10 layers against 2


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_shallow_networks_train_and_deep_ones_diverge(framework: str) -> None:
    for depth in (1, 2, 3, 4):
        trace = run(DEEP.replace(depth=depth), framework)
        assert not trace.diverged and trace.final_loss() < 0.5, depth
    fifth = run(DEEP.replace(depth=5), framework)  # neither diverges nor learns
    assert not fifth.diverged and fifth.final_loss() > 0.5
    for depth in (6, 8, 10):
        assert run(DEEP.replace(depth=depth), framework).first_nonfinite_step <= 10, depth


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_he_scale_keeps_the_gradient_only_on_average(framework: str) -> None:
    # At s = 1 the geometric mean of the initial gradient over 16 networks
    # does not grow with depth, but its spread from network to network does.
    he = DEEP.replace(init_scale=1.0, steps=1)
    norms = {
        d: np.array([run(he.replace(depth=d, seed=s), framework).grad_norm_total[0]
                     for s in range(1, 17)])
        for d in (1, 20)
    }
    means = {d: float(np.exp(np.log(v).mean())) for d, v in norms.items()}
    assert 0.5 < means[20] / means[1] < 3  # at s = 1.2, 20 layers would give ~1.44**19
    spread = {d: v.max() / v.min() for d, v in norms.items()}
    assert spread[20] > 10 * spread[1]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_classic_explodes_without_depth_and_trains_on_a_scaled_target(framework: str) -> None:
    trace = run(CLASSIC, framework)
    assert trace.first_nonfinite_step == 8
    assert np.isinf(trace.loss[8])  # the chapter says inf at that step, not NaN
    assert run(CLASSIC.replace(depth=2), framework).diverged
    scaled = run(CLASSIC.replace(task="regression-scaled"), framework)
    assert not scaled.diverged and scaled.final_loss() < 0.05


# -- batch size ---------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_smaller_batches_give_noisier_and_larger_gradients(framework: str) -> None:
    probe = CLASSIC.replace(learning_rate=1e-12, steps=200)
    rms = {}
    for b in (1, 32, 500):
        norms = run(probe.replace(batch_size=b), framework).grad_norm_total
        rms[b] = float(np.sqrt(np.mean(norms**2)))
        if b == 500:
            assert np.ptp(norms) < 1e-3 * norms.mean()  # the full batch: no noise
    assert rms[1] > 2 * rms[32] > 2 * rms[500]
    assert rms[1] > 4 * rms[500]


def test_batch_noise_follows_the_sampling_formula() -> None:
    per_sample = run(CLASSIC.replace(learning_rate=1e-12, batch_size=1, steps=500)).grad_norm_total
    full = run(CLASSIC.replace(learning_rate=1e-12, batch_size=500, steps=1)).grad_norm_total[0]
    sigma2 = np.mean(per_sample**2) - full**2
    n = 500
    for b in (8, 32, 128):
        measured = run(CLASSIC.replace(learning_rate=1e-12, batch_size=b, steps=200)).grad_norm_total
        predicted = np.sqrt(full**2 + sigma2 / b * (n - b) / (n - 1))
        assert 0.8 < np.sqrt(np.mean(measured**2)) / predicted < 1.25, b


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_batch_size_diverges_and_small_ones_first(framework: str) -> None:
    steps = [run(CLASSIC.replace(batch_size=b), framework).first_nonfinite_step for b in (1, 32, 500)]
    assert all(s is not None for s in steps)
    assert steps[0] < steps[1] < steps[2] < 50
    for b in (1, 32, 500):
        assert run(DEEP.replace(batch_size=b), framework).first_nonfinite_step <= 10, b


def test_sum_loss_scales_the_gradient_with_the_batch_and_mean_does_not() -> None:
    import torch
    from torch import nn

    from explodebook.backends import torch as torch_backend
    from explodebook.data import dataset_for

    X, y = dataset_for(CLASSIC)
    net = torch_backend.build(CLASSIC)

    def norm(b: int, reduction: str) -> float:
        net.zero_grad()
        nn.MSELoss(reduction=reduction)(net(torch.tensor(X[:b])), torch.tensor(y[:b])).backward()
        return float(torch.sqrt(sum(p.grad.square().sum() for p in net.parameters())))

    mean = [norm(b, "mean") for b in (1, 32, 500)]
    total = [norm(b, "sum") for b in (1, 32, 500)]
    assert max(mean) / min(mean) < 20
    assert total[2] / total[0] > 20 and total[2] > total[1] > total[0]


# -- truncated BPTT -------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_truncation_shrinks_the_exploding_recurrent_gradient(framework: str) -> None:
    at_init = TBPTT.replace(steps=1)
    norms = [run(at_init.replace(truncation=k), framework).grad_norms[0, 0] for k in (None, 10, 2)]
    assert np.all(np.diff(norms) < 0)  # shorter truncation, smaller gradient
    assert norms[0] > 100 * norms[1]


def test_hand_written_detach_loop_matches_the_package() -> None:
    import torch
    from torch import nn

    from explodebook.backends import torch as torch_backend
    from explodebook.data import batch_indices, dataset_for

    spec = TBPTT.replace(truncation=10, steps=1)
    X, y = dataset_for(spec)
    idx = batch_indices(len(X), 32, 1, seed=spec.seed)[0]
    model = torch_backend.build(spec.replace(truncation=None))
    h = None
    for chunk in torch.tensor(X[idx]).split(10, dim=1):
        if h is not None:
            h = h.detach()
        out, h = model.rnn(chunk, h)
    nn.functional.mse_loss(model.head(out[:, -1]), torch.tensor(y[idx])).backward()
    by_hand = torch.sqrt(sum(p.grad.square().sum() for p in model.rnn.parameters() if p.grad is not None))
    assert float(by_hand) == pytest.approx(run(spec).grad_norms[0, 0], rel=1e-4)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_full_bptt_is_thrown_and_truncated_is_not_but_neither_learns(framework: str) -> None:
    full = run(TBPTT, framework)
    cut = run(TBPTT.replace(truncation=10), framework)
    assert full.weight_norms[-1, 0] > 10 * full.weight_norms[0, 0]
    assert cut.weight_norms[-1, 0] < 1.5 * cut.weight_norms[0, 0]
    assert np.median(full.grad_norms[10:, 0]) < 1e-3 < 0.05 < np.median(cut.grad_norms[10:, 0])
    assert full.final_loss() > 0.9 * BASELINE and cut.final_loss() > 0.9 * BASELINE


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_shorter_truncation_learns_less(framework: str) -> None:
    finals = [run(LEARNABLE.replace(truncation=k), framework).final_loss() for k in (None, 5, 1)]
    assert finals[0] < 0.03
    assert finals[2] > 1.2 * finals[1] > 1.5 * finals[0]  # rises as k falls
    assert finals[2] > 3 * finals[0]
    # below 1/12 even at k <= 5: the shared weights generalize a little
    assert all(f < 1 / 12 for f in finals[1:])


def test_chapter_prose_values_come_from_its_runs() -> None:
    # The numbers the exercises' solutions quote are computed by the page
    # (section 4.1, the batch size) from the runs they ask for.
    from _chapter import run_cells

    ns = run_cells("04a", "summed_step = ")
    assert ns["summed_step"][32] == run(CLASSIC).first_nonfinite_step == 8
    assert ns["summed_step"][32] < ns["summed_step"][8] < ns["summed_step"][1]
    assert ns["safe_lr"][500] > ns["safe_lr"][32] and ns["safe_lr"][1] is None


def test_main_page_prose_values_come_from_its_runs() -> None:
    from _chapter import run_cells

    shown = run_cells("04", "def depth_frame")["_shown"]
    assert shown["classic_loss_kind"] == "inf"
    assert float(shown['f"{he_spread[-1]:.0f}"']) > 10 * float(shown['f"{he_spread[0]:.1f}"'])


# -- the exercises' claims --------------------------------------------------------


def test_gain_at_s_1_1_is_below_the_s_squared_rule_and_above_the_backward_pass_alone() -> None:
    # rd-ex-predict-gain: s**(2L) over-predicts a little, s**L under-predicts.
    at_init = DEEP.replace(steps=1)
    for s in (1.1, 1.2):
        ratio = np.exp(np.mean([
            np.log(run(at_init.replace(init_scale=s, seed=seed)).grad_norm_total[0]
                   / run(at_init.replace(init_scale=1.0, seed=seed)).grad_norm_total[0])
            for seed in (1, 2)
        ]))  # fmt: skip
        assert s**10 < ratio < s**20, s


def test_he_scale_spread_is_smaller_in_wider_networks() -> None:
    # rd-ex-predict-width: at 20 layers, width 128 scatters less than width 32.
    he = DEEP.replace(init_scale=1.0, steps=1, depth=20)
    spread = {}
    for width in (32, 128):
        norms = [run(he.replace(width=width, seed=s)).grad_norm_total[0] for s in range(1, 17)]
        spread[width] = max(norms) / min(norms)
    assert spread[128] < spread[32] / 1.5 and spread[128] > 10


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_truncation_changes_almost_nothing_where_the_gradient_vanishes(framework: str) -> None:
    # rd-ex-predict-vanishing: at sigma = 0.5 the dropped terms are negligible.
    small = TBPTT.replace(init_scale=0.5, steps=1)
    ratio = run(small, framework).grad_norms[0, 0] / run(small.replace(truncation=10), framework).grad_norms[0, 0]
    assert abs(ratio - 1) < 0.01
