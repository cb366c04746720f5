"""Speed of the backends: cold and warm runs, and the cost of recording.

Run with ``make bench``; writes ``benchmarks/results.md`` (a Markdown table
with the machine's description) and prints it. Not part of the tests:
timings depend on the machine and on what else it is doing. Medians over
repeated runs; where the claim is a ratio (recording overhead), both sides
are measured alternately in one process, so background load affects both.

Measured:

1. cold: a fresh Python process imports explodebook and the backend and
   runs the regression experiment (1600 SGD steps, batch 32) once:
   what a reader waits for when the first cell of a chapter runs;
2. warm: the same run again in the same process;
3. recording overhead: the backend's training loop (which records
   per-layer gradient and weight norms every step) against the same loop
   written without recording, in CPU time per step.
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
backend.run(RunSpec(task="regression-scaled"))
print(time.perf_counter() - start)
"""


def cold(framework: str, repeats: int) -> float:
    """Median seconds of import + first run in a fresh process."""
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", COLD.format(framework=framework)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def warm(framework: str, repeats: int) -> float:
    """Median wall seconds of `run` after a first run in this process."""
    from explodebook.backends import get

    backend = get(framework)
    backend.run(SPEC)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.run(SPEC)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_bare(spec: RunSpec) -> Callable[[], None]:
    """The PyTorch backend's loop, same model and batches, recording nothing."""
    import torch
    from torch import nn

    from explodebook.backends import torch as backend
    from explodebook.data import batch_indices, dataset_for

    X_np, y_np = dataset_for(spec)
    X, y = torch.tensor(X_np), torch.tensor(y_np)
    batches = torch.from_numpy(batch_indices(len(X_np), spec.batch_size, spec.steps, spec.seed))

    def train() -> None:
        model = backend.build(spec)
        optimizer = torch.optim.SGD(model.parameters(), lr=spec.learning_rate, momentum=spec.momentum)
        loss_fn = nn.MSELoss()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the backend does
        try:
            for step in range(spec.steps):
                idx = batches[step]
                optimizer.zero_grad()
                loss_fn(model(X[idx]), y[idx]).backward()
                optimizer.step()
        finally:
            torch.set_num_threads(threads)

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
    optimizer = backend.make_optimizer(spec)
    optimizer.build(model.trainable_variables)
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


def overhead(framework: str, repeats: int) -> tuple[float, float]:
    """CPU seconds per step without and with recording (medians)."""
    from explodebook.backends import get

    backend = get(framework)
    bare = torch_bare(SPEC) if framework == "torch" else keras_bare(SPEC)
    bare()
    backend.run(SPEC)
    without, with_ = [], []
    for _ in range(repeats):
        start = time.process_time()
        bare()
        without.append(time.process_time() - start)
        start = time.process_time()
        backend.run(SPEC)
        with_.append(time.process_time() - start)
    return statistics.median(without) / SPEC.steps, statistics.median(with_) / SPEC.steps


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
    rows = ["| framework | cold: import + first run (s) | warm run (s) | "
            "step without recording (µs) | step with recording (µs) | overhead |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for framework in ("torch", "keras"):
        cold_s = cold(framework, max(3, args.repeats // 2))
        warm_s = warm(framework, args.repeats)
        bare_s, rec_s = overhead(framework, args.repeats)
        rows.append(
            f"| {framework} | {cold_s:.2f} | {warm_s:.2f} | {bare_s * 1e6:.0f} | "
            f"{rec_s * 1e6:.0f} | {rec_s / bare_s - 1:+.0%} |"
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
            *rows,
            "",
            f"Medians of {args.repeats} runs (cold: of {max(3, args.repeats // 2)} processes). "
            "Overhead compares CPU time per step of the backend's loop with the "
            "same loop written without recording.",
            "",
        ]
    )
    args.out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
