"""A submission's grade (`Result`): from its sandboxed run, or when it could not run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explodebook.coursework.limits import Limits, RunResult
from explodebook.coursework.scoring import Checks, QuestionScore, clean_message
from explodebook.coursework.submissions import Submission

__all__ = ["STATUS", "FINAL", "Result"]

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


def cell_number(index: Any) -> str:
    """``cell N`` (from 1) for a cell index the snapshot gives (the student's data)."""
    return f"cell {index + 1}" if type(index) is int and 0 <= index < 10**6 else "a cell"


def run_error(run: RunResult, limits: Limits) -> str:
    """Why a run did not finish, for the row's ``error`` (empty if it did)."""
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


def score_run(submission: Submission, sha256: str, run: RunResult, checks: Checks,
              limits: Limits) -> Result:
    """Score what a sandboxed run handed back (its answers, as JSON text) with ``checks``."""
    from explodebook.coursework import answers

    status = "graded" if run.status == "finished" else run.status
    error = run_error(run, limits)
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
            f"{cell_number(first.get('cell'))}, "
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


def not_run(submission: Submission, checks: Checks, status: str, error: str,
            sha256: str = "") -> Result:
    """Zero points for a submission that could not be run, and why."""
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


def from_record(submission: Submission, record: dict[str, str], checks: Checks) -> Result:
    """The result a CSV row kept from an earlier grading says."""
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
