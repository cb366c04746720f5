"""The Chinese editions, built once per test run, in the background as soon as the English book is (`zh_edition`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from _once import once
from conftest import ROOT
from explodebook.book import editions
from explodebook.book.i18n import write_edition_config, write_edition_toc

LANGUAGE = "zh_CN"
ZH_OUT = ROOT / "_build" / "zh"
ZH_HTML = ZH_OUT / "_build" / "html"
ZH_STUDENT_OUT = ROOT / "_build" / "student-zh"
ZH_STUDENT_HTML = ZH_STUDENT_OUT / "_build" / "html"

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


def _build_student_zh() -> dict[str, Any]:
    """`make book-student-zh`'s build, after the Chinese edition's.

    After it: Sphinx compiles the catalogs (.mo, next to the .po) when they
    are out of date, and both editions share the redrawn figures' cache, so
    two builds at once would write the same files.
    """
    shutil.rmtree(ZH_STUDENT_OUT, ignore_errors=True)
    with tempfile.TemporaryDirectory() as folder:
        config = editions.write_student_edition_config(ROOT, LANGUAGE, Path(folder) / "student_zh_config.yml")
        toc = write_edition_toc(ROOT, LANGUAGE, Path(folder) / "zh_toc.yml")
        done = jupyter_book("-W", "-n", "--keep-going", "--config", str(config), "--toc", str(toc),
                            "--path-output", str(ZH_STUDENT_OUT))  # fmt: skip
    return {"args": [str(a) for a in done.args], "returncode": done.returncode, "stdout": done.stdout,
            "stderr": done.stderr}  # fmt: skip


def student_zh_edition(build: subprocess.CompletedProcess[str], tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """The Chinese student edition in ``_build/student-zh``, built once per run, after `zh_edition`."""
    zh_edition(build, tmp_path_factory)
    return subprocess.CompletedProcess(**once(tmp_path_factory, "student-zh-build", _build_student_zh))


def build_in_background(build: subprocess.CompletedProcess[str], tmp_path_factory: pytest.TempPathFactory) -> threading.Thread:
    """Start building both Chinese editions on a thread, now that the English book is built.

    The builds are jupyter-book processes that read the English execution
    cache: they run beside the tests that follow instead of making the
    first test that needs them wait (with a core idle) for two minutes.
    Whoever asks for an edition later waits for this thread's build
    (`once`'s locks) or, if the build failed, gets its error. The thread is
    not a daemon: the run does not end while it builds.
    """

    def work() -> None:
        try:
            student_zh_edition(build, tmp_path_factory)
        except Exception:  # recorded by `once`; the tests that ask say it
            pass

    thread = threading.Thread(target=work, name="zh-editions", daemon=False)
    thread.start()
    return thread


def zh_edition(build: subprocess.CompletedProcess[str], tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """The Chinese edition in ``_build/zh``, built once per run, after the English book ``build``.

    The English build fills the execution cache the edition reads (it
    executes nothing itself); the English HTML is what the tests compare
    it with.
    """
    if "zh" not in _made:
        _made["zh"] = subprocess.CompletedProcess(**once(tmp_path_factory, "zh-build", _build_zh))
    return _made["zh"]
