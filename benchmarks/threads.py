"""Why a reader's PyTorch loop can run many times slower beside TensorFlow.

Run with ``.venv/bin/python benchmarks/threads.py`` (``--out FILE`` also
writes the Markdown table). Not part of the tests.

The loop is chapter 11's: a small CNN on 8x8 images, ``DataLoader``,
``zero_grad``/``backward``/``step``, two epochs of 1,797 samples in batches
of 32 (114 steps), in a process where TensorFlow is loaded too (imported in
the safe order, `explodebook.frameworks`). It runs with PyTorch's default
intra-op threads (one per core) and with one thread, each with the other
cores idle and with one busy process per core but one (a pure-Python spin
loop: what another notebook, a build, or TensorFlow's own thread pools do
to a core). The variants run in turn inside each repeat, so that machine
noise hits them alike; the table gives the median and the worst repeat,
and ratios against the one-thread idle run measured in the same repeats.

The point: with one OpenMP thread per core, every PyTorch operation waits
at a barrier for all its threads; when the OS has given one of those cores
to another process, the operation waits for a scheduler time slice
(milliseconds) although its work takes microseconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPIN = "while True: pass"


def load_frameworks() -> None:
    """PyTorch, then TensorFlow in the same process (as in a chapter), in the safe order.

    Called by `main` after the arguments are parsed, so that ``--help`` (and
    a mistyped option) answers at once instead of after seconds of imports.
    """
    from explodebook.frameworks import import_tensorflow, import_torch

    import_torch()
    import_tensorflow()


def reader_loop(epochs: int = 2) -> float:
    """Chapter 11's loop on random 8x8 images; returns seconds."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    X, y = torch.rand(1797, 1, 8, 8), torch.rand(1797, 1) * 30
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 16, 3, padding=1), nn.Tanh(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 1),
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.MSELoss()
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss_fn(net(xb), yb).backward()
            optimizer.step()
    return time.perf_counter() - start


def measure(threads: int, busy: int) -> float:
    import torch

    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    try:
        time.sleep(0.2)  # let the spinners take their cores
        torch.set_num_threads(threads)
        return reader_loop()
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load_frameworks()
    import torch

    cores = os.cpu_count() or 1
    default = torch.get_num_threads()
    busy = max(1, cores - 1)
    variants = {
        f"{default} threads (default), idle": (default, 0),
        "1 thread, idle": (1, 0),
        f"{default} threads (default), {busy} core(s) busy": (default, busy),
        f"1 thread, {busy} core(s) busy": (1, busy),
    }
    reader_loop(epochs=1)  # warm-up: first-call costs out of the timings
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (threads, spinners) in variants.items():
            times[name].append(measure(threads, spinners))
    torch.set_num_threads(default)

    baseline = [t for t in times["1 thread, idle"]]
    lines = [
        f"Chapter 11's PyTorch loop (114 steps) with TensorFlow loaded; {cores} cores, "
        f"torch {torch.__version__}, Python {platform.python_version()}, {args.repeats} repeats. "
        "Ratios: each repeat's time over the same repeat's one-thread idle time.",
        "",
        "| variant | median (s) | worst (s) | median ratio | worst ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, baseline)]
        lines.append(
            f"| {name} | {statistics.median(values):.2f} | {max(values):.2f} | "
            f"{statistics.median(ratios):.1f}x | {max(ratios):.1f}x |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text("# PyTorch threads beside TensorFlow\n\n" + table + "\n")


if __name__ == "__main__":
    main()
