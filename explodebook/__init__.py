"""explodebook: the companion package of the Exploding Gradients book.

Build small networks in PyTorch and Keras from one `RunSpec`, record their
gradient dynamics in a framework-neutral `Trace`, `diagnose` the article's
six signs, and plot them. ``import explodebook`` imports neither framework:
`run` (or ``explodebook.backends.get``) imports a backend when it is first
used.

Modules: `spec`, `data`, `weights`, `trace`, `backends` (``torch``,
``keras``), `diagnose`, `outcome`, `theory`, `plots`, `sweep`, `scrubber`
(a sweep behind a slider in static HTML), `cache`, `widgets`, `monitor`
(``torch``, ``keras``: watch your own model), `timesteps` (gradient per
input time step of an RNN), `frameworks` (import PyTorch and TensorFlow in
the safe order), `notebook` (a chapter's set-up), `budget` (a run's
estimated time and its limit), `progress` (progress bars and Ctrl-C).
"""

from __future__ import annotations

import importlib
from typing import Any

from explodebook import budget
from explodebook.budget import BudgetError
from explodebook.diagnose import Diagnosis, Sign, Thresholds, diagnose
from explodebook.frameworks import guard_triton as _guard_triton
from explodebook.progress import RunInterrupted
from explodebook.spec import RunSpec, SpecError
from explodebook.trace import FRAMEWORKS, Trace

__all__ = [
    "RunSpec",
    "SpecError",
    "Trace",
    "FRAMEWORKS",
    "run",
    "BudgetError",
    "RunInterrupted",
    "budget",
    "diagnose",
    "Diagnosis",
    "Sign",
    "Thresholds",
    "plots",
    "theory",
    "sweep",
    "scrubber",
    "widgets",
    "outcome",
    "monitor",
    "timesteps",
]

__version__ = "0.1.0"

# If the reader imported TensorFlow before PyTorch's triton could load, hide
# triton now (no framework is imported): its import by the first optimizer
# would crash the process (explodebook.frameworks).
_guard_triton()

# Submodules that import matplotlib or ipywidgets load on first use, so
# that `import explodebook` stays light.
_LAZY = {
    "plots", "theory", "sweep", "scrubber", "widgets", "cache", "backends", "data", "weights",
    "outcome", "monitor", "timesteps",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"explodebook.{name}")
    raise AttributeError(f"module 'explodebook' has no attribute {name!r}")


def run(
    spec: RunSpec,
    framework: str = "torch",
    *,
    cache: bool = True,
    max_seconds: float | None = budget.DEFAULT,
    progress: bool | None = None,
) -> Trace:
    """Train the network of ``spec`` with one framework and return its trace.

    The run's time is estimated from ``spec`` first (``explodebook.budget``):
    a run estimated over ``max_seconds`` is refused with a ``BudgetError``
    (a `SpecError`) whose message says how long it would take and which
    fields to lower. Ctrl-C during training raises ``RunInterrupted`` (a
    ``KeyboardInterrupt``) whose ``trace`` holds the steps done, as the
    trace of ``spec.replace(steps=<steps done>)``; nothing is cached.

    Args:
        spec: the run.
        framework: ``"torch"`` or ``"keras"``.
        cache: reuse the trace of an identical earlier run in this process
            (`explodebook.cache.cached_run`; its arrays are read-only).
        max_seconds: the longest estimated time allowed, in seconds; the
            default is ``explodebook.budget.MAX_SECONDS`` (2 minutes),
            ``None`` means no limit.
        progress: show a progress bar; by default only for a run estimated
            over ``explodebook.budget.PROGRESS_SECONDS`` (3 s).

    Returns:
        the `Trace`.
    """
    if cache:
        from explodebook.cache import cached_run

        return cached_run(spec, framework, max_seconds=max_seconds, progress=progress)
    from explodebook.backends import get

    return get(framework).run(spec, max_seconds=max_seconds, progress=progress)
