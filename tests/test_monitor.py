"""Gradient monitors on the reader's own models, in both frameworks.

Each monitor's norms are checked against norms computed by hand in the
same loop; a model built by hand like the classic MLP, given the same
initial weights and batches, must diverge where `explodebook.run` does; the
blame for the first non-finite value must name the right layer.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

# PyTorch first, then TensorFlow (see explodebook.backends.get).
import torch  # noqa: I001
from torch import nn

from explodebook.monitor import torch as tmon
from explodebook.monitor import keras as kmon
import keras
import tensorflow as tf

import explodebook
from explodebook import RunSpec, diagnose
from explodebook.data import batch_indices, dataset_for
from explodebook.weights import initial_weights

CLASSIC = RunSpec()


def _classic_batches(steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y = dataset_for(CLASSIC)
    idx = batch_indices(len(X), CLASSIC.batch_size, steps, seed=CLASSIC.seed)
    return X, y, idx


# -- PyTorch ---------------------------------------------------------------


class SqrtGate(nn.Module):
    """``x * sqrt(a)`` with ``a`` starting at 0: a finite loss whose gradient
    with respect to ``a`` is infinite, and finite everywhere else."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sqrt(self.a)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))
        self.scale = nn.Parameter(torch.ones(4))  # owned by the model itself
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(self.head(self.body(x) * self.scale))


def _layer_norm(tensors: list[torch.Tensor]) -> float:
    return float(np.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors)))


def _torch_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, generator=g) * 3, torch.randn(16, 2, generator=g)


@pytest.mark.parametrize("mode", ["hooks", "manual"])
def test_torch_norms_equal_norms_computed_by_hand(mode: str) -> None:
    torch.manual_seed(0)
    model = Net()
    X, y = _torch_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.MSELoss()
    # named_modules() order: the model itself (scale), body.0, body.2, head.
    order = [[model.scale], list(model.body[0].parameters()), list(model.body[2].parameters()),
             list(model.head.parameters())]  # fmt: skip
    expected: dict[str, list] = {"loss": [], "grad": [], "clipped": [], "weight": [], "max": []}
    hooked = mode == "hooks"
    monitor = tmon.GradientMonitor(model, opt if hooked else None, loss_fn=loss_fn)
    with monitor:
        for step in range(5):
            opt.zero_grad()
            loss = loss_fn(model(X[step::2]), y[step::2])
            loss.backward()
            if not hooked:
                monitor.record(loss)
            expected["loss"].append(loss.item())
            expected["grad"].append([_layer_norm([p.grad for p in g]) for g in order])
            expected["weight"].append([_layer_norm([p.detach() for p in g]) for g in order])
            expected["max"].append([max(float(p.grad.abs().max()) for p in g) for g in order])
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            if not hooked:
                monitor.record_clipped()
            expected["clipped"].append([_layer_norm([p.grad for p in g]) for g in order])
            opt.step()
    trace = monitor.trace()
    assert trace.framework == "torch"
    assert trace.layers == ["Net", "body.0", "body.2", "head"]  # frozen layer left out
    assert trace.extra["parameters"]["Net"] == ["scale"]
    np.testing.assert_allclose(trace.loss, expected["loss"], rtol=1e-6)
    np.testing.assert_allclose(trace.grad_norms, expected["grad"], rtol=1e-6)
    np.testing.assert_allclose(trace.clipped_grad_norms, expected["clipped"], rtol=1e-6)
    np.testing.assert_allclose(trace.weight_norms, expected["weight"], rtol=1e-6)
    np.testing.assert_allclose(trace.grad_max_abs, expected["max"], rtol=1e-6)
    np.testing.assert_allclose(
        trace.grad_norm_total, np.sqrt((np.array(expected["grad"]) ** 2).sum(1)), rtol=1e-6
    )
    assert not trace.diverged


def _classic_torch_model() -> nn.Sequential:
    # A reader's own model, built like the book's classic MLP.
    model = nn.Sequential(nn.Linear(20, 25), nn.ReLU(), nn.Linear(25, 1))
    with torch.no_grad():
        for linear, w in zip([model[0], model[2]], initial_weights(CLASSIC)):
            linear.weight.copy_(torch.from_numpy(w["kernel"].T.copy()))
            linear.bias.copy_(torch.from_numpy(w["bias"]))
    return model


def test_torch_monitor_on_the_classic_mlp_diverges_where_run_does() -> None:
    X, y, idx = _classic_batches(30)
    X, y = torch.from_numpy(X.copy()), torch.from_numpy(y.copy())
    model = _classic_torch_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.MSELoss()
    with tmon.GradientMonitor(model, opt, loss_fn=loss_fn) as monitor:
        for batch in idx:  # the reader's loop, unchanged
            opt.zero_grad()
            loss_fn(model(X[batch]), y[batch]).backward()
            opt.step()
    mine = monitor.trace()
    ref = explodebook.run(CLASSIC, "torch")
    assert mine.first_nonfinite_step == ref.first_nonfinite_step == 8
    assert mine.first_nonfinite_kind == ref.first_nonfinite_kind == "gradient"
    assert mine.first_nonfinite_layer == "2"  # the output layer, as in ref
    assert mine.extra["first_nonfinite_parameter"].startswith("2.")
    n = ref.steps_run - 1  # the finite steps
    np.testing.assert_allclose(mine.grad_norms[:n], ref.grad_norms[:n], rtol=1e-4)
    np.testing.assert_allclose(mine.weight_norms[:n], ref.weight_norms[:n], rtol=1e-4)
    np.testing.assert_allclose(mine.loss[:n], ref.loss[:n], rtol=1e-4)
    assert mine.steps_run == 30  # the monitor keeps watching after NaN
    assert diagnose(mine).verdict == "exploding"


def test_torch_blame_names_the_layer_that_went_nonfinite() -> None:
    # A gradient: the gate's sqrt(0) has an infinite derivative, nothing else does.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), SqrtGate(4), nn.Linear(4, 1))
    X, y = torch.randn(8, 3), torch.randn(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with tmon.GradientMonitor(model, opt) as monitor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(X), y)
        monitor.log_loss(loss)
        loss.backward()
        opt.step()
    trace = monitor.trace()
    assert (trace.first_nonfinite_step, trace.first_nonfinite_kind) == (0, "gradient")
    assert trace.first_nonfinite_layer == "1"
    assert trace.extra["first_nonfinite_parameter"] == "1.a"
    assert np.isfinite(trace.loss[0]) and np.isfinite(trace.grad_norms[0, [0, 2]]).all()

    # A weight: NaN put into the middle of a deeper model at step 2.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    monitor = tmon.GradientMonitor(model)  # manual mode
    for step in range(4):
        if step == 2:
            with torch.no_grad():
                model[2].bias[1] = float("nan")
        model.zero_grad()
        loss = nn.functional.mse_loss(model(X), y)
        loss.backward()
        monitor.record(loss)
    trace = monitor.trace()
    assert (trace.first_nonfinite_step, trace.first_nonfinite_kind) == (2, "weight")
    assert trace.first_nonfinite_layer == "2"
    assert trace.extra["first_nonfinite_parameter"] == "2.bias"


def test_torch_hooks_are_removed_on_close() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    X, y = torch.randn(8, 3), torch.randn(8, 1)

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()

    with tmon.GradientMonitor(model, opt, loss_fn=loss_fn) as monitor:
        step()
        step()
    assert monitor.steps_recorded == 2
    step()
    assert monitor.steps_recorded == 2
    assert not opt._optimizer_step_pre_hooks
    assert not loss_fn._forward_hooks
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())
    assert monitor.trace().steps_run == 2
    monitor.close()  # idempotent


def test_torch_errors_are_clear() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        tmon.GradientMonitor(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no trainable parameters"):
        tmon.GradientMonitor(nn.ReLU())
    model = nn.Linear(2, 1)
    with pytest.raises(TypeError, match="log_loss"):
        tmon.GradientMonitor(model, loss_fn=nn.functional.mse_loss)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Optimizer"):
        tmon.GradientMonitor(model, optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no step"):
        tmon.GradientMonitor(model).trace()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with tmon.GradientMonitor(model, opt) as monitor:  # no loss_fn, no log_loss
        model(torch.ones(3, 2)).sum().backward()
        opt.step()
    with pytest.raises(ValueError, match="has no loss"):
        monitor.trace()
    with pytest.raises(ValueError, match="single number"):
        tmon.GradientMonitor(model).record(torch.ones(3))


def test_importing_the_monitor_package_imports_no_framework() -> None:
    code = (
        "import sys, explodebook.monitor; "
        "print(any(m in sys.modules for m in ('torch', 'tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- Keras -------------------------------------------------------------------


class KerasSqrtGate(keras.layers.Layer):
    """The Keras twin of `SqrtGate`."""

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.a = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="a")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x * keras.ops.sqrt(self.a)


class TapeReference(keras.callbacks.Callback):
    """Computes each batch's gradients by hand (a plain GradientTape) at batch begin.

    Needs the batches in order (``shuffle=False``) and equal batch sizes.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        super().__init__()
        self.X, self.y, self.batch_size = X, y, batch_size
        self.rows: list[dict[str, list[float]]] = []
        self.step = 0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        n = len(self.X) // self.batch_size
        k = self.step % n
        self.step += 1
        xb = self.X[k * self.batch_size : (k + 1) * self.batch_size]
        yb = self.y[k * self.batch_size : (k + 1) * self.batch_size]
        layers = [layer for layer in self.model.layers if layer.trainable_variables]
        variables = [v for layer in layers for v in layer.trainable_variables]
        with tf.GradientTape() as tape:
            loss = keras.losses.MeanSquaredError()(yb, self.model(xb, training=True))
        grads = dict(zip([id(v) for v in variables], tape.gradient(loss, variables)))
        opt = self.model.optimizer

        def norm(ts: list) -> float:
            return float(np.sqrt(sum(np.sum(np.asarray(t, np.float64) ** 2) for t in ts)))

        per_layer = [[grads[id(v)] for v in layer.trainable_variables] for layer in layers]
        self.rows.append(
            {
                "loss": float(loss),
                "grad": [norm(g) for g in per_layer],
                "clipped": [norm([tf.clip_by_norm(t, opt.clipnorm) for t in g]) for g in per_layer],
                "max": [max(float(tf.reduce_max(tf.abs(t))) for t in g) for g in per_layer],
                "weight": [norm(layer.trainable_variables) for layer in layers],
            }
        )


def test_keras_norms_equal_norms_computed_by_hand_with_fit() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(24, 3)) * 3).astype("float32")
    y = rng.normal(size=(24, 2)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(5, activation="tanh", name="hidden"),
            keras.layers.Dense(4, name="middle"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, clipnorm=0.5), loss="mse")
    monitor = kmon.GradientMonitor()
    reference = TapeReference(X, y, 8)
    # Three epochs of three batches; the reference runs first in each batch.
    model.fit(X, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
              callbacks=[reference, monitor])  # fmt: skip
    trace = monitor.trace()
    expected = {k: np.array([row[k] for row in reference.rows]) for k in reference.rows[0]}
    assert trace.framework == "keras"
    assert trace.layers == ["hidden", "middle", "head"]
    assert trace.steps_run == 9
    np.testing.assert_allclose(trace.loss, expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(trace.grad_norms, expected["grad"], rtol=1e-5)
    np.testing.assert_allclose(trace.clipped_grad_norms, expected["clipped"], rtol=1e-5)
    np.testing.assert_allclose(trace.grad_max_abs, expected["max"], rtol=1e-5)
    np.testing.assert_allclose(trace.weight_norms, expected["weight"], rtol=1e-5)
    # fit's methods are restored and its training function dropped.
    assert "apply" not in vars(model.optimizer) and "compute_loss" not in vars(model)
    assert model.train_function is None


def _classic_keras_model(**compile_args: object) -> keras.Model:
    w1, w2 = initial_weights(CLASSIC)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(25, activation="relu", name="hidden"),
            keras.layers.Dense(1, name="output"),
        ]
    )
    model.get_layer("hidden").set_weights([w1["kernel"], w1["bias"]])
    model.get_layer("output").set_weights([w2["kernel"], w2["bias"]])
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse", **compile_args)
    return model


@pytest.mark.parametrize(
    "compile_args",
    [{}, {"jit_compile": True, "steps_per_execution": 4}],
    ids=["default", "xla-steps_per_execution-4"],
)
def test_keras_monitor_on_the_classic_mlp_diverges_where_run_does(compile_args: dict) -> None:
    X, y, idx = _classic_batches(16)
    model = _classic_keras_model(**compile_args)
    monitor = kmon.GradientMonitor()
    # The run's batches, in its order: one epoch of 8 batches, then another.
    model.fit(X[idx[:8].ravel()], y[idx[:8].ravel()], batch_size=32, shuffle=False,
              verbose=0, callbacks=[monitor])  # fmt: skip
    model.fit(X[idx[8:].ravel()], y[idx[8:].ravel()], batch_size=32, shuffle=False,
              validation_data=(X[:64], y[:64]), verbose=0, callbacks=[monitor])  # fmt: skip
    mine = monitor.trace()
    ref = explodebook.run(CLASSIC, "keras")
    assert mine.steps_run == 16
    assert mine.first_nonfinite_step == ref.first_nonfinite_step == 8
    assert mine.first_nonfinite_kind == ref.first_nonfinite_kind == "gradient"
    assert mine.first_nonfinite_layer == ref.first_nonfinite_layer == "output"
    n = ref.steps_run - 1
    np.testing.assert_allclose(mine.grad_norms[:n], ref.grad_norms[:n], rtol=1e-4)
    np.testing.assert_allclose(mine.loss[:n], ref.loss[:n], rtol=1e-4)
    assert diagnose(mine).verdict == "exploding"


def test_keras_blame_names_the_layer_that_went_nonfinite() -> None:
    keras.utils.set_random_seed(0)
    X = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = np.ones((16, 1), "float32")
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, name="first"), KerasSqrtGate(name="gate"),
         keras.layers.Dense(1, name="last")]
    )  # fmt: skip
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    monitor = kmon.GradientMonitor()
    model.fit(X, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    trace = monitor.trace()
    assert (trace.first_nonfinite_step, trace.first_nonfinite_kind) == (0, "gradient")
    assert trace.first_nonfinite_layer == "gate"
    assert np.isfinite(trace.loss[0]) and np.isfinite(trace.grad_norms[0, [0, 2]]).all()

    # A NaN weight in the first layer: blamed on it, as a weight.
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, name="first"), keras.layers.Dense(1, name="last")]
    )
    kernel, bias = model.get_layer("first").get_weights()
    bias[2] = np.nan
    model.get_layer("first").set_weights([kernel, bias])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    monitor = kmon.GradientMonitor()
    model.fit(X, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    trace = monitor.trace()
    assert (trace.first_nonfinite_step, trace.first_nonfinite_kind) == (0, "weight")
    assert trace.first_nonfinite_layer == "first"
    assert trace.extra["first_nonfinite_parameter"].endswith("first/bias")
    assert trace.steps_run == 4


def test_keras_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="no step"):
        kmon.GradientMonitor().trace()
    with pytest.raises(TypeError, match="keras.Model"):
        kmon.layer_groups("model")  # type: ignore[arg-type]
    frozen = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, trainable=False)])
    with pytest.raises(ValueError, match="no trainable variables"):
        kmon.layer_groups(frozen)
    with pytest.raises(ValueError, match="capacity"):
        kmon.GradientMonitor(capacity=1)
