"""Overhead of the gradient monitors (`explodebook.monitor`) on a reader's loop.

Run with ``.venv/bin/python benchmarks/monitor_overhead.py``; prints a
Markdown table (``--out FILE`` also writes it). Not part of the tests:
timings depend on the machine and on what else it is doing.

Per model, medians over ``--repeats`` of the time per training step of:

- PyTorch: (a) the bare loop; (b) the same loop with
  ``explodebook.monitor.torch.GradientMonitor(model, optimizer,
  loss_fn=...)`` attached (the loop unchanged); (c) the loop with a naive
  recorder that reads every parameter's gradient and weight norm with
  ``.norm().item()`` after ``backward()``.
- Keras 3 ``fit``: (d) bare; (e) with ``explodebook.monitor.keras.GradientMonitor``;
  (f) with a naive callback that reads every weight (``get_weights()``) and
  its norm in ``on_train_batch_end``, which sees weights only, no
  gradients. Time per step in steady state, from batch ``WARMUP`` to the end
  of ``fit``; the monitor's one-off cost per ``fit`` call (it re-traces the
  training function with its wrappers compiled in) is shown separately, as
  the extra time of the first batch.

The variants run in turn inside each repeat, so background load affects
them alike, and ratios are taken within one run. PyTorch trains on one
thread (these models are too small to gain from two).

Models: an MLP 20-64-64-1 (ReLU, MSE, SGD with momentum, batch 32) and a
small CNN (two 3x3 convolutions with 8 and 16 channels, max-pooling, a dense
head; 1x16x16 inputs, 10 classes, cross-entropy, batch 32).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torch before TensorFlow (see explodebook.backends.get).
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from explodebook.monitor import torch as tmon  # noqa: E402

HERE = Path(__file__).resolve().parent
WARMUP = 20  # Keras: steps left out of the steady-state timing
BATCH = 32


# -- data ----------------------------------------------------------------------


def mlp_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 20)).astype(np.float32)
    y = (X @ rng.normal(size=(20, 1))).astype(np.float32)
    return X, y


def cnn_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 16, 16, 1)).astype(np.float32)  # channels last (Keras)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return X, y


# -- PyTorch ---------------------------------------------------------------------


def torch_model(kind: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    if kind == "mlp":
        model = nn.Sequential(
            nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
        )
        return model, nn.MSELoss()
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )  # fmt: skip
    return model, nn.CrossEntropyLoss()


def torch_variant(kind: str, variant: str, steps: int) -> Callable[[], tuple[float, float]]:
    """A function that trains ``steps`` steps; returns (CPU, wall) seconds per step."""
    X_np, y_np = mlp_data(steps * BATCH) if kind == "mlp" else cnn_data(steps * BATCH)
    X = torch.from_numpy(X_np if kind == "mlp" else X_np.transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(y_np)

    def run() -> tuple[float, float]:
        model, loss_fn = torch_model(kind)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        monitor = None
        if variant == "monitor":  # attached to the unchanged loop
            monitor = tmon.GradientMonitor(model, opt, loss_fn=loss_fn)
        params = list(model.parameters())
        naive: list[list[float]] = []
        start, cpu = time.perf_counter(), time.process_time()
        for step in range(steps):
            xb, yb = X[step * BATCH : (step + 1) * BATCH], y[step * BATCH : (step + 1) * BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            if variant == "naive":
                naive.append(
                    [loss.item()]
                    + [p.grad.norm().item() for p in params]
                    + [p.norm().item() for p in params]
                )
            opt.step()
        if monitor is not None:
            monitor.close()
            monitor.trace()  # the read-back is part of the cost
        return (time.process_time() - cpu) / steps, (time.perf_counter() - start) / steps

    return run


# -- Keras ---------------------------------------------------------------------


def keras_variant(
    kind: str, variant: str, steps: int
) -> Callable[[], tuple[float, float, float]]:
    """A function that fits ``steps`` steps.

    Returns:
        steady-state CPU and wall seconds per step, and the extra wall
        seconds of the first batch.
    """
    from explodebook.monitor import keras as kmon  # imports TensorFlow (after torch)
    import keras

    X, y = mlp_data(steps * BATCH) if kind == "mlp" else cnn_data(steps * BATCH)

    class Timer(keras.callbacks.Callback):
        # Only batch *begin* and train end, so fit keeps its asynchronous
        # batch-end dispatch.
        def on_train_begin(self, logs=None):  # noqa: ANN001
            self.t = [(time.process_time(), time.perf_counter())]

        def on_train_batch_begin(self, batch, logs=None):  # noqa: ANN001
            if batch in (1, WARMUP):
                self.t.append((time.process_time(), time.perf_counter()))

        def on_train_end(self, logs=None):  # noqa: ANN001
            self.t.append((time.process_time(), time.perf_counter()))

    class Naive(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[float]] = []

        def on_train_batch_end(self, batch, logs=None):  # noqa: ANN001
            self.rows.append(
                [float(logs["loss"])] + [float(np.linalg.norm(w)) for w in self.model.get_weights()]
            )

    if kind == "mlp":
        model = keras.Sequential(
            [keras.Input((20,)), keras.layers.Dense(64, activation="relu"),
             keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)]
        )  # fmt: skip
        loss = "mse"
    else:
        model = keras.Sequential(
            [keras.Input((16, 16, 1)),
             keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
             keras.layers.MaxPooling2D(),
             keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
             keras.layers.MaxPooling2D(),
             keras.layers.Flatten(), keras.layers.Dense(10)]
        )  # fmt: skip
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss=loss, jit_compile=False)
    model.fit(X[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, verbose=0)  # trace once

    def run() -> tuple[float, float]:
        timer = Timer()
        callbacks: list = [timer]
        monitor = None
        if variant == "monitor":
            monitor = kmon.GradientMonitor()
            callbacks.append(monitor)
        elif variant == "naive":
            callbacks.append(Naive())
        model.fit(X, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
        if monitor is not None:
            monitor.trace()
        t = timer.t  # begin, batch 1, batch WARMUP, end: (CPU, wall) each
        cpu = (t[3][0] - t[2][0]) / (steps - WARMUP)
        wall = (t[3][1] - t[2][1]) / (steps - WARMUP)
        first = (t[1][1] - t[0][1]) - wall
        return cpu, wall, first

    return run


# -- main ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300, help="steps per timed run")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--skip-keras", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)

    lines = [
        "# Gradient monitor overhead",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.2f} at start; Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}. Median of {args.repeats} runs of {args.steps} steps, "
        f"batch {BATCH}. Ratios to the bare loop, within this run; CPU time (of the whole "
        "process) is less disturbed by other processes than wall time.",
        "",
        "| framework | model | variant | CPU ms / step | CPU ratio | wall ms / step | wall ratio |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    first_batch: list[str] = []
    variants = ("bare", "monitor", "naive")
    labels = {
        "torch": {"bare": "(a) bare loop", "monitor": "(b) GradientMonitor",
                  "naive": "(c) naive `.norm().item()`"},
        "keras": {"bare": "(d) bare `fit`", "monitor": "(e) `fit` + GradientMonitor",
                  "naive": "(f) `fit` + naive weight-reading callback"},
    }  # fmt: skip
    for kind in ("mlp", "cnn"):
        name = {"mlp": "MLP 20-64-64-1", "cnn": "CNN 2 conv + dense"}[kind]
        frameworks = ("torch",) if args.skip_keras else ("torch", "keras")
        for fw in frameworks:
            make = torch_variant if fw == "torch" else keras_variant
            runs = {v: make(kind, v, args.steps) for v in variants}
            for v in variants:
                runs[v]()  # warm up
            results: dict[str, list[tuple[float, ...]]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for v in variants:
                    results[v].append(runs[v]())
            med = {
                v: [statistics.median(column) for column in zip(*results[v])] for v in variants
            }
            for v in variants:
                cpu, wall = med[v][0], med[v][1]
                lines.append(
                    f"| {'PyTorch' if fw == 'torch' else 'Keras'} | {name} | {labels[fw][v]} | "
                    f"{1e3 * cpu:.3f} | {cpu / med['bare'][0]:.3f} | "
                    f"{1e3 * wall:.3f} | {wall / med['bare'][1]:.3f} |"
                )
            if fw == "keras":
                first_batch.append(
                    f"- Keras {name}: the first batch of a `fit` call takes "
                    f"{1e3 * med['bare'][2]:.0f} ms longer than a steady step bare, "
                    f"{1e3 * med['monitor'][2]:.0f} ms with the monitor (it re-traces the "
                    "training function once per `fit` call)."
                )
    if first_batch:
        lines += ["", "One-off cost per `fit` call:", "", *first_batch]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out is not None:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
