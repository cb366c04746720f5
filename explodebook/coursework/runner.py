"""What runs inside the sandbox: a submission's code cells, then its answers as JSON.

`run_cells` executes the code cells of one notebook in an IPython shell
(so ``%pip`` and ``!`` lines behave as in Jupyter), in order, going on after
a cell that raises, as otter-grader does. After every cell it writes a
*snapshot*: the values of the answer names defined so far, encoded by
`explodebook.coursework.answers`, and what went wrong in which cell. A
notebook that hangs, crashes or is killed at its memory limit therefore
still hands back the answers of the cells before.

Nothing of the grader is here: no checks, no points, no other submission.
The student's code can do anything to this process, including rewriting the
snapshot; whatever it writes is only ever read as data, and only as this
submission's answers.

The notebook's first cell imports ``otter`` to make ``grader =
otter.Notebook(...)``: a stand-in module answers it, whose ``Notebook``
does nothing (the real checks run in the grader).
"""

from __future__ import annotations

import importlib.machinery
import io
import json
import os
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["Cell", "run_cells", "code_cells", "SNAPSHOT", "OUTPUT"]

#: The snapshot's file name in the working folder.
SNAPSHOT = "answers.json"
#: Where the cells' printed output goes, in the working folder.
OUTPUT = "output.txt"
#: Longest error message kept per cell.
MESSAGE_CHARS = 300
#: The most bytes of printed output kept; the rest is dropped, silently.
OUTPUT_BYTES = 2**20

Cell = dict  # {"index": int, "source": str}


class _Grader:
    """``otter.Notebook`` while grading: every method does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _stand_in_otter() -> types.ModuleType:
    module = types.ModuleType("otter", "stand-in for otter-grader while a submission is graded")
    module.__spec__ = importlib.machinery.ModuleSpec("otter", None)
    module.Notebook = _Grader
    return module


class BoundedOutput(io.TextIOBase):
    """``sys.stdout`` for the cells: the first `OUTPUT_BYTES` reach the file.

    Printing never fails: output beyond the limit, or that the disk cannot
    hold, is dropped, so that a flood of output (or a full disk) does not
    stop the notebook nor lose its answers.
    """

    def __init__(self, fd: int, limit: int = OUTPUT_BYTES) -> None:
        self._fd = fd
        self._left = limit

    def write(self, text: str) -> int:
        if self._left > 0 and text:
            data = str(text).encode("utf-8", "replace")[: self._left]
            self._left -= len(data)
            try:
                os.write(self._fd, data)
            except OSError:
                self._left = 0
        return len(text)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def code_cells(notebook: dict) -> list[Cell]:
    """The cells grading runs: every code cell not tagged ``otter_ignore``.

    ``notebook`` is the parsed JSON of an ``.ipynb`` (nbformat 4). Sources
    given as lists of lines are joined.
    """
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise ValueError("the notebook has no list of cells")
    out: list[Cell] = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        metadata = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        tags = metadata.get("tags") if isinstance(metadata.get("tags"), list) else []
        otter = metadata.get("otter") if isinstance(metadata.get("otter"), dict) else {}
        if "otter_ignore" in tags or otter.get("ignore"):
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if not isinstance(source, str):
            raise ValueError(f"code cell {index} has no source text")
        out.append({"index": index, "source": source})
    return out


def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.xmode = "Plain"
    return InteractiveShell.instance(config=config)


def _snapshot(
    path: Path, names: Sequence[str], namespace: dict, errors: list, done: int, complete: bool
) -> None:
    from explodebook.coursework import answers

    values = {name: namespace[name] for name in names if name in namespace}
    text = (
        '{"answers": ' + answers.dumps(values)
        + ', "errors": ' + json.dumps(errors)
        + f', "cells_run": {done}, "complete": {"true" if complete else "false"}}}'
    )
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def run_cells(cells: Sequence[Cell], names: Sequence[str], workdir: str | Path) -> None:
    """Run ``cells`` in a fresh IPython shell in ``workdir``, snapshotting ``names``.

    Args:
        cells: as `code_cells` returns them.
        names: the answer names the checks read.
        workdir: the working folder (the current directory already).
    """
    snapshot = Path(workdir) / SNAPSHOT
    sys.modules["otter"] = _stand_in_otter()
    errors: list[dict[str, Any]] = []
    namespace: dict = {}
    _snapshot(snapshot, names, namespace, errors, 0, not cells)
    shell = _shell()
    namespace = shell.user_ns
    for done, cell in enumerate(cells, start=1):
        start = time.perf_counter()
        try:
            result = shell.run_cell(cell["source"], store_history=False)
            error = result.error_before_exec or result.error_in_exec
        except BaseException as raised:  # noqa: BLE001 - the cell is the student's
            error = raised
        if error is not None:
            errors.append(
                {
                    "cell": cell["index"],
                    "error": type(error).__name__[:80],
                    "message": str(error)[:MESSAGE_CHARS],
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - the student may have replaced it
                pass
        try:
            _snapshot(snapshot, names, namespace, errors, done, done == len(cells))
        except OSError:
            pass  # the disk is full or the student removed the folder: keep the last one
