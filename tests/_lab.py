"""Helpers of test_lab.py: a private JupyterLab server and chapter notebooks.

`LabServer` starts ``jupyter lab`` (the project's own, next to the running
Python) on 127.0.0.1 with a random token, a free port and its own runtime,
config and data directories, so that neither a learner's settings nor a
second test run can interfere. `chapter_notebook` writes, from a chapter's
MyST file, a notebook that ends with the chapter's first `explore` widget:
either every cell above it, as a learner runs the chapter, or only the
chapter's first cell and the statements the widget needs (a slice by
name); plus any extra cells a test appends.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# The viewer `make` configures for .md files (Makefile: LAB_OVERRIDES).
JUPYTEXT_VIEWERS = {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}

# JupyterLab settings of the test's own (empty) user profile: every cell in
# the DOM (no virtual scrolling), and no news or update checks.
USER_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_overrides() -> Path:
    """The settings overrides file the Makefile writes into the venv."""
    return Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def overrides_open_md_as_notebooks() -> bool:
    try:
        overrides = json.loads(lab_overrides().read_text())
    except (OSError, ValueError):
        return False
    viewers = overrides.get("@jupyterlab/docmanager-extension:plugin", {}).get("defaultViewers", {})
    return viewers.get("markdown") == JUPYTEXT_VIEWERS["markdown"]


#: The contents manager `make venv` configures for JupyterLab.
CONTENTS_MANAGER = "explodebook.book.lab.ChapterContentsManager"


def contents_manager_configured() -> bool:
    """Whether the venv's server configuration (written by `make venv`) selects it."""
    path = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.json"
    try:
        return json.loads(path.read_text())["ServerApp"]["contents_manager_class"] == CONTENTS_MANAGER
    except (OSError, ValueError, KeyError, TypeError):
        return False


class LabServer:
    """``jupyter lab`` on 127.0.0.1, in its own process group."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "jupyter-lab.log"
        self.settings_from_makefile = overrides_open_md_as_notebooks()
        config = home / "config"
        settings = config / "lab" / "user-settings"
        user_settings = dict(USER_SETTINGS)
        if not self.settings_from_makefile:
            # A venv made without `make`: give the test profile what the
            # Makefile would have written, so that .md opens as a notebook.
            user_settings["@jupyterlab/docmanager-extension/plugin"] = {
                "defaultViewers": JUPYTEXT_VIEWERS
            }
        for plugin, values in user_settings.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # inline figures
        env.update(
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_DATA_DIR=str(home / "data"),
            IPYTHONDIR=str(home / "ipython"),
            KERAS_BACKEND=env.get("KERAS_BACKEND", "tensorflow"),
            TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        )
        jupyter = Path(sys.executable).with_name("jupyter")
        # The book's contents manager (a chapter opens unmodified), as the
        # venv's server configuration from `make venv` selects it.
        self.contents_manager_from_makefile = contents_manager_configured()
        cmd = [
            str(jupyter),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={root}",
        ]
        if not self.contents_manager_from_makefile:
            cmd.append(f"--ServerApp.contents_manager_class={CONTENTS_MANAGER}")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
        )

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_until_up(self, timeout: float = 90.0) -> float:
        """Seconds until the server answered; raises if it never does."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.process.returncode}):\n{self.log()}")
            try:
                self.api("status")
                return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        raise RuntimeError(f"jupyter lab did not answer within {timeout} s:\n{self.log()}")

    def shutdown_kernels(self) -> None:
        try:
            for session in self.api("sessions"):
                self.api(f"sessions/{session['id']}", method="DELETE")
            for kernel in self.api("kernels"):
                self.api(f"kernels/{kernel['id']}", method="DELETE")
        except (urllib.error.URLError, OSError):
            pass

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.shutdown_kernels()
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
            except ProcessLookupError:
                pass
        self._log.close()


def is_explore_cell(source: str) -> bool:
    """Whether a code cell displays an `explore` widget (its last expression)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    if not body or not isinstance(body[-1], ast.Expr):
        return False
    call = body[-1].value
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "explore"
    )


def _bound(node: ast.AST) -> set[str]:
    """Names a statement binds at the top level of the notebook."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        targets = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in node.items if item.optional_vars]
    return {
        n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)
    }


def _free(node: ast.AST) -> set[str]:
    """Names a statement reads from the notebook's namespace (a superset)."""
    loads = {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    local: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            # Parameters and everything assigned inside a function are local.
            local |= {a.arg for a in ast.walk(sub.args) if isinstance(a, ast.arg)}
            if not isinstance(sub, ast.Lambda):
                for stmt in sub.body:
                    local |= {
                        n.id
                        for n in ast.walk(stmt)
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
                    }
        elif isinstance(sub, ast.comprehension):
            local |= {n.id for n in ast.walk(sub.target) if isinstance(n, ast.Name)}
    return loads - local


def _segment(lines: list[str], node: ast.stmt) -> str:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[first - 1 : node.end_lineno])


def _slice(code_cells: list[str], needed_by: list[str]) -> list[str]:
    """The statements of ``code_cells[1:]`` that ``needed_by`` depends on.

    The first cell (the chapter's imports and set-up) is kept whole by the
    caller. Returns, per cell after the first, the source of its needed
    statements, in the chapter's order ('' where none is needed).
    """
    statements: list[tuple[int, ast.stmt, list[str]]] = []  # (cell, node, lines)
    for index, source in enumerate(code_cells):
        try:
            body = ast.parse(source).body
        except SyntaxError:  # an IPython magic: not sliceable, not needed
            continue
        statements += [(index, node, source.splitlines()) for node in body]
    keep: set[int] = set()
    work = [(name, len(statements)) for source in needed_by for name in _free(ast.parse(source))]
    seen: set[tuple[str, int]] = set()
    while work:
        name, before = work.pop()
        if (name, before) in seen:
            continue
        seen.add((name, before))
        for position in range(before - 1, -1, -1):
            cell, node, _ = statements[position]
            if name in _bound(node):
                if cell > 0 and position not in keep:
                    keep.add(position)
                    work += [(n, position) for n in _free(node)]
                break
    sliced = [""] * len(code_cells)
    for position in sorted(keep):
        cell, node, lines = statements[position]
        sliced[cell] += ("\n\n" if sliced[cell] else "") + _segment(lines, node)
    return sliced[1:]


def chapter_notebook(
    chapter: Path, out_dir: Path, extra_cells: list[str], cells: str = "slice"
) -> tuple[Path, int, list[int]]:
    """Write the notebook of a chapter's first `explore` cell, to run in the lab.

    ``cells="above"``: every cell of the chapter up to and including that
    cell, as a learner runs it. ``cells="slice"``: the chapter's first code
    cell (imports, style), then only the chapter's statements the widget
    cell and ``extra_cells`` need (found by name, transitively), then the
    widget cell; the experiments in between are skipped. Both are generated
    from the chapter file, so they follow its edits. ``extra_cells`` (each
    displaying an `explore` widget) are appended.

    Returns the notebook's path (MyST Markdown, like the chapter, so that
    JupyterLab opens it through jupytext exactly as it opens the chapter),
    the index of the chapter's `explore` cell and the indices of the extra
    cells, as JupyterLab numbers the cells.
    """
    import jupytext
    from nbformat.v4 import new_code_cell, new_markdown_cell

    if cells not in ("slice", "above"):
        raise ValueError(f"cells={cells!r}: use 'slice' or 'above'")
    notebook = jupytext.read(chapter)
    explore_at = next(
        (
            i
            for i, c in enumerate(notebook.cells)
            if c.cell_type == "code" and is_explore_cell(c.source)
        ),
        None,
    )
    if explore_at is None:
        raise ValueError(f"{chapter.name} has no cell that displays explore(...)")
    above = notebook.cells[: explore_at + 1]
    if cells == "slice":
        code = [c for c in above[:-1] if c.cell_type == "code"]
        title = next(
            (line for c in above if c.cell_type == "markdown" for line in c.source.splitlines()
             if line.startswith("# ")),
            f"# {chapter.stem}",
        )
        kept = [
            new_markdown_cell(
                f"{title}\n\nGenerated by `tests/test_lab.py` from `chapters/{chapter.name}`: "
                "its first cell, the statements its `explore` widget needs, the widget."
            ),
            code[0],
        ]
        needed = _slice([c.source for c in code], [above[-1].source, *extra_cells])
        kept += [new_code_cell(source) for source in needed if source]
        kept.append(above[-1])
        above = kept
    notebook.cells = list(above)
    if extra_cells:
        notebook.cells.append(new_markdown_cell("Added by `tests/test_lab.py`:"))
    notebook.cells += [new_code_cell(source) for source in extra_cells]
    path = out_dir / chapter.name
    jupytext.write(notebook, path, fmt="md:myst")
    # The cells as JupyterLab will see them (read back the way it reads).
    cells_read = jupytext.read(path).cells
    explore_cells = [
        i for i, c in enumerate(cells_read) if c.cell_type == "code" and is_explore_cell(c.source)
    ]
    assert len(explore_cells) == 1 + len(extra_cells), explore_cells
    return path, explore_cells[0], explore_cells[1:]


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
