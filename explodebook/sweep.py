"""Run one `RunSpec` field over a list of values, in one or more frameworks, on every core.

A `Sweep` holds the traces, one per value and framework, in order. Every
run goes through `explodebook.cache.cached_run` by default, the package's
single run cache. To show a sweep in the static HTML book, pass it to
`explodebook.scrubber.scrubber`.

The runs are independent, so `run_all` (shared with `explodebook.grid`)
runs them in parallel through joblib: loky worker processes on this
machine, or any joblib backend active around the call, e.g. a Dask
cluster (``with joblib.parallel_backend("dask"): sweep(...)``). A run is
seeded and each worker trains on one thread, as a run in this process
does, so the traces are the serial run's, bit for bit.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

from explodebook import budget
from explodebook import cache as run_cache
from explodebook.cache import cached_run
from explodebook.cache import contains as cache_contains
from explodebook.checks import check_frameworks, plain
from explodebook.costs import Speed, run_seconds
from explodebook.progress import Progress, RunInterrupted
from explodebook.spec import RunSpec, SpecError
from explodebook.trace import Trace

__all__ = ["Sweep", "sweep", "run_all", "format_value", "STARTUP_SECONDS"]


def format_value(value: Any) -> str:
    """A field value as a reader wants to see it: ``1.5``, ``tanh``, ``None``."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True, eq=False)
class Sweep:
    """The traces of one `RunSpec` field swept over a list of values.

    Attributes:
        base: the spec every run starts from.
        field: the `RunSpec` field that varies.
        values: the field's values, in order (length ``N``).
        specs: ``base.replace(field=value)`` for each value (length ``N``).
        traces: framework name -> its ``N`` traces, in ``values`` order.
    """

    base: RunSpec
    field: str
    values: tuple[Any, ...]
    specs: tuple[RunSpec, ...]
    traces: dict[str, list[Trace]]

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks run, in the order given to `sweep`."""
        return tuple(self.traces)

    def __len__(self) -> int:
        return len(self.values)

    def frame(self, index: int) -> tuple[Trace, ...]:
        """The traces of value ``index``, one per framework (in `frameworks` order)."""
        return tuple(self.traces[name][index] for name in self.traces)

    def label(self, index: int) -> str:
        """``"<field> = <value>"`` for value ``index``, e.g. ``"init_scale = 1.5"``."""
        return f"{self.field} = {format_value(self.values[index])}"

    @property
    def labels(self) -> list[str]:
        """`label` of every value."""
        return [self.label(i) for i in range(len(self))]

    @property
    def base_index(self) -> int | None:
        """Index of the value that reproduces ``base`` (its default), if any."""
        for i, spec in enumerate(self.specs):
            if spec == self.base:
                return i
        return None


def sweep(
    base: RunSpec,
    field: str,
    values: Iterable[Any],
    framework: str | Sequence[str] = "torch",
    cache: bool = True,
    *,
    max_seconds: float | None = budget.DEFAULT,
    progress: bool | None = None,
    n_jobs: int | None = None,
) -> Sweep:
    """Run ``base`` once per value of one field, in one or more frameworks.

    Every spec is built (and so validated) before anything runs, so a bad
    value fails at once instead of after minutes of training; and the
    time of all the runs still to do (not those already in the run cache)
    is estimated before any starts, so a sweep that would take too long is
    refused at once, with a ``BudgetError`` that says which fields to
    lower (``explodebook.budget``). The runs go to ``n_jobs`` workers at
    once (see `run_all`: how the budget counts workers, what Ctrl-C
    keeps). Ctrl-C raises ``RunInterrupted``; the runs finished before it
    are in the run cache, so calling the same sweep again resumes where it
    stopped.

    Args:
        base: the spec to start from.
        field: name of a `RunSpec` field, e.g. ``"init_scale"``.
        values: the values the field takes (``N >= 1``).
        framework: ``"torch"``, ``"keras"`` or several, e.g.
            ``("torch", "keras")``.
        cache: go through `explodebook.cache.cached_run` (re-running a
            sweep in the same process costs nothing); ``False`` always runs.
        max_seconds: the longest estimated wall time of all the runs
            together, in seconds; default ``explodebook.budget.MAX_SECONDS``,
            ``None`` for no limit.
        progress: a progress bar over the runs (and, in this process, one
            for each run estimated over ``explodebook.budget.PROGRESS_SECONDS``);
            default: when the sweep is estimated over that threshold.
        n_jobs: worker processes, as joblib counts them (``-1``: all
            cores; ``1``: one after another in this process); default: the
            active joblib backend's, else all cores when that saves more
            time than starting the workers costs (`STARTUP_SECONDS`), and
            this process in a notebook that a tool executes (a book build,
            which runs its pages side by side).

    Returns:
        a `Sweep` with ``N`` traces per framework.

    Raises:
        SpecError: ``field`` is not a `RunSpec` field, or a value is not
            allowed for it (the message says which value); also the
            ``BudgetError`` above.
        ValueError: ``n_jobs`` is not an integer other than 0, or None.
    """
    if not isinstance(base, RunSpec):
        raise TypeError(f"base must be a RunSpec, got {type(base).__name__}")
    check_field(field)
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"values={values!r} is a string; give a list of values, e.g. [{values!r}]"
        )
    values = tuple(values)
    if not values:
        raise ValueError(f"values is empty: give at least one value of {field}")
    frameworks = check_frameworks(framework, "sweep(framework=...)")

    specs = []
    for i, value in enumerate(values):
        try:
            specs.append(base.replace(**{field: value}))
        except SpecError as e:
            raise SpecError(f"sweep over {field}: values[{i}]={value!r} is invalid: {e}") from e
    traces = run_all(
        specs, frameworks, cache=cache, max_seconds=max_seconds, progress=progress,
        n_jobs=n_jobs, what=f"sweep over {field}",
        anyway=f"sweep(base, {field!r}, values, ..., max_seconds=None)",
    )  # fmt: skip
    return Sweep(base, field, values, tuple(specs), traces)


def check_field(field: Any, where: str = "field") -> str:
    """``field`` if it names a `RunSpec` field, else a `SpecError` listing them."""
    names = [f.name for f in fields(RunSpec)]
    if not (isinstance(field, str) and field in names):
        raise SpecError(f"{where}={field!r} is not a RunSpec field; choose one of {names}")
    return field


# -- running the runs: here, or on workers -------------------------------------------

#: Seconds, per framework, that workers cost before their first run (loky
#: starting them, each importing the framework; ``benchmarks/sweep_results.md``
#: measures it). With the default ``n_jobs``, runs that workers would not
#: finish this much sooner stay in this process.
STARTUP_SECONDS = {"torch": 1.0, "keras": 6.0}

# The speed the default n_jobs compares estimates at: the reference machine's
# (no calibration just to choose).
_REFERENCE = Speed(1.0, 1.0, 1.0)

# Math libraries on one thread in a worker: the book's networks are tiny,
# and two workers on two cores with a pool of threads each would spin
# against each other. loky already sets the OpenMP/BLAS ones; TensorFlow
# reads its own, once, on import.
_ONE_THREAD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")  # fmt: skip


def run_all(
    specs: Sequence[RunSpec],
    frameworks: Sequence[str],
    *,
    cache: bool = True,
    max_seconds: float | None = budget.DEFAULT,
    progress: bool | None = None,
    n_jobs: int | None = None,
    what: str = "these runs",
    anyway: str | None = None,
) -> dict[str, list[Trace]]:
    """Every spec in every framework, ``n_jobs`` runs at a time; the engine of `sweep` and grid.

    With more than one worker, the runs still to do go through
    ``joblib.Parallel``: loky processes on this machine by default, or the
    backend active around the call (``joblib.parallel_backend("dask")``: a
    Dask cluster's workers). Each worker trains on one thread, without a
    progress bar of its own; its traces come back here and go into the
    run cache. The budget bounds the *wall* time: with ``W`` workers the
    runs may add up to ``W`` times ``max_seconds`` (no one run over
    ``max_seconds``), as they share the workers. Ctrl-C stops every
    worker and raises ``RunInterrupted`` without a ``trace`` (the runs
    under way are lost; the finished ones are cached). With one worker
    (``n_jobs=1``, or only one run to do), the runs go one after another
    in this process, and an interrupted run keeps its steps done.

    Args:
        specs: the runs, ``N`` validated specs.
        frameworks: checked framework names.
        cache, max_seconds, progress, n_jobs: as in `sweep`.
        what: how messages name the runs, e.g. ``"sweep over init_scale"``.
        anyway: the call a budget refusal shows to run them anyway.

    Returns:
        framework -> its ``N`` traces, in ``specs`` order.
    """
    # The budget covers the runs still to do, all together.
    todo = [
        (spec, name)
        for name in frameworks
        for spec in (dict.fromkeys(specs) if cache else specs)  # cached: a repeat runs once
        if not (cache and cache_contains(spec, name))
    ]
    total = len(specs) * len(frameworks)
    jobs, workers = _workers(n_jobs, todo)
    if workers == 1:
        return _run_here(specs, frameworks, cache, max_seconds, progress, todo, what, anyway)

    limit = budget.resolve(max_seconds)
    if limit is not None:
        # The wall time is at least the longest run's.
        longest = max(todo, key=lambda run: run_seconds(*run, _REFERENCE))
        budget.plan([longest], limit, False, what=f"the longest run of the {what}", anyway=anyway)
    plan = budget.plan(
        todo, None if limit is None else limit * workers, progress,
        what=f"{what} ({len(todo)} runs on {workers} workers"
        + ("" if limit is None else f", so {workers} x {limit:g} s of runs") + ")",
        anyway=anyway,
    )  # fmt: skip
    # Fetched before the workers' traces arrive: storing those may evict them.
    ready: dict[tuple[RunSpec, str], Trace] = {}
    if cache:
        ready = {(s, n): cached_run(s, n) for n in frameworks for s in dict.fromkeys(specs)
                 if cache_contains(s, n)}  # fmt: skip
    done: dict[int, Trace] = {}
    bar = Progress(plan.progress, total, what, "run")
    import joblib

    calls = (joblib.delayed(_run_in_worker)(i, s, n) for i, (s, n) in enumerate(todo))
    results = None
    completed = False
    try:
        results = joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")(calls)
        for i, trace in results:
            spec, name = todo[i]
            done[i] = run_cache.store(spec, name, trace) if cache else trace
            bar.to(total - len(todo) + len(done))
        completed = True
    except KeyboardInterrupt as e:
        if results is not None:
            with warnings.catch_warnings():  # joblib's "tasks ... have been cancelled": wanted
                warnings.simplefilter("ignore", UserWarning)
                results.close()  # stops the workers
        raise RunInterrupted(
            f"{what} interrupted: {len(done)} of {len(todo)} runs done"
            + (" (in the run cache: the same call resumes from there)" if cache else "")
            + "; the runs under way in workers are lost"
        ) from e
    finally:
        bar.close(completed)
    if not cache:
        return {name: [done[k * len(specs) + i] for i in range(len(specs))]
                for k, name in enumerate(frameworks)}  # fmt: skip
    ready.update(((s, n), done[i]) for i, (s, n) in enumerate(todo))
    return {name: [ready[spec, name] for spec in specs] for name in frameworks}


def _workers(n_jobs: Any, todo: list[tuple[RunSpec, str]]) -> tuple[int, int]:
    """joblib's ``n_jobs`` to pass, and how many workers will run at once (1: none)."""
    n_jobs = plain(n_jobs)
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0
    ):
        raise ValueError(
            f"n_jobs={n_jobs!r} is not allowed: give a number of workers (1: in this "
            "process), -1 for all cores (-2: all but one), or None for the default"
        )
    if n_jobs == 1 or len(todo) < 2:
        return 1, 1
    import joblib
    from joblib.parallel import LokyBackend, get_active_backend

    backend, context_jobs = get_active_backend()
    automatic = n_jobs is None and context_jobs is None and type(backend) is LokyBackend
    jobs = n_jobs if n_jobs is not None else context_jobs if context_jobs is not None else -1
    workers = min(joblib.effective_n_jobs(jobs), len(todo))
    if automatic and workers > 1 and not budget.watched():
        # A notebook that a tool executes: a book build, whose pages already
        # run side by side, one per core; workers would only compete with them.
        return 1, 1
    if automatic and workers > 1:
        estimate = sum(run_seconds(spec, name, _REFERENCE) for spec, name in todo)
        start = max(STARTUP_SECONDS[name] for _, name in todo)
        if estimate * (1 - 1 / workers) <= start:
            return 1, 1  # the workers would cost more than they save
    return jobs, max(workers, 1)


def _run_here(
    specs: Sequence[RunSpec],
    frameworks: Sequence[str],
    cache: bool,
    max_seconds: Any,
    progress: bool | None,
    todo: list[tuple[RunSpec, str]],
    what: str,
    anyway: str | None,
) -> dict[str, list[Trace]]:
    """The runs one after another in this process (each checks its budget again, and passes)."""
    plan = budget.plan(todo, max_seconds, progress, what=f"{what} ({len(todo)} runs)",
                       anyway=anyway)  # fmt: skip
    # Each run: a bar of its own only when long, and none when bars are off.
    options = budget.given(max_seconds, False if progress is False else None)
    runs: dict[str, Callable[[RunSpec], Trace]] = {}
    for name in frameworks:
        if cache:
            runs[name] = partial(cached_run, framework=name, **options)
        else:
            from explodebook import backends

            runs[name] = partial(backends.get(name).run, **options)
    bar = Progress(plan.progress, len(specs) * len(frameworks), what, "run")
    traces: dict[str, list[Trace]] = {name: [] for name in frameworks}
    completed = False
    try:
        for name in frameworks:
            for spec in specs:
                traces[name].append(runs[name](spec))
                bar.to(sum(map(len, traces.values())))
        completed = True
    except RunInterrupted as e:
        if hasattr(e, "add_note"):
            done = sum(map(len, traces.values()))
            e.add_note(
                f"{what}: {done} of {len(specs) * len(frameworks)} runs done"
                + (" (in the run cache: the same call resumes from there)" if cache else "")
            )
        raise
    finally:
        bar.close(completed)
    return traces


def _run_in_worker(index: int, spec: RunSpec, framework: str) -> tuple[int, Trace]:
    """One run in a worker, on one thread, with no bar and no budget check (the caller's)."""
    if "tensorflow" not in sys.modules:  # TensorFlow reads its threads once, on import
        for name in _ONE_THREAD:
            os.environ.setdefault(name, "1")
    from explodebook import backends

    return index, backends.get(framework).run(spec, max_seconds=None, progress=False)
