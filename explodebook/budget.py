"""How long a run will take, before it starts, and the refusal of one over budget.

A `RunSpec` within its per-field limits can still ask for hours of work
(``RunSpec(depth=64, width=1024)``: 2 to 3 hours on a 2-core machine). Every
run path (`explodebook.run`, `explodebook.cache.cached_run`,
`explodebook.sweep.sweep`, the backends' ``run``) therefore estimates the
run's time from its spec first and refuses, with a `BudgetError`, one
estimated over `MAX_SECONDS`; the message says how long it would take,
which fields to lower, and how to run it anyway (``max_seconds=None``).

The estimate (`estimate_seconds`) is a simple model of the work
(`explodebook.costs`): a set-up cost plus, per step, a dispatch cost per
operation, the multiply-adds of the forward and backward passes and a cost
per parameter. It is a guard, not a benchmark: within a factor of about 3,
and an upper bound for a run that diverges (it stops early).

**Calibration.** A reader's machine is faster or slower than the one the
constants come from, so the first run whose estimate comes near a limit
(the budget, or the progress-bar threshold) calibrates them, once per
process: `calibrate` times a small matrix product, a memory-bound pass and
a loop of tiny operations with numpy (about 10 ms) and scales each kind of
cost by the machine's speed relative to the reference machine (clamped to
a factor of 4 either way, so one odd timing cannot make the guard useless).
Runs far from every limit never calibrate (their estimate at the slowest
allowed factor is below the limits), nor does a book build (see
`watched`): the book's runs are far below the budget. Set `SPEED` to skip
calibration (``budget.SPEED = budget.Speed(1, 1, 1)``: the reference
machine).

Progress bars and Ctrl-C while a run is under way are `explodebook.progress`'s
job; `RunInterrupted` and the backends' helpers are importable from here too.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from explodebook.checks import check_framework
from explodebook.costs import (  # noqa: F401 (Speed, step_seconds: importable from here)
    Runs,
    Speed,
    fields_to_lower,
    run_seconds,
    step_seconds,
    total_seconds,
)

# Progress bars and Ctrl-C: importable from here, where the backends and
# explodebook.run look for them.
from explodebook.progress import (  # noqa: F401
    Progress,
    RunInterrupted,
    StopFlag,
    describe,
    interrupted,
    interruptible,
    spec_text,
    stopped_at_once,
    watched,
)
from explodebook.spec import RunSpec, SpecError

__all__ = [
    "MAX_SECONDS",
    "PROGRESS_SECONDS",
    "SPEED",
    "DEFAULT",
    "BudgetError",
    "CHECK_SECONDS",
    "calibrate",
    "estimate_seconds",
    "format_seconds",
]

#: Longest estimated time, in seconds, of one run (or of all the runs of one
#: sweep) that is started without asking; ``None`` turns the guard off for
#: the session. A call's ``max_seconds=`` keyword overrides it.
MAX_SECONDS: float | None = 120.0

#: Runs and sweeps estimated to take longer than this many seconds show a
#: progress bar (unless called with ``progress=False``).
PROGRESS_SECONDS: float = 3.0

#: The machine's speed relative to the reference machine, as `calibrate`
#: measures it; ``None`` until a run needs it.
SPEED: Speed | None = None

# Calibration factors are clamped to [1 / _MAX_FACTOR, _MAX_FACTOR].
_MAX_FACTOR = 4.0

#: About how often, in estimated seconds of training, a backend checks for
#: Ctrl-C and moves its progress bar: the size of its chunks of steps (which
#: do not change the trace).
CHECK_SECONDS = 0.1


class _Default:
    def __repr__(self) -> str:
        return "explodebook.budget.MAX_SECONDS"


#: Default of every ``max_seconds=`` keyword: `MAX_SECONDS` as it is when
#: the run starts.
DEFAULT: Any = _Default()


class BudgetError(SpecError):
    """A run (or a sweep) is estimated to take longer than its budget.

    A `SpecError`, so a ``ValueError``. The message says how long it would
    take, which fields to lower, and how to run it anyway.

    Attributes:
        seconds: the estimate.
        max_seconds: the budget it exceeds.
        fields: the `RunSpec` fields whose lowering helps most, most
            effective first.
    """

    def __init__(self, message: str, seconds: float, max_seconds: float, fields: Sequence[str]):
        super().__init__(message)
        self.seconds = seconds
        self.max_seconds = max_seconds
        self.fields = list(fields)


# -- calibration -----------------------------------------------------------------


_REFERENCE = Speed(1.0, 1.0, 1.0)

# What `calibrate` measures on the reference machine (seconds per unit,
# best of several repeats): see `_measure`.
_REFERENCE_UNITS = Speed(op=0.23e-6, mac=0.013e-9, elem=0.42e-9)


def _best(function: Callable[[], Any], repeats: int = 5) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _measure() -> Speed:
    """Seconds per op, per multiply-add and per element on this machine."""
    import numpy as np

    a = np.ones((64, 256), np.float32)
    b = np.ones((256, 256), np.float32)
    x = np.ones(1 << 20, np.float32)
    s1, s2, s3 = np.ones(8, np.float32), np.ones(8, np.float32), np.empty(8, np.float32)

    def matmul() -> None:
        for _ in range(4):
            a @ b

    def memory() -> None:
        y = x.astype(np.float64)
        np.square(y, out=y)
        y.sum()

    def ops() -> None:
        for _ in range(500):
            np.add(s1, s2, out=s3)

    matmul(), memory(), ops()  # warm up
    return Speed(
        op=_best(ops) / 500,
        mac=_best(matmul) / (4 * a.shape[0] * a.shape[1] * b.shape[1]),
        elem=_best(memory) / x.size,
    )


def calibrate() -> Speed:
    """Measure this machine's speed relative to the reference machine.

    Times a small matrix product, a memory-bound pass and a loop of tiny
    operations with numpy (best of 5 repeats each, about 10 ms in all),
    stores the result in `SPEED` and returns it. Each factor is clamped
    to [1/4, 4].
    """
    global SPEED
    measured = _measure()
    SPEED = Speed(
        *(
            min(_MAX_FACTOR, max(1 / _MAX_FACTOR, m / r))
            for m, r in zip(measured, _REFERENCE_UNITS, strict=True)
        )
    )
    return SPEED


def _speed() -> Speed:
    return SPEED if SPEED is not None else calibrate()


def estimate_seconds(spec: RunSpec, framework: str = "torch") -> float:
    """Estimated seconds of ``run(spec, framework)`` on this machine.

    Build and training, not imports; an upper bound for a run that stops
    early at a non-finite value. Calibrates once per process (`calibrate`)
    if `SPEED` is not set.

    Args:
        spec: the run.
        framework: ``"torch"`` or ``"keras"``.
    """
    if not isinstance(spec, RunSpec):
        raise TypeError(f"spec must be a RunSpec, got {type(spec).__name__}")
    check_framework(framework)
    return run_seconds(spec, framework, _speed())


def format_seconds(seconds: float) -> str:
    """A duration as a reader wants it: ``"about 40 s"``, ``"about 2 h 50 min"``."""
    return f"about {_duration(seconds)}" if math.isfinite(seconds) else "forever"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(hours / 24)} days"


# -- the check ------------------------------------------------------------------


def resolve(max_seconds: Any) -> float | None:
    """The budget a ``max_seconds=`` argument means (`DEFAULT`: `MAX_SECONDS`)."""
    if max_seconds is DEFAULT:
        max_seconds = MAX_SECONDS
    if max_seconds is None:
        return None
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, numbers.Real):
        raise TypeError(f"max_seconds must be a number of seconds or None, got {max_seconds!r}")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds={max_seconds!r}: give a positive number of seconds, or None")
    return float(max_seconds)


def given(max_seconds: Any = DEFAULT, progress: bool | None = None) -> dict[str, Any]:
    """The keywords to pass on: those not at their default (`DEFAULT`, None)."""
    options: dict[str, Any] = {}
    if max_seconds is not DEFAULT:
        options["max_seconds"] = max_seconds
    if progress is not None:
        options["progress"] = progress
    return options


def _advice(suggestions: list[tuple[str, int | None]]) -> str:
    if not suggestions:
        return ""
    names = [name for name, _ in suggestions]
    lead = f"Most of the time comes from {_join(names)}"
    fits = [f"{name} to at most {value}" for name, value in suggestions if value is not None]
    if fits:
        return f"{lead}: lower {_join(fits, 'or')}. "
    return f"{lead}; no one of them alone fits the budget: lower several. "


def _join(items: Sequence[str], word: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


@dataclass(frozen=True)
class Plan:
    """What a run or sweep about to start was estimated at.

    Attributes:
        seconds: the estimate (on the reference machine when no
            calibration was needed: see `plan`).
        progress: whether to show a progress bar.
    """

    seconds: float
    progress: bool


def plan(
    runs: Runs,
    max_seconds: Any = DEFAULT,
    progress: bool | None = None,
    *,
    what: str | None = None,
    anyway: str | None = None,
) -> Plan:
    """Estimate ``runs``, refuse them if over budget, decide on a progress bar.

    Calibrates only when the outcome could depend on it: when the estimate
    on the reference machine, times the largest calibration factor, is
    above the budget or (for ``progress=None``) the progress threshold.

    Args:
        runs: ``(spec, framework)`` of every run to start.
        max_seconds: the budget for all of them together; `DEFAULT` is
            `MAX_SECONDS`, ``None`` no limit.
        progress: ``True``/``False`` to show a bar or not; ``None``: show
            one if the estimate is over `PROGRESS_SECONDS` and `watched`.
        what: how the message names the work (default: the spec, or "these
            N runs").
        anyway: the call the message shows to run it anyway (default
            ``explodebook.run(spec, "<framework>", max_seconds=None)``).

    Raises:
        BudgetError: the estimate is over the budget.
    """
    limit = resolve(max_seconds)
    for spec, framework in runs:
        if not isinstance(spec, RunSpec):
            raise TypeError(f"spec must be a RunSpec, got {type(spec).__name__}")
        check_framework(framework)
    bar_threshold = PROGRESS_SECONDS if progress is None and watched() else None
    thresholds = [t for t in (limit, bar_threshold) if t is not None]
    speed = SPEED
    if speed is None:
        # Calibrate only if the slowest allowed speed could cross a threshold.
        far = all(total_seconds(runs, _REFERENCE) * _MAX_FACTOR <= t for t in thresholds)
        speed = _REFERENCE if far else calibrate()
    estimate = total_seconds(runs, speed)
    if limit is not None and estimate > limit:
        suggestions = fields_to_lower(runs, speed, limit)
        if what is None:
            what = spec_text(runs[0][0]) if len(runs) == 1 else f"these {len(runs)} runs"
        frameworks = sorted({framework for _, framework in runs})
        source = "explodebook.budget.MAX_SECONDS" if max_seconds is DEFAULT else "max_seconds"
        if anyway is None:
            anyway = f'explodebook.run(spec, "{runs[0][1]}", max_seconds=None)'
        raise BudgetError(
            f"{what} would take {format_seconds(estimate)} with {_join(frameworks)} on this "
            f"machine, over the budget of {_duration(limit)} ({source}). {_advice(suggestions)}"
            f"To run it anyway, pass max_seconds=None (e.g. {anyway}), or raise "
            "explodebook.budget.MAX_SECONDS for the session.",
            estimate,
            limit,
            [name for name, _ in suggestions],
        )
    if progress is None:
        progress = bar_threshold is not None and estimate > bar_threshold
    return Plan(estimate, bool(progress))
