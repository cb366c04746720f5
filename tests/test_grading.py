"""Assignments made from chapters are graded right by otter-grader.

For three chapters, end to end through ``otter assign`` and ``otter run``:
the chapter's reference solutions score full marks, the untouched student
notebook scores zero, and a plausible wrong answer to every autograded
question loses its points with a message that says what went wrong.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import ROOT
from explodebook.coursework.__main__ import main as cli
from explodebook.coursework.assignment import AssignmentFiles, load_questions
from explodebook.coursework.grading import grade_notebook

pytestmark = pytest.mark.slow

# A wrong answer a student might plausibly give, per question, and a phrase
# of the message the student must see.
WRONG: dict[str, dict[str, tuple[str, str]]] = {
    "01_what_are_exploding_gradients": {
        "ch1-ex-growth": ("layers_needed = np.floor(6 / np.log10([1.5, 2]))", "round up"),
        "ch1-ex-product": ("boundary_scale = 1.0", "still explodes"),
        "ch1-ex-depth": ("largest_stable_scale = 1.2", "diverges"),
        "ch1-ex-sigmoid": ("long_term_vanishes = False", "1/gamma = 4"),
    },
    "07_gradient_clipping": {
        "clip-ex-bounds": (
            "bound_clipnorm, bound_clipvalue, bound_global = 1.0, 0.5, 1.0",
            "each variable",
        ),
        "clip-ex-product": (
            "relative_gap = {'global_clipnorm': 0.5, 'clipnorm': 0.5}",
            "should coincide",
        ),
        "clip-ex-scaled": (
            "threshold = 50.0\n"
            "clipped = run(RunSpec(task='regression-scaled', steps=400, learning_rate=0.3,"
            " global_clipnorm=threshold))",
            "mean gradient norm",
        ),
    },
    "08_weight_regularization": {
        "reg-ex-decay": (
            "halving_mlp = np.log(2) / (0.0015 * 1.0)\nhalving_rnn = np.log(2) / (0.1 * 0.1)",
            "twice the answer",
        ),
        "reg-ex-where": (
            "final_loss_by_l2 = {0.0: [2.4, 2.4], 0.01: [9.0, 9.0], 0.1: [1.0, 1.0]}",
            "use RunSpec(global_clipnorm=1.0, l2=l2)",
        ),
        "reg-ex-adam": ("matching_optimizer = 'AdamW'", "outside Adam's per-element scaling"),
    },
}


@pytest.fixture(scope="module", params=sorted(WRONG))
def assignment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The chapter's assignment, made by the command the README gives."""
    chapter = ROOT / "chapters" / f"{request.param}.md"
    out = tmp_path_factory.mktemp(request.param)
    assert cli(["assign", str(chapter), "--book", str(ROOT), "--out", str(out)]) == 0
    stem = chapter.stem
    return AssignmentFiles(
        student=out / stem / "student" / f"{stem}.ipynb",
        solution=out / stem / "autograder" / f"{stem}.ipynb",
        autograder=out / stem / "autograder" / "autograder.zip",
        master=out / stem / "source" / f"{stem}.ipynb",
        questions=sorted(load_questions(chapter)),
    )


def _answer_cell(notebook: nbformat.NotebookNode, label: str) -> int:
    """Index of the cell holding the answer to ``label`` (the one before its check)."""
    checks = [i for i, c in enumerate(notebook.cells) if c.source == f'grader.check("{label}")']
    assert len(checks) == 1, f"one check cell for {label}"
    return checks[0] - 1


def test_every_question_has_a_wrong_answer(assignment) -> None:
    assert sorted(WRONG[assignment.student.stem]) == assignment.questions
    assert assignment.questions, "each of these chapters has autograded questions"


def test_reference_solutions_score_full_marks(assignment) -> None:
    result = grade_notebook(assignment.solution, assignment.autograder)
    assert not result.error
    assert set(result.scores) == set(assignment.questions)
    assert result.total == result.total_possible > 0, result.feedback


def test_untouched_student_notebook_scores_zero(assignment, tmp_path: Path) -> None:
    # graded the way an instructor grades a folder of submissions
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "blank.ipynb").write_bytes(assignment.student.read_bytes())
    csv, feedback = tmp_path / "grades.csv", tmp_path / "feedback"
    command = ["grade", str(assignment.autograder), str(folder), "--csv", str(csv)]
    assert cli([*command, "--feedback", str(feedback)]) == 0
    table = pd.read_csv(csv, index_col="submission", keep_default_na=False)
    assert list(table.index) == [str(folder / "blank.ipynb")]
    assert set(table.columns) == {*assignment.questions, "total", "possible", "percent", "error"}
    row = table.loc[str(folder / "blank.ipynb")]
    assert row["total"] == 0 and row["possible"] > 0 and row["error"] == ""
    assert all(row[label] == 0 for label in assignment.questions)
    assert (tmp_path / "grades.csv").read_text().startswith("submission,")
    # every failed check says the answer is missing, not a traceback from the check
    message = (tmp_path / "feedback" / "blank.txt").read_text()
    for label in assignment.questions:
        assert f"`{load_questions(assignment.student)[label].answer[0]}` is still Ellipsis" in message


def test_wrong_answers_lose_points_with_a_helpful_message(assignment, tmp_path: Path) -> None:
    notebook = nbformat.read(assignment.solution, as_version=4)
    for label, (code, _) in WRONG[assignment.student.stem].items():
        notebook.cells[_answer_cell(notebook, label)].source = code
    wrong = tmp_path / "wrong_answers.ipynb"  # students rename their copies
    nbformat.write(notebook, wrong)
    result = grade_notebook(wrong, assignment.autograder)
    for label, (_, phrase) in WRONG[assignment.student.stem].items():
        assert result.scores[label] < load_questions(assignment.student)[label].points
        assert phrase in result.feedback[label], (label, result.feedback[label])
