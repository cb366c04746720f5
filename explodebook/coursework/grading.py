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
(rows of unchanged notebooks are kept). Without Docker.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from explodebook.coursework.runner import code_cells
from explodebook.coursework.sandbox import Limits, RunResult, Sandbox
from explodebook.coursework.scoring import Checks, QuestionScore, clean_message
from explodebook.coursework.submissions import MAX_NOTEBOOK_BYTES, Submission, discover

__all__ = ["Result", "grade_notebook", "grade", "default_jobs", "COLUMNS_AFTER", "STATUS"]

#: What a row's ``status`` says.
STATUS = {
    "graded": "the notebook ran to the end and was scored",
    "timeout": "the time limit stopped it; answers defined before were scored",
    "memory": "the memory limit stopped it; answers defined before were scored",
    "crashed": "its Python process died; answers defined before were scored",
    "unreadable": "not a notebook that could be read; nothing ran",
    "missing": "no notebook was handed in",
    "failed": "the grader could not run it (a problem of the grading machine; graded again "
              "when grading resumes)",
}
#: Statuses kept when grading resumes (``failed`` is tried again).
FINAL = frozenset(STATUS) - {"failed"}
#: The CSV's columns after the questions'.
COLUMNS_AFTER = ("total", "possible", "percent", "status", "error", "notes", "seconds", "sha256")


@dataclass(frozen=True)
class Result:
    """The grade of one submission.

    Attributes:
        submission: the notebook graded (or what was handed in instead).
        scores: points per autograded question, by question name.
        possible: points possible per question (the assignment's).
        feedback: what the failed checks of each question that lost
            points say, one message per line.
        error: why the notebook could not be run to the end (empty if it
            was).
        status: one of `STATUS`.
        student: who handed it in (from the platform's layout).
        seconds: how long its cells ran.
        cell_errors: the errors its cells raised (cell number, error,
            message), in order.
        notes: remarks for the instructor (several notebooks, ...).
        sha256: the notebook's hash (what resuming compares).
        answers: the answer values the checks read, as decoded in the
            grader (not kept in the CSV; empty for rows kept on resuming).
        details: each question's score with its checks' results.
        output: the end of what the notebook printed while graded (its
            own output; for finding out why a notebook crashed).
    """

    submission: Path
    scores: dict[str, float]
    possible: dict[str, float]
    feedback: dict[str, str]
    error: str = ""
    status: str = "graded"
    student: str = ""
    seconds: float = 0.0
    cell_errors: tuple[dict[str, Any], ...] = ()
    notes: str = ""
    sha256: str = ""
    details: dict[str, QuestionScore] = field(default_factory=dict, repr=False)
    answers: dict[str, Any] = field(default_factory=dict, repr=False)
    output: str = field(default="", repr=False)

    @property
    def total(self) -> float:
        """Points scored."""
        return float(sum(self.scores.values()))

    @property
    def total_possible(self) -> float:
        """Points possible."""
        return float(sum(self.possible.values()))


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


# -- feedback and rows ---------------------------------------------------------


def _cell_number(index: Any) -> str:
    """``cell N`` (from 1) for a cell index the snapshot gives (the student's data)."""
    return f"cell {index + 1}" if type(index) is int and 0 <= index < 10**6 else "a cell"


def feedback_text(result: Result, assignment: str) -> str:
    """What the student reads: scores, failed checks' messages, their notebook's errors."""
    lines = [
        f"Assignment: {assignment}",
        f"Submission: {result.submission.name}",
        f"Score: {result.total:g} / {result.total_possible:g}",
        "",
    ]
    if result.status != "graded":
        lines += [f"Note: {result.error}", ""]
    for name, possible in result.possible.items():
        score = result.scores.get(name, 0.0)
        lines.append(f"{name}: {score:g} / {possible:g}")
        for message in result.feedback.get(name, "").splitlines():
            lines.append(f"  - {message}")
    if result.cell_errors:
        lines += ["", "Errors raised by your notebook's cells while it was graded:"]
        for error in result.cell_errors[:10]:
            message = clean_message(error.get("message", ""), 300)
            lines.append(
                f"  - {_cell_number(error.get('cell'))}: "
                f"{clean_message(str(error.get('error', 'Error')), 60)}"
                + (f": {message}" if message else "")
            )
        if len(result.cell_errors) > 10:
            lines.append(f"  - ... and {len(result.cell_errors) - 10} more")
    return "\n".join(lines).rstrip() + "\n"


def _spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet will not run as a formula (=, +, -, @ first)."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t") else text


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80] or "submission"


def feedback_names(submissions: Sequence[Submission]) -> list[str]:
    """A distinct, safe feedback file name for each submission (stable order)."""
    names: list[str] = []
    used: set[str] = set()
    counts: dict[str, int] = {}
    for sub in submissions:
        counts[sub.student] = counts.get(sub.student, 0) + 1
    for sub in submissions:
        base = _slug(sub.student)
        if counts[sub.student] > 1:
            base = f"{base}-{_slug(sub.path.stem)}"
        name, n = f"{base}.txt", 1
        while name.lower() in used:
            n += 1
            name = f"{base}-{n}.txt"
        used.add(name.lower())
        names.append(name)
    return names


class _Table:
    """The CSV: rows appended as they come, read back to resume, sorted at the end."""

    def __init__(self, path: Path | None, questions: Sequence[str]) -> None:
        self.path = path
        self.columns = ["submission", "student", *questions, *COLUMNS_AFTER]
        self.kept: dict[str, dict[str, str]] = {}
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header == self.columns:
                    for row in reader:
                        if len(row) == len(self.columns):
                            record = dict(zip(self.columns, row))
                            self.kept[record["submission"]] = record
        # start the file anew with what is kept, then append
        self._rewrite(list(self.kept.values()))

    def _rewrite(self, records: list[dict[str, str]]) -> None:
        assert self.path is not None
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            for record in records:
                writer.writerow([record.get(c, "") for c in self.columns])
        os.replace(partial, self.path)

    def resumable(self, submission: Path, sha256: str) -> dict[str, str] | None:
        record = self.kept.get(_spreadsheet_safe(str(submission)))
        if record and record["sha256"] == sha256 and record["status"] in FINAL:
            return record
        return None

    def append(self, record: dict[str, str]) -> None:
        self.kept[record["submission"]] = record
        if self.path is None:
            return
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([record.get(c, "") for c in self.columns])
            f.flush()
            os.fsync(f.fileno())

    def finish(self, order: Sequence[Path]) -> pd.DataFrame:
        keys = [_spreadsheet_safe(str(p)) for p in order]
        records = [self.kept[k] for k in keys if k in self.kept]
        if self.path is not None:
            self._rewrite(records)
        table = pd.DataFrame(records, columns=self.columns)
        for column in self.columns[2:-5]:
            table[column] = pd.to_numeric(table[column])
        table["seconds"] = pd.to_numeric(table["seconds"])
        return table.set_index("submission")


def _record(result: Result) -> dict[str, str]:
    total, possible = result.total, result.total_possible
    return {
        "submission": _spreadsheet_safe(str(result.submission)),
        "student": _spreadsheet_safe(result.student),
        **{name: f"{result.scores.get(name, 0.0):g}" for name in result.possible},
        "total": f"{total:g}",
        "possible": f"{possible:g}",
        "percent": f"{100 * total / possible if possible else 0.0:.4g}",
        "status": result.status,
        "error": _spreadsheet_safe(result.error),
        "notes": _spreadsheet_safe(result.notes),
        "seconds": f"{result.seconds:.1f}",
        "sha256": result.sha256,
    }


# -- from a run to a result --------------------------------------------------------


def _run_error(run: RunResult, limits: Limits) -> str:
    if run.status == "timeout":
        return (f"the notebook was stopped at the time limit ({limits.seconds:g} s); answers "
                "defined before were graded")
    if run.status == "memory":
        return (f"the notebook was stopped at the memory limit ({limits.memory / 2**30:g} GB); "
                "answers defined before were graded")
    if run.status == "crashed":
        how = f"signal {-run.exit}" if run.exit is not None and run.exit < 0 else f"exit code {run.exit}"
        return f"the notebook's Python process ended abruptly ({how}); answers defined before were graded"
    if run.status == "failed":
        return f"the grader could not run the notebook: {clean_message(run.message, 300)}"
    return ""


def _score_run(submission: Submission, sha256: str, run: RunResult, checks: Checks,
               limits: Limits) -> Result:
    from explodebook.coursework import answers

    status = "graded" if run.status == "finished" else run.status
    error = _run_error(run, limits)
    data: dict[str, Any] = {}
    cell_errors: list[dict[str, Any]] = []
    notes = [submission.note] if submission.note else []
    if run.snapshot:
        try:
            snapshot = json.loads(run.snapshot) if len(run.snapshot) <= answers.MAX_BYTES else None
        except (ValueError, RecursionError):
            snapshot = None
        if isinstance(snapshot, dict) and isinstance(snapshot.get("answers"), dict):
            data = snapshot["answers"]
            raw_errors = snapshot.get("errors")
            if isinstance(raw_errors, list):
                cell_errors = [e for e in raw_errors[:100] if isinstance(e, dict)]
        else:
            notes.append("its answers could not be read")
    elif run.message:
        notes.append(clean_message(run.message, 200))
    if cell_errors:
        first = cell_errors[0]
        notes.append(
            f"{len(cell_errors)} cell(s) raised errors (first: "
            f"{_cell_number(first.get('cell'))}, "
            f"{clean_message(str(first.get('error', '')), 60)})"
        )
    if status == "failed":
        data = {}
    scored = checks.score(data)
    return Result(
        submission=submission.path,
        scores={q: s.score for q, s in scored.items()},
        possible={q: s.possible for q, s in scored.items()},
        feedback={q: "\n".join(s.messages) for q, s in scored.items() if s.score < s.possible},
        error=error,
        status=status,
        student=submission.student,
        seconds=run.seconds,
        cell_errors=tuple(cell_errors),
        notes="; ".join(notes),
        sha256=sha256,
        details=scored,
        answers={name: answers.decode(value) for name, value in data.items()},
        output=run.output,
    )


def _not_run(submission: Submission, checks: Checks, status: str, error: str,
             sha256: str = "") -> Result:
    possible = checks.possible
    return Result(
        submission=submission.path,
        scores={q: 0.0 for q in possible},
        possible=possible,
        feedback={q: error for q in possible},
        error=error,
        status=status,
        student=submission.student,
        notes=submission.note,
        sha256=sha256,
    )


def _from_record(submission: Submission, record: dict[str, str], checks: Checks) -> Result:
    possible = checks.possible
    return Result(
        submission=submission.path,
        scores={q: float(record.get(q) or 0.0) for q in possible},
        possible=possible,
        feedback={},
        error=record.get("error", ""),
        status=record.get("status", "graded"),
        student=submission.student,
        seconds=float(record.get("seconds") or 0.0),
        notes=record.get("notes", ""),
        sha256=record.get("sha256", ""),
    )


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
        table = _Table(csv_path, list(checks.questions))
        done = 0

        def finish(index: int, result: Result, record: bool = True) -> None:
            nonlocal done
            done += 1
            if record:
                table.append(_record(result))
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
                finish(index, _not_run(sub, checks, "missing", sub.note or "no notebook"))
                continue
            try:
                cells, digest = read_notebook(sub.path)
            except (UnreadableNotebook, OSError) as error:
                finish(index, _not_run(sub, checks, "unreadable", str(error)))
                continue
            kept = table.resumable(sub.path, digest) if resume else None
            if kept is not None:
                finish(index, _from_record(sub, kept, checks), record=False)
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
                        finish(index, _score_run(sub, digest, run, checks, limits))
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
        return _not_run(sub, checks, "unreadable", str(error))
    hide = _hidden_paths(autograder, [submission], [])
    with Sandbox(jobs=1, limits=limits, hide=hide) as sandbox:
        run = sandbox.run(cells, checks.names)
    return _score_run(sub, digest, run, checks, limits)
