"""The book builds with warnings as errors, every chapter executed.

This is the slow test (minutes): ``make test-fast`` leaves it out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return files


@pytest.fixture(scope="module")
def build() -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # inline figures
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # stale reports of an earlier failed build would fail the check below
    shutil.rmtree(ROOT / "_build" / "html" / "reports", ignore_errors=True)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )


@pytest.mark.book
def test_book_builds_without_warnings(build: subprocess.CompletedProcess[str]) -> None:
    log = build.stdout + build.stderr
    problems = [line for line in log.splitlines() if ": WARNING:" in line or ": ERROR:" in line]
    assert build.returncode == 0, "\n".join(problems) or log[-5000:]


@pytest.mark.book
def test_every_toc_page_is_rendered_and_executed(build: subprocess.CompletedProcess[str]) -> None:
    html = ROOT / "_build" / "html"
    reports = list((html / "reports").rglob("*.log")) if (html / "reports").exists() else []
    assert not reports, f"execution errors: {reports}"
    for name in toc_files():
        page = html / f"{name}.html"
        assert page.exists(), f"{page} was not built"
        if name.startswith("chapters/"):
            text = page.read_text()
            # executed: figures are embedded or linked from the page
            assert "<img" in text, f"{page} has no figure"
            assert "Traceback" not in text, f"{page} shows a traceback"
