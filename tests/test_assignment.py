"""Chapters become otter-grader master notebooks (fast: no grading here)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import ROOT, toc_files
from explodebook.coursework import expect
from explodebook.coursework.assignment import (
    IGNORE_TAG,
    Check,
    Question,
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
    assert len(experiments) == path.read_text().count("```{code-cell}") - 1
    graded = load_questions(path)
    for label in graded:
        assert f"# BEGIN QUESTION\nname: {label}\npoints:" in "\n".join(sources)
    # no MyST role survives
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert not re.search(r"\{(glue:text|cite|ref)\}`", markdown)


def test_three_chapters_are_autograded() -> None:
    graded = [c for c in CHAPTERS if load_questions(ROOT / f"{c}.md")]
    assert len(graded) >= 3


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
