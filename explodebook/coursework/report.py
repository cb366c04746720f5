"""What grading writes: the CSV of grades (appended, resumed, sorted) and feedback files."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from explodebook.coursework.results import FINAL, Result, cell_number
from explodebook.coursework.scoring import clean_message
from explodebook.coursework.submissions import Submission

__all__ = ["COLUMNS_AFTER", "feedback_text", "feedback_names", "Table", "csv_row"]

#: The CSV's columns after the questions'.
COLUMNS_AFTER = ("total", "possible", "percent", "status", "error", "notes", "seconds", "sha256")


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
                f"  - {cell_number(error.get('cell'))}: "
                f"{clean_message(str(error.get('error', 'Error')), 60)}"
                + (f": {message}" if message else "")
            )
        if len(result.cell_errors) > 10:
            lines.append(f"  - ... and {len(result.cell_errors) - 10} more")
    return "\n".join(lines).rstrip() + "\n"


def spreadsheet_safe(text: str) -> str:
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


class Table:
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
        record = self.kept.get(spreadsheet_safe(str(submission)))
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
        keys = [spreadsheet_safe(str(p)) for p in order]
        records = [self.kept[k] for k in keys if k in self.kept]
        if self.path is not None:
            self._rewrite(records)
        table = pd.DataFrame(records, columns=self.columns)
        for column in self.columns[2:-5]:
            table[column] = pd.to_numeric(table[column])
        table["seconds"] = pd.to_numeric(table["seconds"])
        return table.set_index("submission")


def csv_row(result: Result) -> dict[str, str]:
    """A result as the CSV's row (text a spreadsheet will not run as a formula)."""
    total, possible = result.total, result.total_possible
    return {
        "submission": spreadsheet_safe(str(result.submission)),
        "student": spreadsheet_safe(result.student),
        **{name: f"{result.scores.get(name, 0.0):g}" for name in result.possible},
        "total": f"{total:g}",
        "possible": f"{possible:g}",
        "percent": f"{100 * total / possible if possible else 0.0:.4g}",
        "status": result.status,
        "error": spreadsheet_safe(result.error),
        "notes": spreadsheet_safe(result.notes),
        "seconds": f"{result.seconds:.1f}",
        "sha256": result.sha256,
    }
