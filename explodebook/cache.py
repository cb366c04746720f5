"""The package's one in-process cache of training runs.

A `RunSpec` is frozen and hashable and a backend's run is deterministic, so
``(framework, spec)`` identifies a `Trace`. Sweeps, scrubbers and the
ipywidgets explorer all run through `cached_run`, so moving a slider back
to a setting already seen, or rebuilding a figure in the same kernel, costs
nothing.

Cached traces are shared, so their arrays are made read-only: an in-place
edit by one caller would otherwise silently change what every later caller
gets. Copy an array (``trace.loss.copy()``) to modify it.

Several processes can share their runs through a folder named by the
environment variable ``EXPLODEBOOK_RUN_STORE`` (`STORE_ENV`): the book
build sets it for its kernels (`explodebook.book.prebuild`), so that a run
one kernel did is read, not run again, by the other. A run is written there
(`explodebook.tracefile`, atomically) when it took at least
`STORE_MIN_SECONDS`; a file that cannot be read is ignored and run again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

from explodebook import budget
from explodebook.checks import check_framework
from explodebook.spec import RunSpec
from explodebook.trace import Trace

__all__ = ["MAX_TRACES", "STORE_ENV", "STORE_MIN_SECONDS", "CacheInfo", "cached_run", "store", "freeze", "contains", "clear", "info"]

#: Most traces kept; the least recently used is dropped first. A trace of a
#: default 1600-step run is ~0.1 MB, so the cache stays in the tens of MB.
MAX_TRACES = 256

#: The environment variable naming a folder of runs shared between processes.
STORE_ENV = "EXPLODEBOOK_RUN_STORE"
#: The shortest run, in wall seconds, written to that folder. A shorter one
#: costs less to run again than to write and read (a few milliseconds each).
STORE_MIN_SECONDS = 0.05

_traces: OrderedDict[tuple[str, RunSpec], Trace] = OrderedDict()
_lock = threading.Lock()
_hits = 0
_misses = 0


class CacheInfo(NamedTuple):
    """Counters of the run cache, as ``functools.lru_cache`` reports them."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


def freeze(trace: Trace) -> Trace:
    """Make the trace's arrays read-only (a trace handed to several callers); returns it."""
    for name in (
        "loss",
        "grad_norm_total",
        "grad_norms",
        "clipped_grad_norms",
        "grad_max_abs",
        "weight_norms",
    ):
        getattr(trace, name).flags.writeable = False
    return trace


def cached_run(
    spec: RunSpec,
    framework: str = "torch",
    *,
    max_seconds: float | None = budget.DEFAULT,
    progress: bool | None = None,
) -> Trace:
    """Run ``spec`` with ``framework``'s backend, or return the cached trace.

    A run that is not cached is estimated first: over ``max_seconds`` it is
    refused (``BudgetError``, see `explodebook.run`); a cached trace costs
    nothing and is always returned. A run stopped by Ctrl-C
    (``RunInterrupted``) is not cached.

    Args:
        spec: the run.
        framework: ``"torch"`` or ``"keras"``.
        max_seconds, progress: as in `explodebook.run`.

    Returns:
        the `Trace`; the *same object* for the same ``(framework, spec)``
        while it stays in the cache, with read-only arrays.
    """
    global _hits, _misses
    if not isinstance(spec, RunSpec):
        raise TypeError(f"spec must be a RunSpec, got {type(spec).__name__}")
    framework = check_framework(framework)
    key = (framework, spec)
    with _lock:
        trace = _traces.get(key)
        if trace is not None:
            _traces.move_to_end(key)
            _hits += 1
            return trace
        _misses += 1

    from explodebook import backends

    # Run outside the lock: a run takes seconds, and a second thread asking
    # for another spec should not wait for it.
    # An interrupted run raises (RunInterrupted) before this stores anything.
    # Only the options given are passed on, so a backend's run written as
    # run(spec) (a stand-in in a test) still works with the defaults.
    options = budget.given(max_seconds=max_seconds, progress=progress)
    path = _stored_path(spec, framework)
    trace = _read_stored(path, spec, framework)
    if trace is None:
        trace = backends.get(framework).run(spec, **options)
        if path is not None and (trace.wall_time or 0.0) >= STORE_MIN_SECONDS:
            _write_stored(path, trace)
    return store(spec, framework, trace)


def _stored_path(spec: RunSpec, framework: str) -> Path | None:
    """Where ``(framework, spec)``'s run lies in the shared folder (`STORE_ENV`), if one is set."""
    folder = os.environ.get(STORE_ENV)
    if not folder:
        return None
    # The spec's repr names every field, floats exactly: one file per run.
    key = hashlib.sha256(f"{framework}\n{spec!r}".encode()).hexdigest()[:32]
    return Path(folder) / f"{key}.npz"


def _read_stored(path: Path | None, spec: RunSpec, framework: str) -> Trace | None:
    """The run another process wrote at ``path``; ``None`` if none, or if it cannot be read."""
    if path is None or not path.is_file():
        return None
    from explodebook import tracefile

    try:
        trace = tracefile.load(path)
    except (OSError, ValueError):  # half-written by a process that died: run it again
        return None
    return trace if trace.spec == spec and trace.framework == framework else None


def _write_stored(path: Path, trace: Trace) -> None:
    """Write ``trace`` for other processes; atomically, so that none reads half a file."""
    from explodebook import tracefile

    partial = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        tracefile.save(trace, partial)
        os.replace(partial, path)
    except OSError:  # a full or read-only disk costs the sharing, not the run
        partial.unlink(missing_ok=True)


def store(spec: RunSpec, framework: str, trace: Trace) -> Trace:
    """Put the trace of a run done elsewhere (a sweep's worker process) in the cache.

    Its arrays are made read-only. If the cache already holds a trace of
    ``(framework, spec)``, that one is kept and returned, so every caller
    sees one object. The hit and miss counters do not change.

    Returns:
        the trace now cached for ``(framework, spec)``.
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace, got {type(trace).__name__}")
    key = (check_framework(framework), spec)
    freeze(trace)
    with _lock:
        # Another thread may have finished the same run meanwhile: keep the
        # first, so every caller sees one object.
        trace = _traces.setdefault(key, trace)
        _traces.move_to_end(key)
        while len(_traces) > MAX_TRACES:
            _traces.popitem(last=False)
    return trace


def contains(spec: RunSpec, framework: str = "torch") -> bool:
    """Whether the trace of ``(framework, spec)`` is in the cache (no run, no counters)."""
    with _lock:
        return (framework, spec) in _traces


def clear() -> None:
    """Empty the cache and reset its counters."""
    global _hits, _misses
    with _lock:
        _traces.clear()
        _hits = _misses = 0


def info() -> CacheInfo:
    """Hits, misses, capacity and current size of the cache."""
    with _lock:
        return CacheInfo(_hits, _misses, MAX_TRACES, len(_traces))
