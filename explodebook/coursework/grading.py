"""Grading a class's notebooks: run each in a sandbox, score in the grader.

``grade`` takes the assignment's ``autograder.zip`` and the submissions
(notebooks, folders or zips as a learning platform downloads them: see
`explodebook.coursework.submissions`) and writes one CSV row per
submission, whatever happens to it, as soon as it is graded:

1. the notebook is read by the grader as JSON (never executed here); its
   code cells, without those tagged ``otter_ignore`` (the chapter's
   experiments), are what will run;
2. a sandboxed runner process (`explodebook.coursework.sandbox`) runs them
   with a time and memory limit and hands back the *values* of the answer
   variables as JSON (`explodebook.coursework.answers`);
3. the checks, read from the autograder zip, run here, in the grader's own
   process, on those values (`explodebook.coursework.scoring`); the points
   possible are the assignment's.

So a notebook cannot change how it is scored: it can only choose its
answers. Up to ``jobs`` notebooks run at once (one per core by default);
a grading interrupted half-way goes on where it stopped when run again
(rows of unchanged notebooks are kept). Without Docker. A grade is a
`Result` (`explodebook.coursework.results`); the CSV and the feedback files
are written by `explodebook.coursework.report`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from explodebook.coursework.limits import Limits
from explodebook.coursework.report import (  # noqa: F401 - also importable from here
    COLUMNS_AFTER,
    Table,
    csv_row,
    feedback_names,
    feedback_text,
)
from explodebook.coursework.results import STATUS, Result, from_record, not_run, score_run  # noqa: F401
from explodebook.coursework.runner import code_cells
from explodebook.coursework.sandbox import Sandbox
from explodebook.coursework.scoring import Checks
from explodebook.coursework.submissions import MAX_NOTEBOOK_BYTES, Submission, discover

# Result and STATUS (explodebook.coursework.results), COLUMNS_AFTER and the
# feedback's text (explodebook.coursework.report) are importable from here too.
__all__ = ["grade_notebook", "grade", "default_jobs"]


class UnreadableNotebook(ValueError):
    """A submission that is not a notebook grading can read."""


def read_notebook(path: Path) -> tuple[list[dict], str]:
    """The code cells grading runs, and the file's sha256.

    Raises:
        UnreadableNotebook: too large, not JSON, not nbformat 4, no cells.
    """
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise UnreadableNotebook(
            f"the file is {size / 2**20:.0f} MB, more than the {MAX_NOTEBOOK_BYTES // 2**20} MB "
            "a notebook may have (clear the outputs and hand it in again)"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        notebook = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UnreadableNotebook("the file is not a notebook: it is not JSON text") from None
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4:
        version = notebook.get("nbformat") if isinstance(notebook, dict) else None
        raise UnreadableNotebook(
            "the file is not a Jupyter notebook of format 4"
            + (f" (it says format {version!r})" if version is not None else "")
        )
    try:
        return code_cells(notebook), digest
    except ValueError as error:
        raise UnreadableNotebook(f"the notebook is malformed: {error}") from None


def default_jobs(limits: Limits | None = None) -> int:
    """One job per core, as many as memory allows at ``limits.memory`` each."""
    limits = limits or Limits()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = limits.memory * (cores or 1)
    return max(1, min(cores or 1, int(memory // limits.memory)))


def _book_paths() -> list[Path]:
    """Where a book checkout keeps the solutions, if the package lives in one."""
    import explodebook

    root = Path(explodebook.__file__).resolve().parents[1]
    if not (root / "chapters").is_dir() or not (root / "_toc.yml").is_file():
        return []
    return [root / name for name in ("chapters", "_build", ".git") if (root / name).exists()]


def _hidden_paths(autograder: Path, inputs: Iterable[Path], outputs: Iterable[Path]) -> list[Path]:
    autograder = autograder.resolve()
    paths = [autograder, autograder.parent]
    if autograder.parent.name == "autograder":  # assign's folder: solutions, master notebook
        paths.append(autograder.parent.parent)
    for item in inputs:
        item = item.resolve()
        paths += [item, item.parent] if item.is_file() else [item]
    for item in outputs:
        item = item.resolve()
        paths += [item, item.parent]
    return paths + _book_paths()



# -- grading ----------------------------------------------------------------------


def grade(
    submissions: Iterable[str | Path],
    autograder: str | Path,
    csv: str | Path | None = None,
    feedback: str | Path | None = None,
    *,
    jobs: int | None = None,
    limits: Limits | None = None,
    resume: bool = True,
    progress: Callable[[Result, int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    sandbox: Sandbox | None = None,
) -> pd.DataFrame:
    """Grade submissions and tabulate the scores.

    Args:
        submissions: notebooks, folders or zips (see
            `explodebook.coursework.submissions` for the platforms' layouts).
        autograder: the assignment's ``autograder.zip``.
        csv: where to write the table; rows are appended as submissions are
            graded, and the file is sorted at the end.
        feedback: a folder to write one ``<student>.txt`` per submission
            into: its score per question, the message of every failed
            check, and the errors its cells raised, to return to the
            student (optional).
        jobs: notebooks run at once (default: `default_jobs`).
        limits: each notebook's time and memory (`Limits`).
        resume: keep the rows of ``csv`` whose notebook has not changed
            since (same path and content), instead of grading it again.
        progress: called with each result as it comes, with how many are
            done and how many there are.
        log: called with a line on what the sandbox could isolate, and on
            anything it could not hide from the notebooks.
        sandbox: a started `Sandbox` to run the notebooks in (its jobs and
            limits apply), to grade several assignments with one; by
            default one is started for this grading and stopped after.

    Returns:
        the table of results, one row per submission (indexed by its path),
        with the student, one column of points per question, then ``total``,
        ``possible``, ``percent``, ``status`` (see `STATUS`), ``error``,
        ``notes``, ``seconds`` and ``sha256``.

    Raises:
        NoChecksError: the assignment has nothing autograded.
        FileNotFoundError: the autograder or a submission is missing.
    """
    checks = Checks.from_zip(autograder)
    limits = limits or Limits()
    jobs = jobs or default_jobs(limits)
    assignment = Path(autograder).resolve().parent.parent.name
    csv_path = None if csv is None else Path(csv)
    feedback_dir = None if feedback is None else Path(feedback)
    if feedback_dir is not None:
        feedback_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(feedback_dir, 0o700)
    inputs = [Path(p) for p in submissions]
    with tempfile.TemporaryDirectory(prefix="explodebook-submissions-") as unpack:
        found = discover(inputs, Path(unpack))
        names = feedback_names(found)
        table = Table(csv_path, list(checks.questions))
        done = 0

        def finish(index: int, result: Result, record: bool = True) -> None:
            nonlocal done
            done += 1
            if record:
                table.append(csv_row(result))
                if feedback_dir is not None:
                    fd = os.open(feedback_dir / names[index], os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                 0o600)
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        f.write(feedback_text(result, assignment))
            if progress is not None:
                progress(result, done, len(found))

        pending: list[tuple[int, Submission, list[dict], str]] = []
        for index, sub in enumerate(found):
            if not sub.notebook:
                finish(index, not_run(sub, checks, "missing", sub.note or "no notebook"))
                continue
            try:
                cells, digest = read_notebook(sub.path)
            except (UnreadableNotebook, OSError) as error:
                finish(index, not_run(sub, checks, "unreadable", str(error)))
                continue
            kept = table.resumable(sub.path, digest) if resume else None
            if kept is not None:
                finish(index, from_record(sub, kept, checks), record=False)
                continue
            pending.append((index, sub, cells, digest))
        if pending:
            outputs = [p for p in (csv_path, feedback_dir) if p is not None]
            hide = _hidden_paths(Path(autograder), [*inputs, Path(unpack)], outputs)
            def start() -> Sandbox:
                sandbox = Sandbox(jobs=min(jobs, len(pending)), limits=limits, hide=hide)
                sandbox.start()
                if log is not None:
                    log(f"sandbox: {sandbox.isolation.describe()}; {sandbox.jobs} at a time; "
                        f"ready in {sandbox.startup_seconds:.0f} s")
                    if sandbox.isolation.namespaces and sandbox.not_hidden:
                        log("not hidden from the notebooks (they hold Python or the package): "
                            + ", ".join(sandbox.not_hidden))
                return sandbox

            own = sandbox is None
            sandbox = start() if own else sandbox
            try:
                queue = list(pending)
                retried: set[int] = set()
                while queue or sandbox.busy:
                    if own and not sandbox.alive and not sandbox.busy:
                        if log is not None:
                            log("the sandbox stopped (killed?): starting it again")
                        sandbox.close()
                        sandbox = start()
                    while queue and sandbox.idle and sandbox.alive:
                        item = queue.pop(0)
                        sandbox.submit(item[2], checks.names, tag=item, hide=hide)
                    if not sandbox.alive and not own and not sandbox.busy:
                        raise RuntimeError("the sandbox given to grade() has stopped")
                    for _, item, run in sandbox.results():
                        index, sub, _, digest = item
                        if run.status == "failed" and not sandbox.alive and index not in retried:
                            retried.add(index)  # the sandbox died under it: once more
                            queue.insert(0, item)
                            continue
                        finish(index, score_run(sub, digest, run, checks, limits))
            finally:
                if own:
                    sandbox.close()
        result_table = table.finish([s.path for s in found])
    return result_table


def grade_notebook(
    submission: str | Path, autograder: str | Path, *, limits: Limits | None = None
) -> Result:
    """Grade one ``.ipynb`` (in a sandbox; see `grade`).

    Raises:
        FileNotFoundError: either file is missing.
        NoChecksError: the assignment has no autograded exercise (a
            ``ValueError``).
    """
    submission, autograder = Path(submission), Path(autograder)
    for path, what in ((submission, "submission"), (autograder, "autograder zip")):
        if not path.is_file():
            raise FileNotFoundError(f"no {what} at {path}")
    checks = Checks.from_zip(autograder)
    limits = limits or Limits()
    sub = Submission(submission, submission.stem, "files")
    try:
        cells, digest = read_notebook(submission)
    except UnreadableNotebook as error:
        return not_run(sub, checks, "unreadable", str(error))
    hide = _hidden_paths(autograder, [submission], [])
    with Sandbox(jobs=1, limits=limits, hide=hide) as sandbox:
        run = sandbox.run(cells, checks.names)
    return score_run(sub, digest, run, checks, limits)
