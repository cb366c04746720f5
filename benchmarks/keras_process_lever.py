"""Lever for the recurrent widget moves: the Keras run in a worker process instead of a thread beside PyTorch's.

Run from the repository root with ``.venv/bin/python benchmarks/keras_process_lever.py``
(``--repeats N``, ``--out FILE``); prints a Markdown table. Not part of the
tests, and not applied in the package: it measures whether the lever is
worth building.

Why: a widget move runs the setting in both frameworks at once, on two
threads of the kernel (`explodebook.liveruns.LiveRuns`). Both need
Python's global lock: PyTorch to dispatch each small operation, Keras to
trace a new graph (a new cell, sequence length, clipping...). In chapter
9's widget a PyTorch run that takes 0.35 s alone took 0.90 s beside Keras
(`benchmarks/chapters.py`'s floors). In a worker process the two runs
share no lock.

For each move of the two widgets that miss the 1 s target (chapters 6a and
9), alternating in each repeat, every run uncached and Keras' compiled
loops forgotten and the start setting traced again first (as a widget
that has shown the start setting):

- **threads**: PyTorch and Keras on two threads of this process (what the
  widget does, without its live frames);
- **process**: PyTorch in this process while Keras runs in a worker
  process started and warmed up beforehand (its trace sent back);
- **alone**: each framework's run with nothing else running (the floor).

Seconds until both traces are here; the widget's final figure adds its
drawing (about 0.17 s on a quiet machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from explodebook import backends  # noqa: E402
from explodebook.backends import torch as _torch_first  # noqa: E402,F401  (PyTorch before TensorFlow)
from explodebook.spec import RunSpec  # noqa: E402

LSTM_06A = RunSpec(model="rnn", cell="lstm", width=32, init="xavier", optimizer="adam",
                   learning_rate=0.01, steps=400, seq_len=20)  # fmt: skip
RNN_09 = RunSpec(model="rnn", cell="simple", task="adding", seq_len=8, width=32, init="orthogonal",
                 init_scale=1.0, learning_rate=0.1, momentum=0.9, batch_size=32, steps=800)  # fmt: skip
MOVES = [
    ("06a cell lstm → gru", LSTM_06A, {"cell": "gru"}),
    ("06a seq_len 20 → 40", LSTM_06A, {"seq_len": 40}),
    ("06a steps 400 → 1000", LSTM_06A, {"steps": 1000}),
    ("09 cell simple → lstm", RNN_09, {"cell": "lstm"}),
    ("09 global_clipnorm off → 0.5", RNN_09, {"global_clipnorm": 0.5}),
    ("09 learning_rate 0.1 → 0.03", RNN_09, {"learning_rate": 0.03}),
]


def _run(spec: RunSpec, framework: str) -> float:
    start = time.perf_counter()
    backends.get(framework).run(spec, max_seconds=None, progress=False)
    return time.perf_counter() - start


def _fresh_keras(base: RunSpec) -> None:
    """Keras' compiled loops forgotten, then the start setting traced (a widget showing it)."""
    backends.get("keras").clear_cache()
    backends.get("keras").run(base.replace(steps=2), max_seconds=None, progress=False)


def _worker_move(base: RunSpec, spec: RunSpec, go: float) -> tuple[object, float]:
    """In the worker: prepare as `_fresh_keras`, wait for the start time, run; the trace back."""
    _fresh_keras(base)
    while time.time() < go:  # both sides start together
        time.sleep(0.001)
    start = time.perf_counter()
    trace = backends.get("keras").run(spec, max_seconds=None, progress=False)
    return trace, time.perf_counter() - start


def _warm() -> None:
    backends.get("keras").run(RunSpec(steps=2), max_seconds=None, progress=False)


def threads(base: RunSpec, spec: RunSpec) -> float:
    _fresh_keras(base)
    workers = [threading.Thread(target=_run, args=(spec, fw)) for fw in ("torch", "keras")]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def process(pool: ProcessPoolExecutor, base: RunSpec, spec: RunSpec) -> float:
    go = time.time() + 1.0  # the worker has prepared by then
    future = pool.submit(_worker_move, base, spec, go)
    while time.time() < go:
        time.sleep(0.001)
    start = time.perf_counter()
    _run(spec, "torch")
    future.result()  # the trace is here
    return time.perf_counter() - start


def main() -> None:
    import multiprocessing as mp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    _warm()
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_warm) as pool:
        pool.submit(_warm).result()
        times: dict[str, dict[str, list[float]]] = {m[0]: {} for m in MOVES}
        for _ in range(args.repeats):
            for label, base, change in MOVES:
                spec = base.replace(**change)
                t = times[label]
                t.setdefault("threads", []).append(threads(base, spec))
                t.setdefault("process", []).append(process(pool, base, spec))
                _fresh_keras(base)
                t.setdefault("keras alone", []).append(_run(spec, "keras"))
                t.setdefault("torch alone", []).append(_run(spec, "torch"))
    lines = [
        f"# Keras in a worker process, for the recurrent widget moves\n\nLoad average {load:.2f} "
        f"at the start, {os.getloadavg()[0]:.2f} at the end; {os.cpu_count()} cores; medians of "
        f"{args.repeats} repeats, alternating. Command: `python benchmarks/keras_process_lever.py "
        f"--repeats {args.repeats}`.\n",
        "| move | threads (s) | Keras in a process (s) | process / threads | Keras alone (s) "
        "| PyTorch alone (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, t in times.items():
        m = {k: statistics.median(v) for k, v in t.items()}
        lines.append(f"| {label} | {m['threads']:.2f} | {m['process']:.2f} | "
                     f"{m['process'] / m['threads']:.2f} | {m['keras alone']:.2f} | "
                     f"{m['torch alone']:.2f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
