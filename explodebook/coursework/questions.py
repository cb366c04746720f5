"""The autograded questions of a chapter: its grading file (``checks/<chapter>.yml``) read."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["CHECKS_DIR", "MANUAL_POINTS", "Check", "Question", "load_questions", "checks_file"]

#: Where each chapter's grading file lives.
CHECKS_DIR = Path(__file__).with_name("checks")
#: Points of a question graded by hand (an exercise without checks).
MANUAL_POINTS = 1

@dataclass(frozen=True)
class Check:
    """One otter test case: a function whose arguments name notebook variables.

    Attributes:
        code: the test function's source (``def test_x(answer): assert ...``).
            It runs in the grader's namespace, not the notebook's: it must
            import what it uses.
        hidden: hidden checks run only in the autograder; public ones also
            run when the student calls ``grader.check``.
    """

    code: str
    hidden: bool = True

    def cell_source(self) -> str:
        """The test cell otter-grader expects: config, the function, its call."""
        tree = ast.parse(self.code)
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        if len(tree.body) != 1 or not functions:
            raise ValueError(f"a check must be exactly one function definition, got:\n{self.code}")
        function = functions[0]
        args = ", ".join(a.arg for a in function.args.args)
        config = f'""" # BEGIN TEST CONFIG\nhidden: {str(self.hidden).lower()}\n""" # END TEST CONFIG\n'
        return f"{config}{self.code.rstrip()}\n\n{function.name}({args})"


@dataclass(frozen=True)
class Question:
    """An autograded exercise.

    Attributes:
        label: the chapter exercise's label; also the otter question name.
        answer: the variable names the answer cell must define.
        instructions: what to store in those names (Markdown), appended to
            the exercise's text.
        checks: the test cases; the question's points are split evenly.
        points: the question's points.
        store: assignments appended to the chapter's solution in the
            reference answer, when the solution prints its answer instead
            of storing it: they store it in the answer's names, from the
            solution's own results (assignments only); for a solution in
            prose, the whole reference; for a guessable answer, the
            computation behind it that the question also asks for.
        given: code from the chapter's later cells that the exercise uses
            (a spec it names, say), put at the top of the answer cell for
            the student and before the reference: grading runs only the
            first cell and the answer cells.
        all_or_nothing: the points only when every check passes (otter's
            question option): for an answer that could be guessed (a
            yes/no, a choice) asked together with the computation behind
            it, so that the form checks give nothing to a guess.
    """

    label: str
    answer: tuple[str, ...]
    instructions: str
    checks: tuple[Check, ...]
    points: int = 2
    store: str = ""
    given: str = ""
    all_or_nothing: bool = False


def checks_file(chapter: Path) -> Path:
    """The grading file of ``chapter`` (it may not exist)."""
    return CHECKS_DIR / f"{chapter.stem}.yml"


def load_questions(chapter: str | Path) -> dict[str, Question]:
    """The autograded questions of a chapter, by exercise label (may be empty)."""
    path = checks_file(Path(chapter))
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    questions: dict[str, Question] = {}
    for label, entry in (raw.get("questions") or {}).items():
        answer = entry["answer"]
        questions[label] = Question(
            label=label,
            answer=tuple([answer] if isinstance(answer, str) else answer),
            instructions=entry["instructions"].strip(),
            checks=tuple(Check(c["code"], c.get("hidden", True)) for c in entry["checks"]),
            points=int(entry.get("points", 2)),
            store=str(entry.get("store") or "").strip(),
            given=str(entry.get("given") or "").strip(),
            all_or_nothing=bool(entry.get("all_or_nothing", False)),
        )
    return questions
