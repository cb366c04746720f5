"""``make test`` on every core: what the xdist workers share is made once.

Each test runs pytest itself, with two xdist workers as ``make test`` does,
on a folder of two small test files (one per worker) that share session
fixtures (module fixtures: each file asks) made through `_once.once`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CONFTEST = f"""
import os, sys
from pathlib import Path
import pytest
sys.path.insert(0, {str(TESTS)!r})
from _once import once

LOG = Path(os.environ["ONCE_LOG"])

def _log(what):
    with LOG.open("a") as f:
        f.write(f"{{what}} {{os.environ.get('PYTEST_XDIST_WORKER')}}\\n")

@pytest.fixture(scope="module")  # each file asks: twice in a run without xdist
def made(tmp_path_factory):
    def make():
        _log("made")
        return {{"by": os.environ.get("PYTEST_XDIST_WORKER"), "numbers": [1, 2]}}
    return once(tmp_path_factory, "made", make)

@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    def make():
        _log("broken")
        raise ValueError("no such chapter")
    return once(tmp_path_factory, "broken", make)
"""

TEST_FILE = """
import os
def test_made(made):
    with open(os.environ["ONCE_LOG"], "a") as f:
        f.write(f"got {{made['by']}} {{os.environ.get('PYTEST_XDIST_WORKER')}}\\n")
    assert made["numbers"] == [1, 2]
def test_broken(broken):
    pass
"""


def _run(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / name).write_text(TEST_FILE.format())
    (tmp_path / "conftest.py").write_text(CONFTEST)
    log = tmp_path / "log.txt"
    # not this run's xdist worker: PYTEST_XDIST_WORKER would make it one
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--basetemp", str(tmp_path / "base"), *options, str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**env, "ONCE_LOG": str(log), "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    return done, [line.split() for line in log.read_text().splitlines()]


def test_two_workers_share_one_result_and_one_failure(tmp_path: Path) -> None:
    done, log = _run(tmp_path, "-n", "2", "--dist", "loadfile")
    out = done.stdout + done.stderr
    workers = {line[2] for line in log if line[0] == "got"}
    assert workers == {"gw0", "gw1"}, (log, out)  # one file per worker: a real parallel run
    made = [line for line in log if line[0] == "made"]
    assert len(made) == 1, (log, out)  # once, although both workers asked
    # both got the maker's result, the other worker through the JSON file
    assert {line[1] for line in log if line[0] == "got"} == {made[0][1]}
    # the failure is made once too, and the other worker reports it
    assert len([line for line in log if line[0] == "broken"]) == 1, (log, out)
    assert "ValueError: no such chapter" in out
    assert "RuntimeError: broken failed earlier in this run: ValueError: no such chapter" in out
    assert "2 passed, 2 errors" in out, out


def test_without_xdist_two_files_share_one_result_and_one_failure(tmp_path: Path) -> None:
    done, log = _run(tmp_path, "-p", "no:xdist")
    out = done.stdout + done.stderr
    # both files' module fixtures asked; made once, failed once
    assert [line[0] for line in log] == ["made", "got", "broken", "got"], (log, out)
    assert "ValueError: no such chapter" in out
    assert "RuntimeError: broken failed earlier in this run: ValueError: no such chapter" in out
    assert "2 passed, 2 errors" in out, out


class _Item:
    """What `conftest.pytest_collection_modifyitems` reads of a test."""

    def __init__(self, nodeid: str, fixtures: tuple[str, ...] = (), marks: tuple[str, ...] = ()) -> None:
        self.nodeid, self.fixturenames, self.marks = nodeid, list(fixtures), marks

    def get_closest_marker(self, name: str) -> object:
        return name if name in self.marks else None


def test_files_run_book_build_first_long_next_readers_last() -> None:
    from conftest import order_files

    items = [
        _Item("tests/test_a.py::x"),
        _Item("tests/test_book.py::a", ("build",)),
        _Item("tests/test_book.py::b", ("tmp_path",)),  # stays with its file
        _Item("tests/test_book.py::c", ("build",)),
        _Item("tests/test_browser_zh.py::x", ("build",)),
        _Item("tests/test_browser.py::x", ("build",)),
        _Item("tests/test_c.py::x"),
        _Item("tests/test_grading.py::x"),
        _Item("tests/test_grading.py::y", marks=("zipenv",)),
        _Item("tests/test_lab.py::x", marks=("book",)),
        _Item("tests/test_publish.py::x"),
        _Item("tests/test_publish.py::y", ("build",)),
        _Item("tests/test_sweep.py::x", marks=("slow",)),
        _Item("tests/test_zh.py::x", ("build", "tmp_path")),
        _Item("tests/test_zh_values.py::x", ("build",)),
    ]
    order_files(items)
    # the book's builder; the long files; the rest; the readers: the Chinese
    # edition's builder, the English book's readers, the Chinese edition's, and
    # the browser's two files last, English then Chinese
    assert [i.nodeid for i in items] == [
        "tests/test_book.py::a", "tests/test_book.py::b", "tests/test_book.py::c",
        "tests/test_grading.py::x", "tests/test_grading.py::y", "tests/test_lab.py::x",
        "tests/test_sweep.py::x",
        "tests/test_a.py::x", "tests/test_c.py::x",
        "tests/test_zh.py::x", "tests/test_publish.py::x", "tests/test_publish.py::y",
        "tests/test_zh_values.py::x", "tests/test_browser.py::x", "tests/test_browser_zh.py::x",
    ]  # fmt: skip


def test_the_chinese_editions_are_built_early_only_for_runs_that_test_them() -> None:
    from conftest import wants_zh

    assert wants_zh([_Item("tests/test_a.py::x"), _Item("tests/test_zh_figures.py::y")])
    assert wants_zh([_Item("tests/test_browser_zh.py::test_page[intro]")])
    assert not wants_zh([_Item("tests/test_browser.py::test_page[intro]"), _Item("tests/test_book.py::a")])


def test_a_thread_asking_while_another_makes_it_waits_for_that_result(tmp_path: Path, monkeypatch) -> None:
    import threading
    import time
    from types import SimpleNamespace

    from _once import once

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # no file lock: only the threads'
    base = tmp_path / "base"
    base.mkdir()
    factory = SimpleNamespace(getbasetemp=lambda: base)
    made: list[int] = []

    def make() -> int:
        made.append(1)
        time.sleep(0.3)  # the second thread asks meanwhile
        return 42

    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(once(factory, "thing", make))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [42, 42] and made == [1]
