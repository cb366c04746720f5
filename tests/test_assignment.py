"""Chapters become otter-grader master notebooks (fast: no grading here)."""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest

from conftest import ROOT, toc_files
from explodebook.coursework import expect
from explodebook.coursework.assignment import (
    IGNORE_TAG,
    Check,
    Question,
    join_solutions,
    load_questions,
    master_notebook,
)
from explodebook.coursework.myst import (
    cite_labels,
    python_blocks,
    split_exercises,
    to_jupyter_markdown,
)

CHAPTERS = [f for f in toc_files() if f.startswith("chapters/")]

TEXT = """## Exercises

:::{exercise}
:label: ex-a

What is $2 + 2$?
:::

:::{solution} ex-a
:class: dropdown

```python
answer = 2 + 2
```

Four.
:::

:::{exercise}
:label: ex-b
Explain.
:::

## Further reading
"""


def test_split_exercises_pairs_each_exercise_with_its_solution() -> None:
    segments = split_exercises(TEXT)
    assert [s.exercise.label if s.exercise else s.text for s in segments] == [
        "## Exercises",
        "ex-a",
        "ex-b",
        "## Further reading",
    ]
    first, second = segments[1].exercise, segments[2].exercise
    assert first.prompt == "What is $2 + 2$?"
    assert first.solution_code == ["answer = 2 + 2"]
    assert first.solution.endswith("Four.")
    assert second.prompt == "Explain." and second.solution == ""


@pytest.mark.parametrize(
    "text, message",
    [
        (":::{solution} nowhere\nText\n:::\n", "no exercise with that label"),
        (":::{exercise}\nNo label\n:::\n", "without a :label:"),
        (":::{exercise}\n:label: open\nNever closed\n", "never closed"),
    ],
)
def test_split_exercises_rejects_malformed_directives(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_exercises(text)


def test_python_blocks_finds_only_python() -> None:
    text = "```python\na = 1\n```\n\n```text\nnot code\n```\n\n```python\nb = 2\n```\n"
    assert python_blocks(text) == ["a = 1", "b = 2"]


def test_myst_becomes_plain_jupyter_markdown() -> None:
    text = (
        "(ch-x)=\n# Title\n\nThe norm is {glue:text}`norm:.2f` and {glue:text}`missing`, "
        "see {cite}`pascanu2013difficulty,brownlee2017gentle` and "
        "{ref}`the clipping chapter <ch-clipping>`.\n\n:::{dropdown} Details\nHidden text\n:::\n"
    )
    out = to_jupyter_markdown(
        text, {"norm": "3.14159"}, cite_labels(ROOT / "references.bib")
    )
    assert out.startswith("# Title")
    assert "The norm is 3.14 and `missing`" in out
    assert "(Pascanu et al. 2013; Brownlee 2017)" in out
    assert "*the clipping chapter*" in out
    assert "> **Details**" in out and "> Hidden text" in out
    assert not re.search(r"\{[\w:]+\}`", out)


def test_inline_expressions_become_the_books_values() -> None:
    text = 'Loss {eval}`f"{loss:.2f}"` at step {eval}`step`; {eval}`unknown` stays code.'
    out = to_jupyter_markdown(text, evals={'f"{loss:.2f}"': "0.03", "step": "8"})
    assert out == "Loss 0.03 at step 8; `unknown` stays code."


def test_a_chapters_expression_values_come_from_the_execution_cache(tmp_path) -> None:
    from explodebook.book import expressions
    from explodebook.book.prebuild import prebuild

    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    (book / "_toc.yml").write_text("format: jb-book\nroot: chapters/c\n")
    (book / "_config.yml").write_text("title: T\nexecute:\n  execute_notebooks: cache\n")
    chapter = book / "chapters" / "c.md"
    chapter.write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"
        "# C\n\n```{code-cell} ipython3\nloss = 1 / 3\n```\n\nLoss {eval}`f\"{loss:.2f}\"`.\n"
    )
    assert expressions.cached_outputs(chapter, book) == {}  # never built
    assert not (book / "_build").exists()  # and nothing created
    prebuild(book, jobs=1, log=lambda line: None)
    assert expressions.values(expressions.cached_outputs(chapter, book)) == {'f"{loss:.2f}"': "0.33"}


def test_code_between_an_exercise_and_its_solution_is_part_of_the_solution() -> None:
    from nbformat.v4 import new_code_cell, new_markdown_cell

    cells = [
        new_markdown_cell("Prose.\n\n:::{exercise}\n:label: ex-a\nDo A.\n:::"),
        new_code_cell("answer_a = compute()  # what the solution quotes"),
        new_markdown_cell(":::{solution} ex-a\n:class: dropdown\nIt is {eval}`answer_a`.\n:::\n\nMore prose."),
        new_code_cell("experiment()"),
        new_markdown_cell(":::{exercise}\n:label: ex-b\nDo B.\n:::\n\n:::{solution} ex-b\nB.\n:::"),
        new_code_cell("after_b()"),
    ]
    joined = join_solutions(cells)
    assert [c.cell_type for c in joined] == ["markdown", "code", "markdown", "code"]
    assert "Do A." in joined[0].source and "It is {eval}`answer_a`." in joined[0].source
    assert [c.source for c in joined if c.cell_type == "code"] == ["experiment()", "after_b()"]
    assert cells[0].source.endswith("Do A.\n:::")  # the chapter's cells are not changed
    segments = split_exercises(joined[0].source)
    assert [s.exercise.label for s in segments if s.exercise] == ["ex-a"]


def test_check_cell_calls_the_function_with_its_arguments() -> None:
    cell = Check("def test_x(a, b):\n    assert a == b, 'differ'\n", hidden=False).cell_source()
    assert "hidden: false" in cell
    assert cell.rstrip().endswith("test_x(a, b)")
    with pytest.raises(ValueError, match="exactly one function"):
        Check("import math\ndef test_y(a):\n    pass\n").cell_source()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_becomes_a_master_notebook(chapter: str) -> None:
    path = ROOT / f"{chapter}.md"
    notebook = master_notebook(path, book=ROOT)
    sources = [c.source for c in notebook.cells]
    exercises = re.findall(r"^:{3,}\{exercise\}", path.read_text(), flags=re.M)
    questions = [s for s in sources if s.startswith("# BEGIN QUESTION")]
    assert len(questions) == len(exercises) >= 3
    code = [c for c in notebook.cells if c.cell_type == "code"]
    # grading runs the set-up cell and the answers, not the experiments
    assert "grader = otter.Notebook" in code[0].source
    assert "from explodebook" in code[0].source
    experiments = [c for c in code if IGNORE_TAG in c.metadata.get("tags", [])]
    # every experiment, but the cells that compute a solution's numbers
    # between an exercise and its solution (they would give the answer away)
    import jupytext

    cells = jupytext.read(path).cells
    solving = sum(c.cell_type == "code" for c in cells) - sum(c.cell_type == "code" for c in join_solutions(cells))
    imports = sum(
        c.cell_type == "code" and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.parse(c.source).body)
        for c in cells[1:]
    ) if cells else 0
    assert len(experiments) == path.read_text().count("```{code-cell}") - 1 - solving - imports
    assert "\n".join(c.source for c in experiments).count("BEGIN SOLUTION") == 0
    graded = load_questions(path)
    for label in graded:
        assert f"# BEGIN QUESTION\nname: {label}\npoints:" in "\n".join(sources)
    # no MyST role survives
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert not re.search(r"\{(glue:text|cite|ref)\}`", markdown)


#: Pages with fewer autograded exercises than the rule below, and why.
FEW_AUTOGRADED: dict[str, int] = {}


def test_every_chapter_has_autograded_exercises() -> None:
    """Each page (an assignment) has one; each chapter with its sections, two."""
    by_chapter: dict[str, int] = {}
    for page in CHAPTERS:
        count = len(load_questions(ROOT / f"{page}.md"))
        number = re.match(r"chapters/(\d+)", page).group(1)  # 02a_... is a section of 02
        by_chapter[number] = by_chapter.get(number, 0) + count
        assert count == FEW_AUTOGRADED[page] if page in FEW_AUTOGRADED else count >= 1, (page, count)
    few = {re.match(r"chapters/(\d+)", p).group(1) for p in FEW_AUTOGRADED}
    for number, count in by_chapter.items():
        assert number in few or count >= 2, (f"chapter {number}", count)


def test_a_check_for_an_unknown_exercise_is_an_error() -> None:
    stray = {"no-such-exercise": Question("no-such-exercise", ("x",), "x", ())}
    with pytest.raises(ValueError, match="no exercise with that label"):
        master_notebook(ROOT / f"{CHAPTERS[0]}.md", book=ROOT, questions=stray)


def test_a_reference_that_does_not_define_the_answer_is_an_error() -> None:
    chapter = ROOT / "chapters" / "01_what_are_exploding_gradients.md"
    questions = load_questions(chapter)
    label = next(iter(questions))
    wrong = {label: Question(label, ("not_defined_anywhere",), "x", questions[label].checks)}
    with pytest.raises(ValueError, match="must assign"):
        master_notebook(chapter, book=ROOT, questions=wrong)


def test_expect_turns_bad_answers_into_sentences() -> None:
    with pytest.raises(AssertionError, match=r"`x` is still Ellipsis: replace the `...`"):
        expect.number("x", ...)
    with pytest.raises(AssertionError, match="should be one number"):
        expect.number("x", [1, 2])
    with pytest.raises(AssertionError, match="outside the sensible range"):
        expect.number("x", 5.0, 0.0, 1.0)
    with pytest.raises(AssertionError, match="should hold 2 numbers"):
        expect.numbers("x", [1, 2, 3], 2)
    with pytest.raises(AssertionError, match="True or False"):
        expect.boolean("x", 1)
    with pytest.raises(AssertionError, match="one of"):
        expect.choice("x", "SGD", ["Adam", "AdamW"])
    assert expect.number("x", np.float32(0.5)) == 0.5
    assert expect.numbers("x", (1, 2), 2).tolist() == [1.0, 2.0]
    assert expect.boolean("x", np.bool_(True)) is True
    assert expect.choice("x", " adamw", ["Adam", "AdamW"]) == "AdamW"


def test_grading_an_assignment_without_checks_says_so(tmp_path) -> None:
    import zipfile

    from explodebook.coursework.grading import grade_notebook

    autograder = tmp_path / "autograder.zip"
    with zipfile.ZipFile(autograder, "w") as archive:
        archive.writestr("otter_config.json", "{}")
    notebook = tmp_path / "submission.ipynb"
    notebook.write_text("{}")
    with pytest.raises(ValueError, match="graded by hand"):
        grade_notebook(notebook, autograder)
    with pytest.raises(FileNotFoundError, match="no submission"):
        grade_notebook(tmp_path / "missing.ipynb", autograder)


# -- grading's parts that run no notebook (fast) ----------------------------------

import json  # noqa: E402
import zipfile  # noqa: E402

from explodebook import RunSpec  # noqa: E402
from explodebook.coursework import answers  # noqa: E402
from explodebook.coursework.grading import (  # noqa: E402
    UnreadableNotebook,
    feedback_names,
    read_notebook,
)
from explodebook.coursework.scoring import Checks  # noqa: E402
from explodebook.coursework.submissions import Submission, discover  # noqa: E402


def test_answers_cross_as_plain_json_and_come_back_equal() -> None:
    from explodebook.trace import Trace

    layers = ["a", "b"]
    trace = Trace(spec=RunSpec(steps=3), framework="torch", layers=layers,
                  loss=[1.0, 2.0, float("nan")], grad_norm_total=[1, 2, 3],
                  grad_norms=np.ones((3, 2)), clipped_grad_norms=np.ones((3, 2)),
                  grad_max_abs=np.ones((3, 2)), weight_norms=np.ones((3, 2)),
                  first_nonfinite_step=2, first_nonfinite_kind="loss")
    values = {
        "n": 3, "x": 0.5, "b": True, "s": "text", "none": None, "blank": ...,
        "inf": float("inf"), "list": [1, 2.5], "tuple": (1, "a"), "set": {1, 2},
        "dict": {0.0: [1, 2], "k": (3,), (1, 2): None},
        "array": np.arange(6, dtype=np.float32).reshape(2, 3), "scalar": np.float64(2.5),
        "spec": RunSpec(l2=0.01), "trace": trace,
    }
    text = answers.dumps(values)
    assert "pickle" not in text and json.loads(text)  # plain JSON
    back = answers.loads(text)
    for name in ("n", "x", "b", "s", "none", "list", "tuple", "set", "dict", "spec", "scalar"):
        assert back[name] == values[name], name
    assert back["blank"] is Ellipsis and back["inf"] == float("inf")
    assert back["array"].dtype == np.float32 and np.array_equal(back["array"], values["array"])
    assert back["trace"].equals(trace)


def test_answers_refuse_what_they_cannot_rebuild() -> None:
    class Custom:
        pass

    assert isinstance(answers.loads(answers.dumps({"c": Custom()}))["c"], answers.Unreadable)
    assert "too large" in repr(answers.decode(answers.encode(list(range(answers.MAX_ITEMS + 1)))))
    # whatever the student's process writes, the grader gets data or Unreadable
    hostile = [
        {"$": "pickle", "data": "gASV"},
        {"$": "ndarray", "dtype": "object", "shape": [1], "data": [1]},
        {"$": "ndarray", "dtype": "float64", "shape": [5], "data": [1]},
        {"$": "Trace", "header": {"$": "dict", "items": []}, "arrays": {}},
        {"$": "RunSpec", "fields": {"$": "dict", "items": [["depth", -1]]}},
        {"$": "dict", "items": [[[1], 2]]},
        {"unknown": "object"},
    ]
    for data in hostile:
        assert isinstance(answers.decode(data), answers.Unreadable), data
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(answers.DecodeError):
        answers.loads('{"x": ' + deep + "}")
    with pytest.raises(answers.DecodeError):
        answers.loads("[1, 2]")


def _zip_with(tmp_path, tests: dict[str, str]):
    path = tmp_path / "autograder.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in tests.items():
            archive.writestr(f"tests/{name}.py", source)
    return path


_TEST_FILE = '''
from otter.test_files import test_case
OK_FORMAT = False
name = "q1"
points = 3

@test_case(points=None, hidden=False)
def test_form(x):
    assert isinstance(x, int), f"x should be an int, got {x!r}"

@test_case(points=None, hidden=True)
def test_value(x, y):
    secret = 42
    assert x == secret, "x is not the answer"

@test_case(points=None, hidden=True)
def test_crash(y):
    y["key"]
'''


def test_checks_come_from_the_zip_and_say_only_their_message(tmp_path) -> None:
    checks = Checks.from_zip(_zip_with(tmp_path, {"q1": _TEST_FILE}))
    assert checks.possible == {"q1": 3.0} and checks.names == ("x", "y")
    good = checks.score({"x": 42, "y": answers.encode({"key": 1})})["q1"]
    assert good.score == 3 and not good.messages
    bad = checks.score({"x": answers.encode(41), "y": answers.encode([1])})["q1"]
    assert bad.score == 1 and bad.possible == 3
    assert bad.messages == [
        "x is not the answer",
        "a check could not use your answer (TypeError): is each answer of the kind the "
        "question asks for?",
    ]
    assert "secret" not in " ".join(bad.messages) and "42" not in " ".join(bad.messages)
    missing = checks.score({"x": 42})["q1"]
    assert "`y` is not defined" in missing.messages[0] and missing.score == 1
    blank = checks.score({"x": answers.encode(...), "y": answers.encode(...)})["q1"]
    assert blank.messages == ["`x` is still Ellipsis: replace the `...` in the answer cell "
                              "with your answer and run the cell",
                              "`y` is still Ellipsis: replace the `...` in the answer cell "
                              "with your answer and run the cell"]


def test_a_check_may_not_change_the_answer_the_next_one_sees(tmp_path) -> None:
    source = '''
from otter.test_files import test_case
OK_FORMAT = False
name = "q"
points = 2
@test_case(points=None)
def test_a(values):
    values.clear()
@test_case(points=None)
def test_b(values):
    assert values == [1, 2], "changed"
'''
    checks = Checks.from_zip(_zip_with(tmp_path, {"q": source}))
    assert checks.score({"values": answers.encode([1, 2])})["q"].score == 2


def test_notebooks_are_read_as_data(tmp_path) -> None:
    notebook = {
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [
            {"cell_type": "code", "source": ["x = 1\n", "y = 2"], "metadata": {}},
            {"cell_type": "code", "source": "slow()", "metadata": {"tags": ["otter_ignore"]}},
            {"cell_type": "markdown", "source": "text", "metadata": {}},
        ],
    }
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps(notebook))
    cells, digest = read_notebook(path)
    assert cells == [{"index": 0, "source": "x = 1\ny = 2"}] and len(digest) == 64
    for content, message in [(b"\xff\xfe", "not JSON"), (b'{"nbformat": 3}', "format 4"),
                             (b'{"nbformat": 4, "cells": {}}', "no list of cells")]:
        path.write_bytes(content)
        with pytest.raises(UnreadableNotebook, match=message):
            read_notebook(path)


def _touch(path, content: bytes = b"{}") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def test_platform_layouts_name_the_students(tmp_path) -> None:
    canvas = tmp_path / "canvas"
    _touch(canvas / "doejane_12345_678901_hw07.ipynb")
    _touch(canvas / "roebob_LATE_23456_789012_hw07-1.ipynb")
    _touch(canvas / "roebob_LATE_23456_789012_notes.pdf")
    _touch(canvas / "kimlee_34567_890123_report.pdf")
    rows = discover([canvas])
    assert {(r.student, r.layout, r.notebook) for r in rows} == {
        ("doejane", "canvas", True), ("roebob", "canvas", True), ("kimlee", "canvas", False)}
    assert "no notebook" in next(r.note for r in rows if r.student == "kimlee")

    moodle = tmp_path / "moodle"
    _touch(moodle / "Jane Doe_123456_assignsubmission_file_" / "hw07.ipynb")
    _touch(moodle / "Bob Roe_234567_assignsubmission_file_" / "a.ipynb")
    _touch(moodle / "Bob Roe_234567_assignsubmission_file_" / "b.ipynb")
    (moodle / "Lee Kim_345678_assignsubmission_file_").mkdir()
    rows = discover([moodle])
    assert sorted((r.student, r.notebook) for r in rows) == [
        ("Bob Roe", True), ("Bob Roe", True), ("Jane Doe", True), ("Lee Kim", False)]
    assert all("one of 2 notebooks" in r.note for r in rows if r.student == "Bob Roe")

    blackboard = tmp_path / "blackboard"
    _touch(blackboard / "Homework 7_jdoe_attempt_2024-03-05-14-22-10_hw07.ipynb")
    _touch(blackboard / "Homework 7_jdoe_attempt_2024-03-05-14-22-10.txt", b"receipt")
    rows = discover([blackboard])
    assert [(r.student, r.layout) for r in rows] == [("jdoe", "blackboard")]

    gradescope = tmp_path / "gradescope"
    _touch(gradescope / "submission_111" / "hw07.ipynb")
    _touch(gradescope / "submission_222" / "nested" / "hw.ipynb")
    (gradescope / "submission_metadata.yml").write_text(
        "submission_111:\n  :submitters:\n  - :name: Jane Doe\n    :sid: '1'\n"
        "submission_222:\n  :submitters:\n  - :name: Bob Roe\n  - :name: Lee Kim\n")
    rows = discover([gradescope])
    assert [(r.student, r.path.name) for r in rows] == [
        ("Jane Doe", "hw07.ipynb"), ("Bob Roe & Lee Kim", "hw.ipynb")]

    plain = tmp_path / "plain"
    _touch(plain / "alice.ipynb")
    _touch(plain / ".ipynb_checkpoints" / "alice-checkpoint.ipynb")
    _touch(plain / "bob.txt")
    assert [(r.student, r.notebook) for r in discover([plain])] == [
        ("alice", True), ("bob.txt", False)]


def test_zips_are_extracted_safely(tmp_path) -> None:
    good = tmp_path / "download.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("doejane_12345_678901_hw07.ipynb", "{}")
    rows = discover([good], tmp_path / "unpacked")
    assert [r.student for r in rows] == ["doejane"]
    wrapped = tmp_path / "gradescope_export.zip"  # one folder holds the whole export
    with zipfile.ZipFile(wrapped, "w") as archive:
        archive.writestr("assignment_1_export/submission_metadata.yml",
                         "submission_9:\n  :submitters:\n  - :name: Jane Doe\n")
        archive.writestr("assignment_1_export/submission_9/hw.ipynb", "{}")
    assert [r.student for r in discover([wrapped], tmp_path / "unpacked")] == ["Jane Doe"]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../escaped.ipynb", "{}")
    with pytest.raises(ValueError, match="outside itself"):
        discover([evil], tmp_path / "unpacked")
    assert not (tmp_path / "escaped.ipynb").exists()


def test_feedback_files_have_distinct_safe_names(tmp_path) -> None:
    subs = [Submission(tmp_path / "a" / "hw.ipynb", "hw", "files"),
            Submission(tmp_path / "b" / "hw.ipynb", "hw", "files"),
            Submission(tmp_path / "x.ipynb", "../../etc/passwd", "files"),
            Submission(tmp_path / "y.ipynb", "HW", "files")]
    names = feedback_names(subs)
    assert len({n.lower() for n in names}) == 4
    assert all("/" not in n and not n.startswith(".") for n in names)


def test_grading_a_folder_without_notebooks_still_gives_every_file_a_row(tmp_path) -> None:
    autograder = _zip_with(tmp_path, {"q1": _TEST_FILE})
    folder = tmp_path / "handed-in"
    _touch(folder / "=SUM(A1).pdf", b"%PDF")
    _touch(folder / "broken.ipynb", b"not json")
    csv = tmp_path / "grades.csv"
    from explodebook.coursework.__main__ import main as cli

    assert cli(["grade", str(autograder), str(folder), "--csv", str(csv)]) == 0
    import pandas as pd

    table = pd.read_csv(csv, index_col="submission", keep_default_na=False)
    assert list(table["status"]) == ["missing", "unreadable"]
    assert list(table["possible"]) == [3, 3] and list(table["total"]) == [0, 0]
    assert table["student"].iloc[0] == "'=SUM(A1).pdf"  # not a formula in a spreadsheet
