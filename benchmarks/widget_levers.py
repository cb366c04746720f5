"""The `explore` widget's levers side by side in one process: live frames, concurrent runs, fixed margins.

Run from the repository root with ``.venv/bin/python benchmarks/widget_levers.py``
(``--repeats N``); prints a Markdown table (and appends it to ``--out`` if
given). Not part of the tests. Every configuration is measured alternating
with the others, uncached (run and PNG caches cleared before each move),
on two of the book's widget set-ups in both frameworks (chapter 7a's
1600-step clipped MLP, chapter 2a's RNN), after one pass that traces the
Keras graphs:

- ``progressive`` (live curves while the runs train) on or off, and
  ``concurrent`` (PyTorch and Keras on two threads at once) on or off:
  time to the first image and to the final figure;
- the default figure's two panels (as `explodebook.widgets.default_draw`)
  drawn to PNG with ``layout="constrained"`` (as the package and the book
  style do) and with fixed margins (``layout="none"``; measured, not
  applied: the book's style turns constrained layout on for every figure,
  and chapter 9 shows `default_draw`'s figure in the book): seconds per
  figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = {  # (progressive, concurrent)
    "one after the other, no frames (as before)": (False, False),
    "concurrent, no frames": (False, True),
    "frames, one after the other": (True, False),
    "frames and concurrent (default)": (True, True),
}


def explorer_levers(repeats: int) -> list[str]:
    from explodebook import RunSpec, cache, widgets
    from explodebook.widgets import explore

    cases = {
        "mlp 1x25, 1600 steps, clipped (7a)": (
            RunSpec(steps=1600, learning_rate=0.01, global_clipnorm=1.0),
            "global_clipnorm", [1.0, 3.0, 10.0]),
        "rnn simple, T=20, 500 steps (2a)": (
            RunSpec(model="rnn", seq_len=20, steps=500, learning_rate=0.01),
            "init_scale", [1.0, 1.5, 0.5]),
    }  # fmt: skip
    rows = []
    for name, (base, field, values) in cases.items():
        ex = explore(base, {field: values}, frameworks=("torch", "keras"))
        for value in values:  # trace the Keras graphs once, as a reader's first moves do
            ex.controls[field].value = value
        times: dict[str, list[tuple[float, float]]] = {c: [] for c in CONFIGS}
        for rep in range(repeats):
            for config, (progressive, concurrent) in CONFIGS.items():
                ex.progressive, ex.concurrent = progressive, concurrent
                ex.controls[field].value = values[0]
                cache.clear()
                widgets._PNG_CACHE.clear()
                stamps: list[float] = []

                def seen(change: object) -> None:
                    stamps.append(time.perf_counter())

                ex.image.observe(seen, names="value")
                start = time.perf_counter()
                ex.controls[field].value = values[1 + rep % 2]
                final = time.perf_counter() - start
                ex.image.unobserve(seen, names="value")
                times[config].append((stamps[0] - start if stamps else final, final))
        base_final = statistics.median(t[1] for t in times[next(iter(CONFIGS))])
        for config, t in times.items():
            first, final = statistics.median(x[0] for x in t), statistics.median(x[1] for x in t)
            rows.append(f"| {name} | {config} | {first:.2f} | {final:.2f} | "
                        f"{final / base_final:.2f} |")  # fmt: skip
    return [
        "| widget set-up | configuration | first image (s) | final figure (s) | "
        "final / as before |",
        "|---|---|---|---|---|",
        *rows,
    ]


def draw_levers(repeats: int) -> list[str]:
    import matplotlib.pyplot as plt

    from explodebook import RunSpec, plots
    from explodebook.cache import cached_run
    from explodebook.render import figure_png

    spec = RunSpec(steps=1600, learning_rate=1e-3)
    traces = [cached_run(spec, "torch"), cached_run(spec, "keras")]

    def constrained(traces: list) -> object:
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
        plots.loss_curve(traces, ax=a)
        plots.grad_norm_curve(traces, ax=b)
        return fig

    def fixed(traces: list) -> object:
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2), layout="none")
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.25)
        plots.loss_curve(traces, ax=a)
        plots.grad_norm_curve(traces, ax=b)
        return fig

    draws = {"layout='constrained' (as now)": constrained, "fixed margins": fixed}
    for draw in draws.values():
        figure_png(draw(traces), dpi=90, fast=True)  # fonts and caches warm
    times: dict[str, list[float]] = {name: [] for name in draws}
    for _ in range(repeats * 5):
        for name, draw in draws.items():
            start = time.perf_counter()
            figure_png(draw(traces), dpi=90, fast=True)
            times[name].append(time.perf_counter() - start)
    first = statistics.median(next(iter(times.values())))
    rows = [f"| {name} | {statistics.median(t):.3f} | {statistics.median(t) / first:.2f} |"
            for name, t in times.items()]  # fmt: skip
    return ["| default figure to PNG (1600 steps, both frameworks) | s per figure | ratio |",
            "|---|---|---|", *rows]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="moves per configuration")
    parser.add_argument("--out", type=Path, help="append the tables to this Markdown file")
    args = parser.parse_args()
    from explodebook.backends import torch as _  # noqa: F401  (torch before TensorFlow)

    load = os.getloadavg()[0]
    lines = [f"Load average {load:.2f} at start.", "", *explorer_levers(args.repeats), "",
             *draw_levers(args.repeats), "", f"Load average {os.getloadavg()[0]:.2f} at the end."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with args.out.open("a") as out:
            out.write(text)


if __name__ == "__main__":
    main()
