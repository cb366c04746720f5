"""Fixtures shared by the test files: the built book and a headless browser.

``make test`` runs the files on every core (pytest-xdist, ``--dist
loadfile``: a file's tests, and so its module fixtures, stay in one worker).
What the whole run shares is made once, not once per worker
(`_once.once`), and the files run in an order that keeps every core busy
(`pytest_collection_modifyitems`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _once import once
from explodebook.book.sources import toc_pages

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# No background traffic: the machine has no network but the registries.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# The files that read the Chinese editions (tests/_zh_edition.py builds them once per run).
_ZH_BUILDER = "test_zh.py"
_ZH_READERS = ("test_zh_figures.py", "test_zh_values.py")
# The browser's files, last: the English book's, then the Chinese edition's
# (two files, so that two workers visit pages side by side at the end).
_BROWSER, _BROWSER_ZH = "test_browser.py", "test_browser_zh.py"
# Whether this run has tests of the Chinese editions: then they are built in
# the background as soon as the English book is (`build`).
_WANTS_ZH = [False]
_ZH_STARTED: list[Any] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files in an order that keeps every worker busy (`order_files`); whether to build zh early."""
    order_files(items)
    _WANTS_ZH[0] = wants_zh(items)


def wants_zh(items: list[pytest.Item]) -> bool:
    """Whether ``items`` test the Chinese editions (their files, the browser's included)."""
    return any(item.nodeid.split("::")[0].endswith((_ZH_BUILDER, *_ZH_READERS, _BROWSER_ZH)) for item in items)


def order_files(items: list[pytest.Item]) -> None:
    """Run the files in an order that keeps every xdist worker busy.

    ``make test`` passes ``--no-loadscope-reorder`` so that xdist hands out
    the files in this order (its default is by number of tests, which put
    the book's readers first and its long lab tests last). First the first
    file that needs the built book: its worker builds it (two kernels at a
    time) while the others run the rest. Then the files with long tests
    (marked slow or zipenv, or book tests that need no built book: the
    JupyterLab ones), so that none of them starts last. Then the rest, and
    last the book's other readers, which find it built (the one that builds
    the Chinese edition first, the browser's two files last). A file's tests stay
    together and in their order, so that its module fixtures run once.
    """
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    readers = [name for name, tests in files.items() if any("build" in t.fixturenames for t in tests)]

    def rank(name: str) -> int:
        if readers and name == readers[0]:
            return 0
        if name in readers:
            # Among the readers: first the Chinese editions' own tests (the
            # editions build in the background from `build` on, else here),
            # then the English book's readers, then the other Chinese readers,
            # and the browser's two files last, the Chinese edition's after
            # the English book's. (The browser tests used to come first and
            # wait for the Chinese edition for 90 s with a core idle; then,
            # in one file, they ran last on one worker while the other idled.)
            if name.endswith(_ZH_BUILDER):
                return 3
            if name.endswith(_BROWSER):
                return 6
            if name.endswith(_BROWSER_ZH):
                return 7
            return 5 if name.endswith(_ZH_READERS) else 4
        long = ("slow", "zipenv", "book")
        return 1 if any(t.get_closest_marker(m) for t in files[name] for m in long) else 2

    items[:] = [item for name in sorted(files, key=rank) for item in files[name]]


def toc_files() -> list[str]:
    """Every page of the book, in table-of-contents order (no suffix)."""
    return toc_pages(ROOT)


def _build_book() -> dict[str, Any]:
    """`build`'s work: the whole book as `make book` builds it, its result as a dict."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # inline figures
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # stale reports of an earlier failed build would fail the checks
    shutil.rmtree(ROOT / "_build" / "html" / "reports", ignore_errors=True)
    # `make book` fetches the book's JavaScript first; so does this fixture,
    # so that plain `pytest` works too (a no-op when it is there already).
    from explodebook.book.assets import install

    install(ROOT / "_vendor")
    # As `make book`: the chapters run two at a time into the execution
    # cache, then jupyter-book renders them and executes nothing.
    from explodebook.book.prebuild import prebuild

    prebuild(ROOT, jobs=2)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    done = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    return {"args": done.args, "returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """The whole book, built once per test run (not per worker) with warnings as errors.

    When the run tests the Chinese editions, they start building on a
    thread right after (`_zh_edition.build_in_background`), once per process.
    """
    done = subprocess.CompletedProcess(**once(tmp_path_factory, "book-build", _build_book))
    if done.returncode == 0 and _WANTS_ZH[0] and not _ZH_STARTED:
        from _zh_edition import build_in_background

        _ZH_STARTED.append(build_in_background(done, tmp_path_factory))
    return done


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's package), driven by playwright."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no browser at {CHROMIUM} (Debian package 'chromium' not installed)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python package 'playwright' is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
