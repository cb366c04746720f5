"""Runs shared between processes through a folder (`explodebook.cache.STORE_ENV`).

The book build's kernels use it (`explodebook.book.prebuild`): a run one
kernel did is read by the other. What it must never do is hand a process a
trace of another run, or fail a run because the folder holds something bad.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from explodebook import cache, tracefile
from explodebook.backends import torch as torch_backend
from explodebook.spec import RunSpec

SPEC = RunSpec(task="regression-scaled", steps=40, learning_rate=0.003)
OTHER = SPEC.replace(learning_rate=0.001)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty shared folder, set for this process; the in-process cache emptied around the test."""
    folder = tmp_path / "runs"
    folder.mkdir()
    monkeypatch.setenv(cache.STORE_ENV, str(folder))
    monkeypatch.setattr(cache, "STORE_MIN_SECONDS", 0.0)  # share even these short runs
    cache.clear()
    yield folder
    cache.clear()


def _no_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(spec, **options):
        raise AssertionError(f"ran {spec!r} instead of reading it")

    monkeypatch.setattr(torch_backend, "run", refuse)


def test_a_run_another_process_did_is_read_not_run(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = ("import sys; from explodebook import cache; from explodebook.spec import RunSpec; "
            "cache.STORE_MIN_SECONDS = 0.0; "
            f"t = cache.cached_run({SPEC!r}); print(repr(t.wall_time))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, cache.STORE_ENV: str(store)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(store.glob("*.npz"))) == 1 and not list(store.glob("*.part"))
    _no_runs(monkeypatch)
    trace = cache.cached_run(SPEC)
    assert repr(trace.wall_time) == done.stdout.strip()  # that process's run, as it measured it
    assert trace.spec == SPEC and trace.framework == "torch"
    assert cache.cached_run(SPEC) is trace  # and in this process's cache from then on


def test_a_stored_run_equals_the_run(store: Path) -> None:
    ran = cache.cached_run(SPEC)
    cache.clear()
    read = cache.cached_run(SPEC)
    assert read is not ran and read.equals(ran) and read.wall_time == ran.wall_time


def test_a_file_of_another_run_or_framework_is_not_taken(store: Path) -> None:
    cache.cached_run(SPEC)
    (path,) = store.glob("*.npz")
    wrong = torch_backend.run(OTHER)  # another run's trace where SPEC's should be
    tracefile.save(wrong, path)
    cache.clear()
    got = cache.cached_run(SPEC)
    assert got.spec == SPEC and not got.equals(wrong)
    assert tracefile.load(path).spec == SPEC  # and the file is right again


def test_a_broken_file_is_run_again(store: Path) -> None:
    cache.cached_run(SPEC)
    (path,) = store.glob("*.npz")
    path.write_bytes(b"PK\x03\x04 cut short by a process that died")
    cache.clear()
    assert cache.cached_run(SPEC).equals(torch_backend.run(SPEC))
    assert tracefile.load(path).spec == SPEC


def test_short_runs_and_processes_without_the_folder_share_nothing(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "STORE_MIN_SECONDS", 60.0)
    cache.cached_run(SPEC)  # shorter than a minute: cheaper to run again than to share
    assert not list(store.iterdir())
    monkeypatch.setattr(cache, "STORE_MIN_SECONDS", 0.0)
    monkeypatch.delenv(cache.STORE_ENV)
    cache.cached_run(OTHER)
    assert not list(store.iterdir())


def test_a_folder_that_cannot_be_written_costs_the_sharing_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cache.STORE_ENV, str(tmp_path / "no" / "such" / "folder"))
    monkeypatch.setattr(cache, "STORE_MIN_SECONDS", 0.0)
    cache.clear()
    try:
        assert cache.cached_run(SPEC).spec == SPEC
    finally:
        cache.clear()
