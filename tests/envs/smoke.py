"""Smoke test of an installed explodebook, run inside another environment.

`make test-envs` runs it in clean virtualenvs outside the repository (see
the Makefile): the package installed from its wheel with only one extra
(``torch`` or ``keras``), and the CUDA build of PyTorch (what ``pip install
torch`` gives on Linux, and what Colab ships) beside TensorFlow. Not
collected by pytest: it needs the environment it is run in.

Usage: python -I smoke.py {torch,keras,cuda} [CHAPTER.md]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def package_alone(framework: str) -> None:
    """import, run, diagnose, plots, the monitor: with one framework installed."""
    import explodebook

    check(
        not {"torch", "tensorflow", "keras"} & set(sys.modules),
        "import explodebook imports no framework",
    )
    check(
        not Path(explodebook.__file__).resolve().is_relative_to(Path.cwd().resolve()),
        f"explodebook comes from the installed wheel ({Path(explodebook.__file__).parent})",
    )
    from explodebook import RunSpec, diagnose, plots, run

    trace = run(RunSpec(steps=200), framework)
    check(trace.steps_run >= 1, f"run(RunSpec(steps=200), {framework!r}) -> {trace!r}")
    check(len(diagnose(trace).signs) == 6, "diagnose gives the six signs")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.npz"
        trace.save(path)
        check(explodebook.Trace.load(path).equals(trace), "a saved trace loads back equal")
    plots.use_style()  # the style file ships in the wheel
    ax = plots.loss_curve(trace)
    ax.figure.savefig(os.devnull, format="png")
    check(True, "plots draw with the book's style")
    monitor_own_loop(framework)


def monitor_own_loop(framework: str) -> None:
    """A reader's own training loop, watched by the monitor."""
    import numpy as np

    from explodebook import diagnose

    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 4)).astype("float32")
    y = (X @ np.array([1.0, -2.0, 3.0, 0.5], dtype="float32") * 50)[:, None]
    if framework == "torch":
        import torch
        from torch import nn

        from explodebook.monitor.torch import GradientMonitor

        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.MSELoss()
        with GradientMonitor(net, optimizer, loss_fn=loss_fn) as monitor:
            for i in range(0, 256, 32):
                optimizer.zero_grad()
                loss_fn(net(torch.from_numpy(X[i : i + 32])), torch.from_numpy(y[i : i + 32])).backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
    else:
        import keras

        from explodebook.monitor.keras import GradientMonitor

        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
        net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=1.0), loss="mse")
        monitor = GradientMonitor()
        net.fit(X, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    trace = monitor.trace()
    check(trace.steps_run == 8, f"the {framework} monitor recorded a reader's loop: {trace!r}")
    diagnose(trace)


def cuda_build(chapter: str | None) -> None:
    """The CUDA build of PyTorch beside TensorFlow: the orders a reader uses."""
    import torch

    check("+cpu" not in torch.__version__, f"torch {torch.__version__} is not a CPU-only build")
    try:
        import importlib.util

        has_triton = importlib.util.find_spec("triton") is not None
    except ImportError:
        has_triton = False
    check(has_triton, "triton is installed (the CUDA build ships it)")

    # 1. The reproduction, each in a fresh process: the reader
    # imports both frameworks themselves, then uses the package.
    scenarios = {
        "torch, tensorflow, then a torch run": (
            "import torch, tensorflow\n"
            "from explodebook import RunSpec, run\n"
            "run(RunSpec(global_clipnorm=1.0, steps=200), 'torch')\n"
        ),
        "tensorflow, explodebook, then the reader's own optimizer": (
            "import tensorflow, explodebook, torch\n"
            "torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)\n"
        ),
        "the chapter set-up, then torch, keras, torch runs and a monitor": (
            "from explodebook.notebook import setup\n"
            "setup()\n"
            "import sys\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "import smoke\n"
            "from explodebook import RunSpec, run\n"
            "spec = RunSpec(global_clipnorm=1.0, steps=200)\n"
            "a = run(spec, 'torch', cache=False)\n"
            "run(spec, 'keras', cache=False)\n"
            "b = run(spec, 'torch', cache=False)\n"
            "assert a.equals(b), 'the second torch run differs from the first'\n"
            "smoke.monitor_own_loop('torch')\n"
            "smoke.monitor_own_loop('keras')\n"
        ),
    }
    for name, code in scenarios.items():
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        check(result.returncode == 0, f"{name} (exit {result.returncode}) {result.stderr[-1500:] if result.returncode else ''}")

    if chapter:
        run_chapter(Path(chapter))


def run_chapter(path: Path) -> None:
    """Execute a whole chapter notebook in this environment's kernel."""
    import jupytext
    import nbclient

    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [
        output for cell in notebook.cells for output in cell.get("outputs", []) if output.get("output_type") == "error"
    ]
    check(not errors, f"chapter {path.name} runs to the end")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode in ("torch", "keras"):
        package_alone(mode)
    elif mode == "cuda":
        cuda_build(sys.argv[2] if len(sys.argv) > 2 else None)
    else:
        raise SystemExit(f"mode={mode!r}: choose torch, keras or cuda")
