"""Grading a folder of submissions with otter-grader, without Docker.

``otter grade`` runs each submission in a Docker container; instructors
grading on a laptop (and this project's CI) may have no Docker. `grade`
runs ``otter run`` on each notebook in turn, in the current environment
(the book's, which has every package the chapters import), and collects
the scores into one table: one row per submission, one column per
autograded question, then the total, the points possible and the
percentage, plus every failed check's message for feedback.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["Result", "grade_notebook", "grade"]


@dataclass(frozen=True)
class Result:
    """The grade of one submission.

    Attributes:
        submission: the notebook graded.
        scores: points per autograded question, by question name.
        possible: points possible per question.
        feedback: the failure messages of each question that lost points.
        error: set when the notebook could not be graded at all.
    """

    submission: Path
    scores: dict[str, float]
    possible: dict[str, float]
    feedback: dict[str, str]
    error: str = ""

    @property
    def total(self) -> float:
        """Points scored."""
        return float(sum(self.scores.values()))

    @property
    def total_possible(self) -> float:
        """Points possible."""
        return float(sum(self.possible.values()))


def grade_notebook(submission: str | Path, autograder: str | Path) -> Result:
    """Grade one ``.ipynb`` with ``otter run`` (executes it; no Docker).

    Args:
        submission: the student's notebook.
        autograder: the ``autograder.zip`` written by
            `explodebook.coursework.assignment.assign`.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: the assignment has no autograded exercise.
    """
    from otter.run import main as otter_run

    submission, autograder = Path(submission), Path(autograder)
    for path, what in ((submission, "submission"), (autograder, "autograder zip")):
        if not path.is_file():
            raise FileNotFoundError(f"no {what} at {path}")
    with zipfile.ZipFile(autograder) as archive:
        if not any(name.startswith("tests/") for name in archive.namelist()):
            raise ValueError(
                f"{autograder} has no checks: this chapter's exercises are all graded by hand "
                "(its autograded exercises are listed in explodebook/coursework/checks/)"
            )
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        results = otter_run(str(submission), autograder=str(autograder), output_dir=out,
                            no_logo=True)
    scores: dict[str, float] = {}
    possible: dict[str, float] = {}
    feedback: dict[str, str] = {}
    for name in results.test_files:
        test_file = results.get_result(name)
        scores[name] = float(test_file.score)
        possible[name] = float(test_file.possible)
        if test_file.score < test_file.possible:
            feedback[name] = test_file.summary()
    error = repr(results.catastrophic_error) if results.catastrophic_error else ""
    return Result(submission, scores, possible, feedback, error)


def grade(
    submissions: Iterable[str | Path],
    autograder: str | Path,
    csv: str | Path | None = None,
    feedback: str | Path | None = None,
) -> pd.DataFrame:
    """Grade notebooks and tabulate the scores.

    Args:
        submissions: notebooks, or folders whose ``*.ipynb`` are all graded.
        autograder: the assignment's ``autograder.zip``.
        csv: where to write the table (optional).
        feedback: a folder to write ``<notebook>.txt`` into for each
            submission that lost points: the message of every failed check,
            to return to the student (optional).

    Returns:
        A table with one row per submission, indexed by the notebook's path,
        with one column of points per question, then ``total``,
        ``possible``, ``percent`` and ``error`` (empty unless the notebook
        failed to run).
    """
    paths: list[Path] = []
    for item in map(Path, submissions):
        paths += sorted(item.glob("*.ipynb")) if item.is_dir() else [item]
    if not paths:
        raise ValueError("no submissions: pass notebooks or folders containing *.ipynb files")
    rows = []
    for path in paths:
        result = grade_notebook(path, autograder)
        if feedback is not None and (result.feedback or result.error):
            Path(feedback).mkdir(parents=True, exist_ok=True)
            text = "\n\n".join([result.error, *result.feedback.values()]).strip()
            (Path(feedback) / f"{path.stem}.txt").write_text(text + "\n")
        rows.append(
            {
                "submission": str(path),
                **result.scores,
                "total": result.total,
                "possible": result.total_possible,
                "percent": 100 * result.total / result.total_possible
                if result.total_possible
                else 0.0,
                "error": result.error,
            }
        )
    table = pd.DataFrame(rows).set_index("submission")
    if csv is not None:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv)
    return table
