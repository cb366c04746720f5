"""The Chinese edition, built once per test run for tests/test_zh.py and tests/test_browser.py (`zh_edition`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from _once import once
from conftest import ROOT
from explodebook.book.i18n import write_edition_config, write_edition_toc

LANGUAGE = "zh_CN"
ZH_OUT = ROOT / "_build" / "zh"
ZH_HTML = ZH_OUT / "_build" / "html"

# Without xdist, `once` makes its result every time it is asked: the two
# files' fixtures share it through this process's memory instead.
_made: dict[str, subprocess.CompletedProcess[str]] = {}


def jupyter_book(*args: str) -> subprocess.CompletedProcess[str]:
    """``jupyter-book build <book> *args``, as the Makefile runs it (inline figures)."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run(
        [str(command), "build", str(ROOT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )


def _build_zh() -> dict[str, Any]:
    """`make book-zh`'s build: the edition's configuration and toc, then jupyter-book."""
    shutil.rmtree(ZH_OUT, ignore_errors=True)
    with tempfile.TemporaryDirectory() as folder:
        config = write_edition_config(ROOT, LANGUAGE, Path(folder) / "zh_config.yml")
        toc = write_edition_toc(ROOT, LANGUAGE, Path(folder) / "zh_toc.yml")
        done = jupyter_book("-W", "-n", "--keep-going", "--config", str(config), "--toc", str(toc),
                            "--path-output", str(ZH_OUT))  # fmt: skip
    return {"args": [str(a) for a in done.args], "returncode": done.returncode, "stdout": done.stdout,
            "stderr": done.stderr}  # fmt: skip


def zh_edition(build: subprocess.CompletedProcess[str], tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """The Chinese edition in ``_build/zh``, built once per run, after the English book ``build``.

    The English build fills the execution cache the edition reads (it
    executes nothing itself); the English HTML is what the tests compare
    it with.
    """
    if "zh" not in _made:
        _made["zh"] = subprocess.CompletedProcess(**once(tmp_path_factory, "zh-build", _build_zh))
    return _made["zh"]
