"""PyTorch backend: recorded norms against references computed another way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explodebook.backends import torch as backend
from explodebook.data import batch_indices, dataset_for
from explodebook.spec import RunSpec
from explodebook.weights import initial_weights, layer_names


def first_batch(spec: RunSpec) -> tuple[np.ndarray, np.ndarray]:
    X, y = dataset_for(spec)
    idx = batch_indices(len(X), spec.batch_size, 1, seed=spec.seed)[0]
    return X[idx].astype(np.float64), y[idx].astype(np.float64)


def test_first_step_gradients_match_a_numpy_backprop_by_hand() -> None:
    spec = RunSpec(steps=1)
    (w1, w2) = initial_weights(spec)
    X, y = first_batch(spec)
    # forward: h = relu(X W1 + b1), p = h W2 + b2, loss = mean((p - y)^2)
    a = X @ w1["kernel"] + w1["bias"]
    h = np.maximum(a, 0)
    p = h @ w2["kernel"] + w2["bias"]
    dp = 2 * (p - y) / len(y)
    dW2, db2 = h.T @ dp, dp.sum(0)
    da = (dp @ w2["kernel"].T) * (a > 0)
    dW1, db1 = X.T @ da, da.sum(0)
    expected = [
        np.sqrt((dW1**2).sum() + (db1**2).sum()),
        np.sqrt((dW2**2).sum() + (db2**2).sum()),
    ]
    trace = backend.run(spec)
    np.testing.assert_allclose(trace.grad_norms[0], expected, rtol=1e-5)
    np.testing.assert_allclose(trace.loss[0], np.mean((p - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(
        trace.weight_norms[0],
        [np.sqrt((w["kernel"] ** 2).sum()) for w in (w1, w2)],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        trace.grad_max_abs[0],
        [max(np.abs(dW1).max(), np.abs(db1).max()), max(np.abs(dW2).max(), np.abs(db2).max())],
        rtol=1e-5,
    )


def grads_after_one_backward(spec: RunSpec) -> tuple[nn.Module, list[torch.Tensor]]:
    model = backend.build(spec)
    X, y = first_batch(spec)
    loss = nn.functional.mse_loss(model(torch.tensor(X, dtype=torch.float32)), torch.tensor(y, dtype=torch.float32))
    loss.backward()
    return model, [p for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("spec", [RunSpec(depth=3, steps=1), RunSpec(model="rnn", cell="lstm", seq_len=12, steps=1)])
def test_total_norm_is_what_clip_grad_norm_returns(spec: RunSpec) -> None:
    _, params = grads_after_one_backward(spec)
    total = nn.utils.clip_grad_norm_(params, max_norm=float("inf"))
    trace = backend.run(spec)
    assert trace.grad_norm_total[0] == pytest.approx(float(total), rel=1e-5)


def test_global_clipnorm_is_clip_grad_norm() -> None:
    spec = RunSpec(depth=2, global_clipnorm=1.0, steps=1)
    _, params = grads_after_one_backward(spec)
    nn.utils.clip_grad_norm_(params, 1.0)
    trace = backend.run(spec)
    after = np.sqrt((trace.clipped_grad_norms[0] ** 2).sum())
    assert after == pytest.approx(1.0, rel=1e-5)
    assert after == pytest.approx(float(torch.cat([p.grad.ravel() for p in params]).norm()), rel=1e-5)


def test_clipnorm_clips_each_variable_separately() -> None:
    threshold = 1.0
    spec = RunSpec(depth=2, clipnorm=threshold, steps=1)
    trace = backend.run(spec)
    model, params = grads_after_one_backward(spec)
    # each variable's gradient is rescaled to norm min(|g|, threshold)
    per_variable = [min(float(p.grad.norm()), threshold) for p in params]
    groups = backend.layer_weights(model, spec)
    sizes = [len(g) for g in groups]
    expected = [
        np.sqrt(sum(v**2 for v in per_variable[sum(sizes[:i]) : sum(sizes[: i + 1])]))
        for i in range(len(sizes))
    ]
    np.testing.assert_allclose(trace.clipped_grad_norms[0], expected, rtol=1e-5)
    # ...which is not the global clipping of the same gradients
    assert np.sqrt((trace.clipped_grad_norms[0] ** 2).sum()) > threshold * 1.5


def test_clipvalue_bounds_every_element() -> None:
    spec = RunSpec(clipvalue=0.5, steps=1)
    _, params = grads_after_one_backward(spec)
    nn.utils.clip_grad_value_(params, 0.5)
    trace = backend.run(spec)
    model = backend.build(spec)
    groups = backend.layer_weights(model, spec)
    flat = [p.grad for p in params]
    start = 0
    for layer, group in enumerate(groups):
        expected = np.sqrt(sum(float((g**2).sum()) for g in flat[start : start + len(group)]))
        start += len(group)
        assert trace.clipped_grad_norms[0, layer] == pytest.approx(expected, rel=1e-5)


def test_l2_penalty_adds_2_l2_w_to_the_kernel_gradients() -> None:
    l2 = 0.1
    plain = grads_after_one_backward(RunSpec(steps=1))[1]
    trace = backend.run(RunSpec(l2=l2, steps=1))
    weights = initial_weights(RunSpec())
    expected = []
    for layer, w in enumerate(weights):
        g_kernel = plain[2 * layer].grad.numpy().T + 2 * l2 * w["kernel"]
        g_bias = plain[2 * layer + 1].grad.numpy()  # biases are not penalized
        expected.append(np.sqrt((g_kernel**2).sum() + (g_bias**2).sum()))
    np.testing.assert_allclose(trace.grad_norms[0], expected, rtol=1e-5)
    # the recorded loss is the data term alone
    assert trace.loss[0] == pytest.approx(backend.run(RunSpec(steps=1)).loss[0])


def test_truncated_bptt_cuts_the_gradient_to_early_inputs() -> None:
    spec = RunSpec(model="rnn", seq_len=10, truncation=4, steps=1)
    model = backend.build(spec)
    x = torch.randn(3, 10, 2, requires_grad=True)
    model(x).sum().backward()
    per_step = x.grad.abs().sum(dim=(0, 2))
    assert torch.all(per_step[:6] == 0)
    assert torch.all(per_step[6:] > 0)


def test_redundant_recurrent_bias_is_frozen() -> None:
    model = backend.build(RunSpec(model="rnn", cell="lstm", steps=1))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "rnn.bias_hh_l0" not in trainable and "rnn.bias_ih_l0" in trainable
    gru = backend.build(RunSpec(model="rnn", cell="gru", steps=1))
    # a GRU's recurrent bias sits inside the reset gate: not redundant
    assert gru.rnn.bias_hh_l0.requires_grad


def test_gru_gate_order_is_converted() -> None:
    spec = RunSpec(model="rnn", cell="gru", width=3, steps=1)
    weights = initial_weights(spec)[0]
    model = backend.build(spec)
    z, r, h = np.split(weights["recurrent_kernel"].T, 3)
    torch_r, torch_z, torch_n = np.split(model.rnn.weight_hh_l0.detach().numpy(), 3)
    np.testing.assert_array_equal(torch_r, r)
    np.testing.assert_array_equal(torch_z, z)
    np.testing.assert_array_equal(torch_n, h)


def test_same_spec_twice_gives_identical_traces() -> None:
    spec = RunSpec(task="regression-scaled", steps=100, depth=2)
    assert backend.run(spec).equals(backend.run(spec))
    rnn = RunSpec(model="rnn", cell="gru", seq_len=15, steps=20)
    assert backend.run(rnn).equals(backend.run(rnn))


def test_classic_set_up_diverges_and_stops_at_the_first_nonfinite_step() -> None:
    trace = backend.run(RunSpec())
    assert trace.diverged
    step = trace.first_nonfinite_step
    assert trace.steps_run == step + 1
    assert np.all(np.isfinite(trace.loss[:step]))
    assert trace.first_nonfinite_layer in layer_names(RunSpec())


def test_nan_poisons_every_later_step_when_training_goes_on() -> None:
    trace = backend.run(RunSpec(steps=60, stop_on_nonfinite=False))
    assert trace.steps_run == 60
    step = trace.first_nonfinite_step
    assert step is not None
    assert np.all(~np.isfinite(trace.weight_norms[step + 1 :]))
    assert np.all(~np.isfinite(trace.loss[step + 1 :]))


def test_scaled_target_trains() -> None:
    trace = backend.run(RunSpec(task="regression-scaled", steps=400))
    assert not trace.diverged
    assert trace.final_loss() < 0.1 * trace.loss[0]


def test_huge_but_finite_gradients_are_not_called_non_finite() -> None:
    # float32 squares of ~1e19 overflow; the recorded norms must not
    spec = RunSpec(width=32, task="regression-scaled", steps=1, depth=31, init_scale=2.0)
    trace = backend.run(spec)
    assert np.all(np.isfinite(trace.grad_max_abs[0]))
    assert trace.grad_max_abs[0].max() > 1e18
    assert not trace.diverged
    assert np.all(np.isfinite(trace.grad_norms[0]))


# -- normalization, residual connections, warm-up ------------------------------


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_normalization_parameters_join_their_hidden_layer(kind: str) -> None:
    spec = RunSpec(depth=2, width=8, normalization=kind, l2=0.1, steps=1)
    model = backend.build(spec)
    groups = backend.layer_weights(model, spec)
    norm = model[0].norm
    assert isinstance(norm, nn.BatchNorm1d if kind == "batch" else nn.LayerNorm)
    assert norm.eps == 1e-3
    assert [len(g) for g in groups] == [4, 4, 2]
    assert groups[0][2] is norm.weight and groups[0][3] is norm.bias
    # gamma is called "weight" in PyTorch but is no kernel: not penalized
    assert all(p.dim() == 2 for p in backend._penalized(model, spec))
    if kind == "batch":
        assert norm.momentum == pytest.approx(0.01)  # Keras' momentum 0.99


def test_batch_norm_output_is_standardized_over_the_batch() -> None:
    spec = RunSpec(depth=1, width=8, normalization="batch", activation="linear", steps=1)
    model = backend.build(spec)
    X, _ = first_batch(spec)
    z = model[0](torch.tensor(X, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    a = X @ initial_weights(spec)[0]["kernel"]
    np.testing.assert_allclose(z.var(0), a.var(0) / (a.var(0) + 1e-3), rtol=1e-4)


def test_residual_blocks_add_their_input_except_the_first() -> None:
    spec = RunSpec(depth=3, width=20, residual=True, activation="linear", steps=1)
    model = backend.build(spec)
    X = torch.tensor(first_batch(spec)[0], dtype=torch.float32)
    w = initial_weights(spec)
    h1 = X @ torch.tensor(w[0]["kernel"])  # width 20 = input size: still no skip
    h2 = h1 + h1 @ torch.tensor(w[1]["kernel"])
    with torch.no_grad():
        np.testing.assert_allclose(model[1](model[0](X)).numpy(), h2.numpy(), rtol=1e-5, atol=1e-5)


def test_warmup_changes_the_learning_rate_linearly_per_step() -> None:
    spec = RunSpec(task="regression-scaled", warmup_steps=4, momentum=0.0, steps=6)
    factor = backend._warmup_factor(spec.warmup_steps)
    assert [factor(t) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # With plain SGD, step t moves the weights by lr_t * g_t: replay it.
    model = backend.build(spec)
    X, y = dataset_for(spec)
    params = list(model.parameters())
    for t, idx in enumerate(batch_indices(len(X), spec.batch_size, spec.steps, seed=spec.seed)):
        loss = nn.functional.mse_loss(model(torch.from_numpy(X[idx])), torch.from_numpy(y[idx]))
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= spec.learning_rate * factor(t) * g
    trace = backend.run(spec.replace(steps=7))
    final = np.sqrt(sum(float((p.detach() ** 2).sum()) for p in params[:2]))
    np.testing.assert_allclose(trace.weight_norms[6, 0], final, rtol=1e-5)


# -- the loop's shortcuts do not change the trace ------------------------------


@pytest.mark.parametrize("steps, nbytes", [(7, backend.GATHER_BYTES), (200, 1)])
def test_gathering_batches_in_blocks_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, steps: int, nbytes: int
) -> None:
    # Blocks of 7 steps, and (nbytes=1) blocks of one step each, must feed
    # exactly the batches of the default blocks of 200.
    spec = RunSpec(task="regression-scaled", steps=30)
    expected = backend.run(spec)
    monkeypatch.setattr(backend, "GATHER_STEPS", steps)
    monkeypatch.setattr(backend, "GATHER_BYTES", nbytes)
    assert backend.run(spec).equals(expected)


def test_the_loop_stops_within_32_steps_of_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[int] = []

    class Counting(backend.LayerRecorder):
        def before_clipping(self, loss: torch.Tensor) -> None:
            recorded.append(1)
            super().before_clipping(loss)

    monkeypatch.setattr(backend, "LayerRecorder", Counting)
    trace = backend.run(RunSpec(stop_on_nonfinite=True))
    assert trace.first_nonfinite_step is not None
    assert trace.first_nonfinite_step < len(recorded) <= trace.first_nonfinite_step + 32
