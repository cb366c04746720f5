"""Made once per test run, however many pytest-xdist workers ask (`once`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from filelock import FileLock


def once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[], Any]) -> Any:
    """``make()``, called once per test run however many xdist workers ask.

    pytest-xdist's own recipe: the workers of one run share the parent of
    their temporary folders; the first to take the lock makes the result
    and leaves it there as JSON, the others wait for the lock and read it.
    Without xdist it is simply ``make()``. If ``make`` raised, the other
    workers fail with its error instead of making it again.

    Args:
        tmp_path_factory: pytest's fixture of the run's temporary folders.
        name: the result's file name (no suffix), one per shared thing.
        make: returns something ``json.dumps`` takes.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return make()
    shared = tmp_path_factory.getbasetemp().parent / f"{name}.json"
    with FileLock(f"{shared}.lock"):
        if shared.is_file():
            done = json.loads(shared.read_text())
            if "error" in done:
                raise RuntimeError(f"{name} failed in another worker: {done['error']}")
            return done["result"]
        try:
            result = make()
        except BaseException as err:  # Skipped and KeyboardInterrupt too: say so
            shared.write_text(json.dumps({"error": f"{type(err).__name__}: {err}"}))
            raise
        shared.write_text(json.dumps({"result": result}))
        return result
