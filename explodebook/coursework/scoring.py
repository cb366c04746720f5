"""Scoring answers with an assignment's checks, in the grader's own process.

The checks and their points come from the assignment's ``autograder.zip``
(its ``tests/<question>.py``, otter-grader's exception-based format, which
`explodebook.coursework.assignment` writes): never from the submission. The
answers come from the sandbox as JSON (`explodebook.coursework.answers`)
and are decoded afresh for every check, so that a check that changes a
value does not change it for the next one.

What a student sees of a failed check is its assertion's message and
nothing else: no traceback, no line of the check's code, no message of an
exception the check did not mean to raise (those could show how the check
computes the answer). A check that breaks on an answer of an unexpected
kind says so in a sentence.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explodebook.coursework import answers as answer_values

__all__ = ["CheckCase", "Question", "CheckResult", "QuestionScore", "Checks", "NoChecksError"]

#: Longest message of a failed check shown to a student.
MESSAGE_CHARS = 600
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _like_the_runner() -> contextlib.AbstractContextManager[None]:
    """PyTorch on one thread while checks run, as in the notebooks (setup()).

    A check that re-runs a seeded run then computes it as the notebook did:
    the same reductions in the same order, the same numbers.
    """
    from explodebook.frameworks import torch_threads

    return torch_threads(1)


class NoChecksError(ValueError):
    """The autograder has no autograded question (all are graded by hand)."""


@dataclass(frozen=True)
class CheckCase:
    """One check of a question.

    Attributes:
        name: otter's test-case name (``"<question> - <n>"`` by default).
        hidden: hidden checks run only when grading.
        points: its share of the question's points.
        function: the check; its parameters name notebook variables.
        params: those names.
    """

    name: str
    hidden: bool
    points: float
    function: Callable[..., Any]
    params: tuple[str, ...]


@dataclass(frozen=True)
class Question:
    """An autograded question: its checks and points."""

    name: str
    cases: tuple[CheckCase, ...]
    all_or_nothing: bool = False

    @property
    def points(self) -> float:
        """Points possible."""
        return float(sum(case.points for case in self.cases))


@dataclass(frozen=True)
class CheckResult:
    """How one check went."""

    name: str
    hidden: bool
    points: float
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class QuestionScore:
    """A question's score and its checks' results."""

    name: str
    score: float
    possible: float
    results: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def messages(self) -> list[str]:
        """What each failed check says, once each, in order."""
        seen: list[str] = []
        for result in self.results:
            if not result.passed and result.message not in seen:
                seen.append(result.message)
        return seen


def clean_message(text: str, limit: int = MESSAGE_CHARS) -> str:
    """A message fit for a feedback file: no control characters, bounded."""
    text = _CONTROL.sub("", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _load_test_file(source: str, path: str) -> tuple[str, bool, list[CheckCase]]:
    from otter.test_files.exception_test import ExceptionTestFile

    if re.search(r"^OK_FORMAT\s*=\s*True", source, flags=re.M):
        raise ValueError(f"{path} is in otter's OK format; only exception-based checks are read")
    test_file = ExceptionTestFile.from_string(source, path=path)
    cases = []
    for case in test_file.test_cases:
        function = case.body.test_func
        params = tuple(inspect.signature(function).parameters)
        if "env" in params:
            raise ValueError(
                f"{path}: check {case.name!r} takes `env` (the whole notebook): grading hands "
                "checks the answer variables only; name them as parameters instead"
            )
        cases.append(CheckCase(case.name, bool(case.hidden), float(case.points or 0.0),
                               function, params))
    return test_file.name, bool(test_file.all_or_nothing), cases


class Checks:
    """An assignment's checks, read from its ``autograder.zip``.

    Attributes:
        questions: the autograded questions, by name, in the zip's order.
        names: every notebook variable some check reads.
    """

    def __init__(self, questions: Mapping[str, Question]) -> None:
        self.questions = dict(questions)
        names: list[str] = []
        for question in self.questions.values():
            for case in question.cases:
                names += [p for p in case.params if p not in names]
        self.names = tuple(names)

    @classmethod
    def from_zip(cls, autograder: str | Path) -> Checks:
        """Read the checks from an autograder zip (without extracting it).

        Raises:
            FileNotFoundError: there is no such file.
            NoChecksError: the zip holds no check.
            ValueError: a test file cannot be read.
        """
        path = Path(autograder)
        if not path.is_file():
            raise FileNotFoundError(f"no autograder zip at {path}")
        questions: dict[str, Question] = {}
        with zipfile.ZipFile(path) as archive:
            members = sorted(
                n for n in archive.namelist()
                if n.startswith("tests/") and n.endswith(".py") and "/" not in n[len("tests/"):]
            )
            for member in members:
                source = archive.read(member).decode("utf-8")
                name, all_or_nothing, cases = _load_test_file(source, member)
                questions[name] = Question(name, tuple(cases), all_or_nothing)
        if not questions:
            raise NoChecksError(
                f"{path} has no checks: this chapter's exercises are all graded by hand "
                "(its autograded exercises are listed in explodebook/coursework/checks/)"
            )
        return cls(questions)

    @property
    def possible(self) -> dict[str, float]:
        """Points possible per question."""
        return {name: q.points for name, q in self.questions.items()}

    def score(self, data: Mapping[str, Any]) -> dict[str, QuestionScore]:
        """Score encoded answers (``answers.encode``'s data by name).

        A name missing from ``data`` was never defined by the notebook
        (or its cell never ran): every check that reads it fails, saying so.
        """
        with _like_the_runner():
            return {name: self._score_question(q, data) for name, q in self.questions.items()}

    def _score_question(self, question: Question, data: Mapping[str, Any]) -> QuestionScore:
        results = [self._run(case, data) for case in question.cases]
        score = sum(r.points for r in results if r.passed)
        if question.all_or_nothing and not all(r.passed for r in results):
            score = 0.0
        return QuestionScore(question.name, float(score), question.points, tuple(results))

    @staticmethod
    def _run(case: CheckCase, data: Mapping[str, Any]) -> CheckResult:
        missing = [name for name in case.params if name not in data]
        if missing:
            message = (
                f"`{missing[0]}` is not defined: the answer cell that defines it did not run "
                "to the end (see the errors of your notebook below, if any)"
            )
            return CheckResult(case.name, case.hidden, case.points, False, message)
        values = {name: answer_values.decode(data[name]) for name in case.params}
        for name, value in values.items():
            if value is Ellipsis:  # not answered: say so, and only that
                message = (f"`{name}` is still Ellipsis: replace the `...` in the answer cell "
                           "with your answer and run the cell")
                return CheckResult(case.name, case.hidden, case.points, False, message)
        try:
            case.function(**values)
        except AssertionError as error:
            message = clean_message(str(error)) or "this check failed"
            return CheckResult(case.name, case.hidden, case.points, False, message)
        except Exception as error:  # noqa: BLE001 - an answer of a kind the check did not expect
            message = (
                f"a check could not use your answer ({type(error).__name__}): is each answer "
                "of the kind the question asks for?"
            )
            return CheckResult(case.name, case.hidden, case.points, False, message)
        return CheckResult(case.name, case.hidden, case.points, True)
