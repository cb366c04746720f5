"""A 20x20 grid of runs on one core and on all of them, side by side in one run.

Run with ``.venv/bin/python benchmarks/sweep_parallel.py`` (``--out FILE``
also writes the Markdown table; ``make bench`` writes
``benchmarks/sweep_results.md``). Not part of the tests.

Issue 19's target: a 20x20 grid takes at most ``1/N`` of its serial time on
``N`` cores, plus a constant. In each repeat, in turn:

* **serial**: ``grid(..., n_jobs=1)``, every run in this process;
* **workers, cold**: ``grid(..., n_jobs=N)`` after shutting loky's pool
  down, so the time includes starting ``N`` worker processes and importing
  the framework in each (what a reader's first grid of a session pays);
* **workers, warm**: the same call again on the pool the cold call left;
* **plain processes**: the machine's ceiling, ``N`` processes started
  and warmed up beforehand, each running ``1/N`` of the grid with the
  serial code, with no pool, tasks or results to send: what the cores give
  when nothing is spent on distributing the runs;
* **constant**: what a cold pool adds to ``serial / N`` on a 10x10 grid of
  the same runs (every other value of each axis): starting the workers,
  importing the framework and each worker's first, slower runs; the target's
  constant if the 20x20 grid's addition is no larger (also shown: a cold pool
  running one one-step run per worker, the start-up alone).

No run cache (``cache=False``), so every variant trains all 400 runs. The
target is met when the cold time is at most ``serial / N + constant``;
the medians over the repeats are compared, and the traces of the workers
are checked to be the serial ones, bit for bit.
"""

from __future__ import annotations

import argparse
import os
import resource
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from joblib import cpu_count  # noqa: E402
from joblib.externals.loky import get_reusable_executor  # noqa: E402

from explodebook import RunSpec  # noqa: E402
from explodebook.grid import grid  # noqa: E402

# The classic MLP: trains below a learning rate of about 0.003 and
# explodes above it, so the grid holds both long runs and runs that stop
# early, as a phase diagram does.
BASE = RunSpec(steps=200)
AXES = {
    "learning_rate": [float(v) for v in np.geomspace(1e-4, 0.1, 20)],
    "init_scale": [float(v) for v in np.geomspace(0.25, 4.0, 20)],
}
# Every other value: a 10x10 grid of the same kind of runs, a quarter of the work.
SMALL = {name: values[::2] for name, values in AXES.items()}


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the
    loky workers, once their pool is shut down)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cold() -> None:
    """Shut loky's reusable pool down, so the next call starts new workers."""
    get_reusable_executor().shutdown(wait=True)


def _bare_worker(framework: str, part: int, parts: int, ready, go, results) -> None:
    """One of N plain processes: import, warm up, wait for the others, run a share of the grid."""
    from explodebook.sweep import _ONE_THREAD

    for name in _ONE_THREAD:  # one thread each, as the pool's workers (before TensorFlow's import)
        os.environ.setdefault(name, "1")
    share = {"learning_rate": AXES["learning_rate"][part::parts], "init_scale": AXES["init_scale"]}
    # Warm as the warm pool's workers are: one run as long as the grid's, so
    # that Keras has traced its loop for that length before the start signal.
    grid(BASE, {"seed": [1]}, framework, cache=False, n_jobs=1, progress=False)
    ready.wait()
    go.wait()
    start = time.perf_counter()
    grid(BASE, share, framework, cache=False, n_jobs=1, progress=False)
    results.put(time.perf_counter() - start)


def bare_processes(framework: str, workers: int) -> float:
    """The machine's ceiling: N plain processes, already started and warm, each 1/N of the grid.

    No pool, no tasks, no results sent back: each process runs its share
    (every N-th learning rate, so that each has as many runs that explode
    early) with the serial code. Seconds from the start signal to the last
    one done: what N cores give this grid when nothing is spent on
    distributing it.
    """
    import multiprocessing as mp

    context = mp.get_context("spawn")
    ready, go, results = context.Barrier(workers + 1), context.Barrier(workers + 1), context.Queue()
    procs = [context.Process(target=_bare_worker, args=(framework, k, workers, ready, go, results))
             for k in range(workers)]  # fmt: skip
    for proc in procs:
        proc.start()
    ready.wait()
    start = time.perf_counter()
    go.wait()
    for _ in procs:
        results.get()
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join()
    return elapsed


def measure(framework: str, workers: int, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {
        "serial": [], "cold": [], "warm": [], "constant": [], "serial cpu": [], "cold cpu": [],
        "small serial": [], "small cold": [], "bare": [],
    }  # fmt: skip
    grid(BASE.replace(steps=1), {"seed": [1]}, framework, cache=False, n_jobs=1)  # imports here
    for _ in range(repeats):
        cpu = cpu_seconds()
        t, serial = timed(lambda: grid(BASE, AXES, framework, cache=False, n_jobs=1, progress=False))
        times["serial"].append(t)
        times["serial cpu"].append(cpu_seconds() - cpu)
        cold()
        cpu = cpu_seconds()
        t, parallel = timed(
            lambda: grid(BASE, AXES, framework, cache=False, n_jobs=workers, progress=False)
        )
        times["cold"].append(t)
        cold()  # the workers end: their CPU time is counted
        times["cold cpu"].append(cpu_seconds() - cpu)
        grid(BASE.replace(steps=1), {"seed": list(range(1, workers + 1))}, framework,
             cache=False, n_jobs=workers, progress=False)  # a warm pool  # fmt: skip
        t, _ = timed(lambda: grid(BASE, AXES, framework, cache=False, n_jobs=workers, progress=False))
        times["warm"].append(t)
        same = all(a.equals(b) for a, b in zip(serial.of().flat, parallel.of().flat, strict=True))
        if not same:
            sys.exit("the workers' traces differ from the serial ones")
        cold()
        tiny = {"seed": list(range(1, workers + 1))}  # one one-step run per worker
        t, _ = timed(lambda: grid(BASE.replace(steps=1), tiny, framework, cache=False,
                                  n_jobs=workers, progress=False))  # fmt: skip
        times["constant"].append(t)
        # The start-up's real cost (workers importing the framework, each
        # tracing or warming up its own first runs) on a grid of a quarter
        # of the size: a constant if it is no larger on the 20x20 grid.
        t, _ = timed(lambda: grid(BASE, SMALL, framework, cache=False, n_jobs=1, progress=False))
        times["small serial"].append(t)
        cold()
        t, _ = timed(lambda: grid(BASE, SMALL, framework, cache=False, n_jobs=workers, progress=False))
        times["small cold"].append(t)
        times["bare"].append(bare_processes(framework, workers))
    return times


def table(framework: str, workers: int, times: dict[str, list[float]]) -> list[str]:
    med = {name: statistics.median(values) for name, values in times.items()}
    # The constant: what a cold pool adds to serial/N on the 10x10 grid.
    overhead = {size: med[f"{prefix}cold"] - med[f"{prefix}serial"] / workers
                for size, prefix in (("10x10", "small "), ("20x20", ""))}  # fmt: skip
    bound = med["serial"] / workers + overhead["10x10"]
    rows = [
        f"| {framework} | serial (n_jobs=1) | {med['serial']:.2f} | 1.00x | |",
        f"| {framework} | {workers} workers, cold pool | {med['cold']:.2f} | "
        f"{med['serial'] / med['cold']:.2f}x | ≤ serial/{workers} + constant = {bound:.2f} s: "
        f"{'met' if med['cold'] <= bound else 'not met'} |",
        f"| {framework} | {workers} workers, warm pool | {med['warm']:.2f} | "
        f"{med['serial'] / med['warm']:.2f}x | serial/{workers} = {med['serial'] / workers:.2f} s "
        "(no start-up) |",
        f"| {framework} | constant: a cold pool's start-up on a 10x10 grid (cold − serial/{workers}) | "
        f"{overhead['10x10']:.2f} | | the same on the 20x20 grid: {overhead['20x20']:.2f} |",
        f"| {framework} | a cold pool running {workers} one-step runs | {med['constant']:.2f} | | "
        "starting the workers alone |",
        f"| {framework} | {workers} plain processes, started and warm, 1/{workers} of the grid each "
        f"(the machine's ceiling) | {med['bare']:.2f} | {med['serial'] / med['bare']:.2f}x | "
        f"warm pool / this: {med['warm'] / med['bare']:.2f} |",
        f"| {framework} | CPU of all processes: serial / {workers} workers (cold) | "
        f"{med['serial cpu']:.1f} / {med['cold cpu']:.1f} | "
        f"{med['cold cpu'] / med['serial cpu']:.2f}x the CPU | |",
    ]
    return rows


def autogroup() -> str:
    """Whether Linux shares the CPU between sessions rather than processes."""
    try:
        on = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return ""
    if not on:
        return " Linux's autogroup scheduling is off."
    return (
        " Linux's autogroup scheduling is on: the CPU is shared between sessions, so while"
        " other sessions keep every core busy, this one gets about the same share with one"
        " process or several, and workers cannot be faster than serial."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frameworks", default="torch,keras")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    workers = cpu_count()
    load_before = os.getloadavg()
    lines = [
        "| framework | variant | median (s) | speed-up vs serial | target |",
        "|---|---|---:|---:|---|",
    ]
    for framework in args.frameworks.split(","):
        times = measure(framework, workers, args.repeats)
        lines += table(framework, workers, times)
        print("\n".join(lines[-7:]), flush=True)
    load_after = os.getloadavg()
    header = [
        "# Sweeps on every core",
        "",
        f"A {len(AXES['learning_rate'])}x{len(AXES['init_scale'])} grid (learning_rate x "
        f"init_scale) of the classic MLP, {BASE.steps} steps, no run cache; {workers} cores, "
        f"Python {platform.python_version()}, median of {args.repeats} repeats, the variants "
        "in turn inside each repeat. Cold: loky's pool shut down first, so the time includes "
        "starting the workers and importing the framework in each. Constant: what a cold "
        "pool adds to serial/N on a 10x10 grid of the same runs (every other value), the "
        "start-up that does not grow with the grid. CPU: user + system seconds of this process "
        "and of its workers. The workers' traces equal the serial ones "
        f"bit for bit (checked). Load average (1 min) {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (the machine is shared).{autogroup()}",
        "",
        "Command: `.venv/bin/python benchmarks/sweep_parallel.py --out benchmarks/sweep_results.md`",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
