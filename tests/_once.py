"""Made once per test run, however many pytest-xdist workers or fixtures ask (`once`)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

# This process's results (or errors), by run and name: the module fixtures
# of two files may ask in one worker, or in a run without xdist.
_results: dict[tuple[str, str], dict[str, Any]] = {}
# One maker per result in this process: a fixture may ask while a background
# thread (tests/_zh_edition.py) is making it. (Across processes, the file lock.)
_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_lock = threading.Lock()


def once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[], Any]) -> Any:
    """``make()``, called once per test run however many xdist workers ask.

    pytest-xdist's own recipe: the workers of one run share the parent of
    their temporary folders; the first to take the lock makes the result
    and leaves it there as JSON, the others wait for the lock and read it.
    Each process also keeps what it made or read, so that a second fixture
    asking in the same process (or in a run without xdist) gets it too; a
    second thread asking while the first makes it waits for it.
    If ``make`` raised, every later caller fails with its error instead of
    making it again.

    Args:
        tmp_path_factory: pytest's fixture of the run's temporary folders.
        name: the result's file name (no suffix), one per shared thing.
        make: returns something ``json.dumps`` takes.
    """
    key = (str(tmp_path_factory.getbasetemp()), name)
    with _locks_lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _results:
            try:
                _results[key] = _made_or_read(tmp_path_factory.getbasetemp().parent / f"{name}.json", make)
            except BaseException as err:  # Skipped and KeyboardInterrupt too: say so
                _results[key] = {"error": f"{type(err).__name__}: {err}"}
                raise
    done = _results[key]
    if "error" in done:
        raise RuntimeError(f"{name} failed earlier in this run: {done['error']}")
    return done["result"]


def _made_or_read(shared: Path, make: Callable[[], Any]) -> dict[str, Any]:
    """``{"result": make()}``, or what the worker that made it left in ``shared``."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return {"result": make()}
    with FileLock(f"{shared}.lock"):
        if shared.is_file():
            return json.loads(shared.read_text())
        try:
            done = {"result": make()}
        except BaseException as err:
            shared.write_text(json.dumps({"error": f"{type(err).__name__}: {err}"}))
            raise
        shared.write_text(json.dumps(done))
        return done
