"""Fixtures shared by the test files: the built book and a headless browser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


def toc_files() -> list[str]:
    """Every page of the book, in table-of-contents order (no suffix)."""
    return toc_pages(ROOT)


@pytest.fixture(scope="session")
def build() -> subprocess.CompletedProcess[str]:
    """The whole book, built once per session with warnings as errors."""
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
    return subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )


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
