"""Speed of the backends: cold and warm runs, and the cost of recording.

Run with ``make bench``; writes ``benchmarks/results.md`` (a Markdown table
with the machine's description) and prints it. Not part of the tests:
timings depend on the machine and on what else it is doing. Medians over
repeated runs; where the claim is a ratio (recording overhead), both sides
are measured alternately in one process, so background load affects both.

Measured:

1. cold: a fresh Python process imports explodebook and the backend
   (timed) and runs the regression experiment (1600 SGD steps, batch 32)
   once (timed separately: for Keras this includes building the model and
   tracing the compiled loop): what a reader waits for when the first cell
   of a chapter runs;
2. warm: the same run again in the same process;
3. recording overhead: the backend's training loop (which records
   per-layer gradient and weight norms every step) against the same loop
   written without recording, in wall time per step (TensorFlow spreads
   a step's ops over several threads, so its CPU time, 1.4-1.6 times its
   wall time here, is not what a step takes); and against what a user
   would commonly write instead: a PyTorch loop reading ``.norm().item()``
   per parameter, and Keras ``model.fit`` with a callback reading the
   weights' norms.

The other benchmarks: ``benchmarks/chapters.py`` (each chapter's widget
experiments and widget response), ``benchmarks/scaling.py`` (run time
against depth, width, sequence length and steps), ``benchmarks/book_build.py``
(``make bench-book``), ``benchmarks/monitor_overhead.py`` and
``benchmarks/grading.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from explodebook import RunSpec  # noqa: E402

#: The regression experiment: the classic MLP on the standardized target,
#: so that every one of the 1600 steps runs (the unscaled one stops at NaN).
SPEC = RunSpec(task="regression-scaled")
HERE = Path(__file__).resolve().parent

COLD = """
import time, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
start = time.perf_counter()
from explodebook import RunSpec
from explodebook.backends import {framework} as backend
imported = time.perf_counter()
backend.run(RunSpec(task="regression-scaled"))
print(imported - start, time.perf_counter() - imported)
"""


def cold(framework: str, repeats: int) -> tuple[float, float]:
    """Median seconds of (import, first run) in a fresh process.

    The first run includes everything a first call costs after the import:
    for Keras, building the model and tracing the compiled loop.
    """
    imports, firsts = [], []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", COLD.format(framework=framework)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        imported, first = map(float, out.stdout.strip().splitlines()[-1].split())
        imports.append(imported)
        firsts.append(first)
    return statistics.median(imports), statistics.median(firsts)


def warm(framework: str, repeats: int, spec: RunSpec = SPEC) -> float:
    """Median wall seconds of ``backend.run(spec)`` after a first, unmeasured run."""
    from explodebook.backends import get

    backend = get(framework)
    backend.run(spec)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.run(spec)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_loop(spec: RunSpec, naive: bool = False) -> Callable[[], None]:
    """The PyTorch backend's loop, same model, batches and optimizer, recording nothing.

    With ``naive=True``, the loop records what a user typically writes
    instead: the loss and every parameter's gradient and weight norm with
    ``.norm().item()`` after ``backward()`` (one synchronising call each).
    """
    import torch
    from torch import nn

    from explodebook.backends import torch as backend
    from explodebook.data import batch_indices, dataset_for

    X_np, y_np = dataset_for(spec)
    X, y = torch.tensor(X_np), torch.tensor(y_np)
    batches = torch.from_numpy(batch_indices(len(X_np), spec.batch_size, spec.steps, spec.seed))
    block = backend.GATHER_STEPS

    def train() -> None:
        model = backend.build(spec)
        params = list(model.parameters())
        optimizer = torch.optim.SGD(
            params, lr=spec.learning_rate, momentum=spec.momentum, foreach=False
        )
        loss_fn = nn.MSELoss()
        record: list[list[float]] = []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the backend does
        try:
            for step in range(spec.steps):
                if step % block == 0:  # as the backend does
                    X_block = X[batches[step : step + block]]
                    y_block = y[batches[step : step + block]]
                for p in params:
                    p.grad = None
                loss = loss_fn(model(X_block[step % block]), y_block[step % block])
                loss.backward()
                if naive:
                    record.append(
                        [loss.item()]
                        + [p.grad.norm().item() for p in params]
                        + [p.norm().item() for p in params]
                    )
                optimizer.step()
        finally:
            torch.set_num_threads(threads)

    return train


def keras_fit(spec: RunSpec, callback: bool) -> Callable[[], None]:
    """Keras ``model.fit`` over the same batches, with or without a norm callback.

    The callback is what a Keras user typically writes: every weight's norm
    from ``get_weights()`` in ``on_train_batch_end`` (a ``fit`` callback
    sees no gradients). One model is fitted again and again, so that
    ``fit`` traces its training function once, outside the timing.
    """
    import keras
    import numpy as np

    from explodebook.backends import keras as backend
    from explodebook.data import batch_indices, dataset_for

    X_np, y_np = dataset_for(spec)
    batches = batch_indices(len(X_np), spec.batch_size, spec.steps, spec.seed).reshape(-1)
    X_seq, y_seq = X_np[batches], y_np[batches]  # the backend's batches, in order

    class WeightNorms(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[float]] = []

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.rows.append([float(np.linalg.norm(w)) for w in self.model.get_weights()])

    model = backend.build(spec)
    model.compile(optimizer=backend.make_optimizer(spec, model.trainable_variables), loss="mse")

    def train() -> None:
        model.fit(
            X_seq, y_seq, batch_size=spec.batch_size, epochs=1, shuffle=False, verbose=0,
            callbacks=[WeightNorms()] if callback else [],
        )  # fmt: skip

    train()  # trace once
    return train


def keras_bare(spec: RunSpec) -> Callable[[], None]:
    """The Keras backend's compiled multi-step loop, recording only the loss."""
    import keras
    import tensorflow as tf

    from explodebook.backends import keras as backend
    from explodebook.data import batch_indices, dataset_for

    X_np, y_np = dataset_for(spec)
    X, y = tf.constant(X_np), tf.constant(y_np)
    batches = batch_indices(len(X_np), spec.batch_size, spec.steps, spec.seed)
    model = backend.build(spec)
    optimizer = backend.make_optimizer(spec, model.trainable_variables)
    mse = keras.losses.MeanSquaredError()

    @tf.function
    def train_chunk(idx: tf.Tensor) -> tf.Tensor:
        n = tf.shape(idx)[0]
        losses = tf.TensorArray(tf.float32, size=n)
        for i in tf.range(n):
            with tf.GradientTape() as tape:
                loss = mse(tf.gather(y, idx[i]), model(tf.gather(X, idx[i]), training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            losses = losses.write(i, loss)
        return losses.stack()

    chunk = backend.CHUNK_STEPS
    train_chunk(tf.constant(batches[:chunk]))  # trace once, outside the timing

    def train() -> None:
        for first in range(0, spec.steps, chunk):
            train_chunk(tf.constant(batches[first : first + chunk])).numpy()

    return train


#: Recording overhead is a cost per step: each variant runs `SPEC.steps`
#: and `SHORT_STEPS` steps, and the difference of their times divided by
#: the difference of steps cancels what a run costs once (building or
#: resetting the model, tracing, assembling the trace).
SHORT_STEPS = 400


def per_step(long: list[float], short: list[float], steps: int = SPEC.steps) -> float:
    """Seconds per step from times of runs of ``steps`` and `SHORT_STEPS` steps (medians)."""
    return (statistics.median(long) - statistics.median(short)) / (steps - SHORT_STEPS)


def overhead(framework: str, repeats: int) -> dict[str, float]:
    """Wall seconds per step of each variant of the loop (see `per_step`).

    Keys: ``bare`` (the backend's loop recording nothing), ``backend`` (its
    real loop, recording everything), and the common alternatives:
    ``naive`` (torch, ``.norm().item()`` per parameter), ``fit`` and
    ``fit+callback`` (Keras). The variants run in turn in every repeat, so
    background load affects them alike.
    """
    from explodebook.backends import get

    backend = get(framework)
    specs = (SPEC, SPEC.replace(steps=SHORT_STEPS))
    variants: dict[str, list[Callable[[], object]]]
    if framework == "torch":
        variants = {
            "bare": [torch_loop(s) for s in specs],
            "backend": [lambda s=s: backend.run(s) for s in specs],
            "naive": [torch_loop(s, naive=True) for s in specs],
        }
    else:
        variants = {
            "bare": [keras_bare(s) for s in specs],
            "backend": [lambda s=s: backend.run(s) for s in specs],
            "fit": [keras_fit(s, callback=False) for s in specs],
            "fit+callback": [keras_fit(s, callback=True) for s in specs],
        }
    for pair in variants.values():
        for train in pair:
            train()
    times: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in variants}
    for _ in range(repeats):
        for name, pair in variants.items():
            for train, record in zip(pair, times[name], strict=True):
                start = time.perf_counter()
                train()
                record.append(time.perf_counter() - start)
    return {name: per_step(*t) for name, t in times.items()}


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import tensorflow as tf

        tf_version = tf.__version__
    except ImportError:
        tf_version = "not installed"
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"torch {torch.__version__}, tensorflow {tf_version}; "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per median (default 5)")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()

    header = machine()
    # Targets of issue #7 for this experiment (seconds).
    targets = {"torch": ("warm", 0.6), "keras": ("first", 2.0)}
    speed = ["| framework | import (s) | first run, tracing included (s) | warm run (s) | target |",
             "|---|---|---|---|---|"]  # fmt: skip
    costs = ["| framework | loop | µs / step | vs. the bare loop |",
             "|---|---|---|---|"]  # fmt: skip
    labels = {
        "bare": "the backend's loop, recording nothing",
        "backend": "**the backend** (records loss, per-layer gradient norms before and "
        "after clipping, largest gradient, weight norms)",
        "naive": "bare loop + `.norm().item()` per parameter (gradient and weight)",
        "fit": "`model.fit`, no callback",
        "fit+callback": "`model.fit` + a callback reading every weight's norm",
    }
    for framework in ("torch", "keras"):
        import_s, first_s = cold(framework, max(3, args.repeats // 2))
        warm_s = warm(framework, args.repeats)
        which, limit = targets[framework]
        value = warm_s if which == "warm" else first_s
        verdict = "met" if value <= limit else "**missed**"
        speed.append(
            f"| {framework} | {import_s:.2f} | {first_s:.2f} | {warm_s:.2f} | "
            f"{which} ≤ {limit:g} s: {verdict} |"
        )
        step_cost = overhead(framework, args.repeats)
        for name, seconds in step_cost.items():
            costs.append(
                f"| {framework} | {labels[name]} | {seconds * 1e6:.0f} | "
                f"{seconds / step_cost['bare'] - 1:+.0%} |"
            )
    table = "\n".join(
        [
            "# Benchmark results",
            "",
            "Regression experiment: MLP 20-25-1, SGD with momentum, "
            f"{SPEC.steps} steps of batch {SPEC.batch_size}.",
            "",
            f"Machine: {header}.",
            "",
            *speed,
            "",
            f"Medians of {args.repeats} runs; import and first run: of "
            f"{max(3, args.repeats // 2)} fresh processes. Wall time.",
            "",
            "## Recording overhead",
            "",
            *costs,
            "",
            f"Wall time per step: the difference between the medians of {args.repeats} "
            f"runs of {SPEC.steps} and of {SHORT_STEPS} steps, divided by "
            f"{SPEC.steps - SHORT_STEPS}, so that what a run costs once (building or "
            "resetting the model, tracing, assembling the trace) cancels out. The "
            "variants run in turn in each repeat. The target is ≤ +10% for the backend "
            "against its bare loop.",
            "",
        ]
    )
    args.out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
