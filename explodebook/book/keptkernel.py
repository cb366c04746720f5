"""One kernel kept across pages: frameworks imported once, each page from a fresh state.

Every page of the book starts by importing PyTorch and TensorFlow, about
9 s of CPU in a new kernel; with one kernel per page that was most of the
book's execution time. A `KeptKernel` starts one kernel, imports both
frameworks once (`explodebook.book.freshstate.snapshot`), and executes
pages one after another, putting the kernel back in a fresh kernel's state
before each (`explodebook.book.freshstate.restore`). The package's caches
of immutable results stay, so a run two pages compute is computed once.

A page's outputs are those a fresh kernel gives (tests/test_keptkernel.py
executes pages both ways and compares them). A kernel that died, or that
could not be restored, is replaced by a new one before the next page.
"""

from __future__ import annotations

import atexit
import json
import re
from pathlib import Path
from typing import Any

from explodebook.book.figuretext import KERNEL_ARGUMENTS

__all__ = ["KeptKernel", "comparable"]

# binds no name in the page's namespace (restore empties it)
FRESHSTATE = "__import__('explodebook.book.freshstate', fromlist=['restore'])"

#: Seconds a kernel may take to import the frameworks, or to restore its state.
SETUP_TIMEOUT = 300


class KeptKernel:
    """A kernel that executes notebooks one after another, each from a fresh state.

    Args:
        kernel_name: the kernelspec to start (the pages' ``kernelspec.name``).
    """

    def __init__(self, kernel_name: str = "python3") -> None:
        self.kernel_name = kernel_name
        self.km: Any = None
        self.start_cpu = 0.0  # CPU seconds of the kernels' start-ups, summed

    def _silent(self, code: str) -> None:
        """Run ``code`` in the kernel, outside the history; raise with its traceback if it fails."""
        kc = self.km.blocking_client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=SETUP_TIMEOUT)
            reply = kc.execute_interactive(
                code, silent=True, store_history=False, timeout=SETUP_TIMEOUT, output_hook=lambda msg: None
            )
        finally:
            kc.stop_channels()
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"kept kernel: {code!r} failed:\n" + "\n".join(content.get("traceback", [])))

    def cpu(self) -> float:
        """CPU seconds (user + system) the current kernel process has used so far."""
        import psutil

        if self.km is None or not self.km.has_kernel:
            return 0.0
        times = psutil.Process(self.km.provisioner.process.pid).cpu_times()
        return times.user + times.system

    def start(self, cwd: str) -> None:
        """Start a new kernel in ``cwd`` and import the frameworks into it."""
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        self.shutdown()
        # nbclient's own kind of manager: its clients are asynchronous
        self.km = AsyncKernelManager(kernel_name=self.kernel_name)
        # as nbclient starts its kernels: the IPython history in memory only
        # and recording its figures when the build asks (explodebook.book.figuretext)
        arguments = ["--HistoryManager.hist_file=:memory:", *KERNEL_ARGUMENTS]
        run_sync(self.km.start_kernel)(cwd=cwd, extra_arguments=arguments)
        self._silent(f"{FRESHSTATE}.snapshot()")
        self.start_cpu += self.cpu()

    def prepare(self, cwd: str) -> None:
        """A kernel in the state a fresh one starts a page in, working directory ``cwd``."""
        from jupyter_core.utils import run_sync

        if self.km is None or not run_sync(self.km.is_alive)():
            self.start(cwd)
        try:
            self._silent(f"{FRESHSTATE}.restore({cwd!r})")
        except Exception:  # a kernel that cannot be restored is not trusted: a new one
            self.start(cwd)
            self._silent(f"{FRESHSTATE}.restore({cwd!r})")

    def execute(self, client_class: type, notebook: Any, path: str | Path, **options: Any) -> float:
        """Execute ``notebook`` (the page at ``path``) with ``client_class``, an nbclient ``NotebookClient``.

        The notebook is executed in place; ``options`` go to the client
        (``timeout``, ``allow_errors``...). Exceptions of the execution
        (``CellExecutionError``...) propagate, as from a client of its own.

        Returns:
            the kernel's CPU seconds spent on the page.
        """
        cwd = str(Path(path).resolve().parent)
        self.prepare(cwd)
        before = self.cpu()
        # The client gets the kernel manager: it connects to the running
        # kernel and leaves it running when it is done (it does not own it).
        client = client_class(notebook, km=self.km, resources={"metadata": {"path": cwd}}, **options)
        try:
            client.execute()
        finally:
            atexit.unregister(client._cleanup_kernel)
            if client.kc is not None:
                client.kc.stop_channels()
        return self.cpu() - before

    def shutdown(self) -> None:
        """Stop the kernel (and wait for it, so its CPU time is counted in its parent's)."""
        from jupyter_core.utils import run_sync

        if self.km is not None:
            try:
                if self.km.has_kernel:
                    run_sync(self.km.shutdown_kernel)(now=False)
            finally:
                run_sync(self.km.cleanup_resources)()
                self.km = None


# What differs between any two executions of the same page, in two fresh
# kernels as much as in a kept one: masked before outputs are compared.
_VARYING = [
    (re.compile(r'"model_id": "[0-9a-f]{32}"'), '"model_id": "WIDGET"'),  # a widget's random id
    (re.compile(r"T_[0-9a-f]{5}"), "T_STYLER"),  # a pandas Styler's random table id
    (re.compile(r" at 0x[0-9a-f]+"), " at 0xADDRESS"),  # an object's address in its repr
    (re.compile(r"ipykernel_[0-9]+"), "ipykernel_PID"),  # a warning's place names the kernel's process
]


def comparable(notebook: Any) -> list[Any]:
    """An executed notebook's outputs, in a form two executions of it can be compared in.

    Returns:
        one entry per cell: ``["code", execution_count, outputs]`` or
        ``["markdown", inline expressions' results]``, with what differs
        between any two kernels (widget and table ids, addresses, process
        ids) masked.
    """
    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cells.append(["code", cell.get("execution_count"), [dict(o) for o in cell.get("outputs", [])]])
        else:
            cells.append(["markdown", cell.metadata.get("user_expressions")])
    text = json.dumps(cells, sort_keys=True)
    for pattern, mask in _VARYING:
        text = pattern.sub(mask, text)
    return json.loads(text)
