"""Progress bars and Ctrl-C for a run under way (its time is `explodebook.budget`'s job).

**Progress.** A run or sweep estimated over
`explodebook.budget.PROGRESS_SECONDS` shows a ``tqdm.auto`` progress bar
(a widget in a notebook, text in a terminal), updated once per chunk of
steps, and removed when the run ends; not in a notebook that a tool executes (a book build: see `watched`), where no one
watches and the bar would stay in the saved page.

**Ctrl-C.** While a backend trains, the first Ctrl-C (SIGINT) does not
stop it in the middle of a step: the run stops at its next chunk boundary
(a fraction of a second, or one step of a very large network) and raises
`RunInterrupted`, a ``KeyboardInterrupt`` that carries the steps done as a
valid `Trace` (``.trace``). In a notebook the last cell's exception is
``sys.last_value``, so ``sys.last_value.trace`` is the partial trace. A
second Ctrl-C stops at once (``.trace`` is then None). Either way the
process is left as before the run: PyTorch's thread count restored, no
half-trained Keras loop kept for reuse, nothing stored in the run cache,
and the next run of the same spec gives the same trace as a fresh process.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

from explodebook.spec import RunSpec

__all__ = ["RunInterrupted", "watched"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; the steps it finished are in ``trace``.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still stops.

    Attributes:
        trace: the steps finished before the interrupt: a complete `Trace`
            of ``spec.replace(steps=n)`` for the ``n`` steps done, bit for
            bit the trace that shorter run gives (its ``extra`` says
            ``{"interrupted": True, "requested_steps": spec.steps}``).
            ``None`` when no step had finished, or when a second Ctrl-C
            stopped the run at once.
        spec: the spec that was running.
        framework: ``"torch"`` or ``"keras"``.
    """

    def __init__(self, message: str, trace: Any = None, spec: RunSpec | None = None,
                 framework: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.trace = trace
        self.spec = spec
        self.framework = framework


def spec_text(spec: RunSpec) -> str:
    """The fields that differ from the defaults: ``RunSpec(depth=64, width=1024)``."""
    # (An RNN's resolved activation and task are the RNN defaults.)
    default = RunSpec(model=spec.model)
    changed = [
        f"{f.name}={getattr(spec, f.name)!r}"
        for f in fields(RunSpec)
        if f.name == "model" and spec.model != "mlp"
        or getattr(spec, f.name) != getattr(default, f.name)
    ]
    return f"RunSpec({', '.join(changed)})"


def watched() -> bool:
    """Whether a person may be watching this process run: False in a
    notebook kernel that a tool executes (nbclient, ``jupyter nbconvert
    --execute``, Jupyter Book builds), True anywhere else.

    Such tools send their cells with ``allow_stdin=False`` (nobody there
    to type an answer); a progress bar there helps no one and would stay
    in the saved notebook, and so in the book's pages. An interactive
    frontend (JupyterLab, Notebook, VS Code) allows input.
    """
    ipython = sys.modules.get("IPython")  # not imported: not in a kernel
    if ipython is None:
        return True
    try:
        kernel = getattr(ipython.get_ipython(), "kernel", None)
    except Exception:
        return True
    # ipykernel sets _allow_stdin from every execute request it runs.
    return kernel is None or bool(getattr(kernel, "_allow_stdin", True))


# -- progress bars --------------------------------------------------------------


class Progress:
    """A ``tqdm.auto`` bar, or nothing (when not wanted, or tqdm is missing).

    Shown only once the work has gone on for a second (tqdm's ``delay``),
    updated by `to`, removed by `close`. An interrupted run's bar stays
    where it stopped (in a notebook; a terminal's is cleared).
    """

    def __init__(self, show: bool, total: int, desc: str, unit: str = "step") -> None:
        self._bar = None
        self._n = 0
        if not show:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # an environment older than the dependency
            return
        self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, delay=1.0, mininterval=0.5)

    def to(self, n: int) -> None:
        """Advance the bar to ``n`` done."""
        if self._bar is not None and n > self._n:
            self._bar.update(n - self._n)
            self._n = n

    def close(self, completed: bool = False) -> None:
        """Remove the bar; ``completed``: the work ended normally (the bar
        fills first; in a notebook an unfinished bar would stay, in red)."""
        if self._bar is not None:
            if completed:
                self._bar.update(self._bar.total - self._n)
            self._bar.close()
            self._bar = None


def describe(spec: RunSpec, framework: str) -> str:
    """A short label for a progress bar: ``"torch RunSpec(depth=8, ...)"``."""
    text = f"{framework} {spec_text(spec)}"
    return text if len(text) <= 48 else text[:47] + "…"


# -- Ctrl-C ---------------------------------------------------------------------


class StopFlag:
    """Set by the first Ctrl-C inside `interruptible`."""

    requested: bool = False


@contextmanager
def interruptible() -> Iterator[StopFlag]:
    """Within the block, the first Ctrl-C sets ``flag.requested`` instead of
    raising ``KeyboardInterrupt``, so a training loop stops between steps.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once, as usual. Only in
    the main thread, and only where Ctrl-C has Python's default handler
    (in a terminal, a notebook kernel, a test); elsewhere the flag is never
    set and Ctrl-C behaves as it did.
    """
    flag = StopFlag()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield flag
        return

    def first(signum: int, frame: Any) -> None:
        flag.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one stops at once

    signal.signal(signal.SIGINT, first)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupted(trace: Any, spec: RunSpec, framework: str) -> RunInterrupted:
    """The `RunInterrupted` of a run stopped by Ctrl-C after ``trace``'s steps.

    ``trace`` is the backend's trace of the rows recorded (its spec still
    ``spec``); it becomes the trace of ``spec.replace(steps=n)``.
    """
    n = trace.steps_run if trace is not None else 0
    if n == 0:
        return RunInterrupted(
            f"interrupted before the first step of {spec_text(spec)} ({framework}) finished",
            None, spec, framework,
        )  # fmt: skip
    trace.spec = spec.replace(steps=n)
    trace.extra.update(interrupted=True, requested_steps=spec.steps)
    return RunInterrupted(
        f"interrupted after {n} of {spec.steps} steps of {spec_text(spec)} ({framework}); "
        "the steps done are in this exception's .trace (in a notebook: sys.last_value.trace)",
        trace, spec, framework,
    )  # fmt: skip


def stopped_at_once(spec: RunSpec, framework: str) -> RunInterrupted:
    """The `RunInterrupted` of a run stopped at once: by Ctrl-C during its
    set-up, or by a second Ctrl-C during training (no trace)."""
    return RunInterrupted(
        f"{spec_text(spec)} ({framework}) stopped at once, during its set-up or by a second "
        "Ctrl-C: no trace (press Ctrl-C once during training, and wait for the current "
        "chunk of steps, to get the steps done)",
        None, spec, framework,
    )  # fmt: skip
