"""How a run's time grows with depth, width, sequence length, cell and steps.

Run from the repository root with ``.venv/bin/python benchmarks/scaling.py``;
writes ``benchmarks/scaling_results.md`` (a Markdown table headed by the
machine's description, and a "Limits for widgets" paragraph computed from
the numbers) and ``benchmarks/scaling.png`` (``--no-plot`` to skip), and
prints the table. Not part of the tests: timings depend on the machine and
on what else it is doing. About 3-5 minutes with the default 3 repeats.

Measured, per framework (PyTorch, Keras): the warm wall time of
``backend.run(spec)``, median of ``--repeats`` runs after one unmeasured
run of the same spec (which, for Keras, traces the graph of that shape),
while ONE knob varies from a base and the others stay fixed:

- MLP, base ``RunSpec(task="regression-scaled", steps=400)`` (20-25-1 ReLU,
  SGD lr 0.01, momentum 0.9, batch 32): depth 1, 2, 4, 8, 16; width 8, 25,
  64, 128, 256; steps 100, 400, 1600;
- RNN, base ``RunSpec(model="rnn", cell="simple", task="adding", width=32,
  init="xavier", seq_len=50, steps=100)`` (chapter 2's RNN at T=50, fewer
  steps): seq_len 10, 25, 50, 100; cell simple, lstm, gru at seq_len 50.

All with ``stop_on_nonfinite=True``; a run that stops early is flagged and
its time per step uses the steps actually run. The growth factor is the
time per step relative to the knob's smallest value.

Limits for widgets: the time of a default-length run (1600 steps for the
MLP, 500 for the RNN: chapter 2's ``rnn_base``) is estimated as time per
step x default steps, interpolated log-log between measured values (and
extrapolated from the last two beyond them); the paragraph names, per
knob, the largest value that stays <= 1 s in PyTorch, and which values of
`explodebook.widgets.DEFAULT_OPTIONS` exceed it.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # benchmarks/ is not a package
    sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from explodebook.backends import torch as _  # noqa: E402,F401  (torch before TensorFlow)
from explodebook import RunSpec  # noqa: E402

FRAMEWORKS = ("torch", "keras")
MLP_BASE = RunSpec(task="regression-scaled", steps=400, stop_on_nonfinite=True)
RNN_BASE = RunSpec(model="rnn", cell="simple", task="adding", width=32, init="xavier",
                   seq_len=50, steps=100, stop_on_nonfinite=True)  # fmt: skip
#: (model, knob, values); every other field stays at the model's base.
KNOBS: tuple[tuple[str, str, tuple[Any, ...]], ...] = (
    ("mlp", "depth", (1, 2, 4, 8, 16)),
    ("mlp", "width", (8, 25, 64, 128, 256)),
    ("mlp", "steps", (100, 400, 1600)),
    ("rnn", "seq_len", (10, 25, 50, 100)),
    ("rnn", "cell", ("simple", "lstm", "gru")),
)
#: Steps of a default-length run: the MLP's classic 1600; chapter 2's RNN 500.
DEFAULT_STEPS = {"mlp": 1600, "rnn": 500}
BUDGET_S = 1.0


@dataclass
class Point:
    """One measured setting."""

    model: str
    knob: str
    value: Any
    framework: str
    wall: float  # median seconds per run
    steps_run: int
    steps: int

    @property
    def per_step(self) -> float:
        return self.wall / max(1, self.steps_run)


def base(model: str) -> RunSpec:
    return MLP_BASE if model == "mlp" else RNN_BASE


def measure(spec: RunSpec, framework: str, repeats: int) -> tuple[float, int]:
    """Median wall seconds of a run after one unmeasured run, and steps run."""
    from explodebook.backends import get

    backend = get(framework)
    trace = backend.run(spec)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trace = backend.run(spec)
        times.append(time.perf_counter() - start)
    return statistics.median(times), trace.steps_run


def measure_all(repeats: int) -> list[Point]:
    points = []
    for framework in FRAMEWORKS:  # all torch first: Keras' threads stay out of its way
        for model, knob, values in KNOBS:
            for value in values:
                spec = base(model).replace(**{knob: value})
                wall, steps_run = measure(spec, framework, repeats)
                points.append(Point(model, knob, value, framework, wall, steps_run, spec.steps))
                print(f"{framework} {model} {knob}={value}: {wall:.3f} s", file=sys.stderr)
    return points


# -- the report ------------------------------------------------------------------


def format_table(points: Sequence[Point]) -> str:
    """Markdown table: one row per (model, knob, value), both frameworks side by side."""
    lines = [
        "| model | knob | value | torch run (s) | torch µs/step | torch growth | "
        "keras run (s) | keras µs/step | keras growth | steps run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys: list[tuple[str, str, Any]] = []
    for p in points:
        if (p.model, p.knob, p.value) not in keys:
            keys.append((p.model, p.knob, p.value))
    by = {(p.model, p.knob, p.value, p.framework): p for p in points}
    for model, knob, value in keys:
        cells = [model, knob, str(value)]
        steps = []
        for fw in FRAMEWORKS:
            p = by.get((model, knob, value, fw))
            if p is None:
                cells += ["–", "–", "–"]
                continue
            first = next(q for q in points if q.model == model and q.knob == knob and q.framework == fw)
            cells += [f"{p.wall:.3f}", f"{p.per_step * 1e6:.0f}",
                      f"×{p.per_step / first.per_step:.2f}"]  # fmt: skip
            steps.append(f"{p.steps_run}/{p.steps}" + (" (stopped: non-finite)" if p.steps_run < p.steps else ""))
        cells.append(", ".join(dict.fromkeys(steps)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def estimate_per_step(points: Sequence[Point], value: float) -> float:
    """Time per step at ``value``, log-log interpolated between numeric ``points``.

    ``points`` are one knob's measurements in one framework; beyond the
    measured range the last (or first) segment is extended.
    """
    pts = sorted((float(p.value), p.per_step) for p in points)
    if len(pts) == 1:
        return pts[0][1]
    i = 0
    while i < len(pts) - 2 and value > pts[i + 1][0]:
        i += 1
    (x0, y0), (x1, y1) = pts[i], pts[i + 1]
    slope = (math.log(y1) - math.log(y0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(y0) + slope * (math.log(value) - math.log(x0)))


def run_seconds(points: Sequence[Point], knob: str, value: float, model: str) -> float:
    """Estimated seconds of a default-length run at ``knob=value``."""
    per_step = estimate_per_step(points, value)
    steps = value if knob == "steps" else DEFAULT_STEPS[model]
    return per_step * steps


def crossing(points: Sequence[Point], knob: str, model: str, low: float, high: float) -> float:
    """The value between ``low`` (within budget) and ``high`` (over) where a run takes 1 s."""
    for _ in range(60):  # bisection in log space
        mid = math.sqrt(low * high)
        if run_seconds(points, knob, mid, model) <= BUDGET_S:
            low = mid
        else:
            high = mid
    return low


def limits(points: Sequence[Point], options: dict[str, Sequence[Any]] | None = None) -> list[str]:
    """One line per knob: the largest value within budget (PyTorch), and offered values over it."""
    if options is None:
        from explodebook.widgets import DEFAULT_OPTIONS

        options = dict(DEFAULT_OPTIONS)
    lines = []
    for model, knob, values in KNOBS:
        torch_points = [p for p in points if p.knob == knob and p.model == model and p.framework == "torch"]
        if not torch_points:
            continue
        steps = DEFAULT_STEPS[model]
        if knob == "cell":
            parts = [f"{p.value} {p.per_step * steps:.2f} s" for p in torch_points]
            over = [p.value for p in torch_points if p.per_step * steps > BUDGET_S]
            lines.append(
                f"- **cell** (RNN, T={RNN_BASE.seq_len}, {steps} steps): "
                + ", ".join(parts)
                + (f"; over 1 s: {', '.join(over)}." if over else "; all within 1 s.")
            )
            continue
        within = [p.value for p in torch_points if run_seconds(torch_points, knob, p.value, model) <= BUDGET_S]
        length = "" if knob == "steps" else f", {steps}-step run"
        what = f"- **{knob}** ({model.upper()}{length}): "
        if within:
            what += f"largest measured value within 1 s in PyTorch: {max(within)}"
            above = [p.value for p in torch_points if p.value > max(within)]
            if above:
                limit = crossing(torch_points, knob, model, max(within), min(above))
                what += f" (1 s reached at about {limit:.0f}, interpolated)"
        else:
            what += f"no measured value stays within 1 s in PyTorch (smallest, {torch_points[0].value}: " \
                    f"{run_seconds(torch_points, knob, torch_points[0].value, model):.2f} s)"
        offered = [v for v in options.get(knob, ()) if isinstance(v, (int, float)) and v]
        over = [(v, run_seconds(torch_points, knob, v, model)) for v in offered]
        over = [(v, s) for v, s in over if s > BUDGET_S]
        if over:
            what += "; `DEFAULT_OPTIONS` values estimated over 1 s: " + ", ".join(
                f"{v} ({s:.1f} s)" for v, s in over
            ) + "."
        else:
            what += f"; every `DEFAULT_OPTIONS` value ({', '.join(map(str, offered))}) is estimated within 1 s."
        lines.append(what)
    return lines


def plot(points: Sequence[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    from explodebook import plots

    numeric = [(m, k) for m, k, v in KNOBS if k != "cell"]
    fig, axes = plt.subplots(1, len(numeric), figsize=(3.2 * len(numeric), 3.2),
                             layout="constrained", sharey=True)  # fmt: skip
    for ax, (model, knob) in zip(axes, numeric):
        for fw in FRAMEWORKS:
            pts = [p for p in points if p.model == model and p.knob == knob and p.framework == fw]
            ax.loglog([p.value for p in pts], [p.per_step * 1e6 for p in pts], "o-",
                      color=plots.FRAMEWORK_COLORS.get(fw), label=fw)  # fmt: skip
        ax.set_xlabel(f"{knob} ({model})")
        ax.set_title(knob)
    axes[0].set_ylabel("time per step (µs)")
    axes[0].legend()
    fig.suptitle("Warm time per training step, one knob varied")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(points: Sequence[Point], header: str, repeats: int, seconds: float) -> str:
    return "\n".join(
        [
            "# Scaling: run time against depth, width, sequence length, cell and steps",
            "",
            f"Machine: {header}.",
            "",
            f"MLP base: `{_short(MLP_BASE)}`. RNN base: `{_short(RNN_BASE)}`. "
            "One knob varies, the others stay at the base.",
            "",
            format_table(points),
            "",
            f"Warm wall time of `backend.run(spec)`, median of {repeats} runs after one "
            "unmeasured run of the same spec (Keras traces its graph then). Growth: time per "
            f"step relative to the knob's first value. Whole benchmark: {seconds:.0f} s. "
            "Not part of the tests.",
            "",
            "## Limits for widgets",
            "",
            "A default-length run (MLP 1600 steps; RNN 500 steps, chapter 2's `rnn_base`) "
            "estimated as time per step × steps, log-log interpolated between the measured "
            "values (extrapolated beyond them), against a 1 s budget in PyTorch:",
            "",
            *limits(points),
            "",
        ]
    )


def _short(spec: RunSpec) -> str:
    default = RunSpec(model=spec.model)
    changed = {k: v for k, v in spec.to_dict().items() if getattr(default, k) != v or k == "model"}
    if spec.model == "mlp":
        del changed["model"]
    return "RunSpec(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per median (default 3)")
    parser.add_argument("--out", type=Path, default=HERE / "scaling_results.md")
    parser.add_argument("--plot", type=Path, default=HERE / "scaling.png")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)

    from run import machine

    header = machine()
    start = time.perf_counter()
    points = measure_all(args.repeats)
    text = report(points, header, args.repeats, time.perf_counter() - start)
    args.out.write_text(text)
    if not args.no_plot:
        plot(points, args.plot)
    print(text)


if __name__ == "__main__":
    main()
