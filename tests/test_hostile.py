"""Hostile students: each attack class against the grader, and what it gets.

One folder is graded once for the whole module: chapter 1's assignment, a
notebook per attack (tests/_grading_attacks.py says what each tries), files
that are not notebooks, a file name made to be a spreadsheet formula, and
two classmates who did the work: one in the same folder, whose notebook the
attacks try to read, copy, overwrite, or stop from being graded, and one in
another folder whose file has an attack's name. Every test below asserts
the designed outcome of one attack class, and that the classmates still get
full marks.

The attacks that only the sandbox's root-only means stop (separate users,
private mounts, no network) are skipped when the tests do not run as root,
where the grader runs them with its weaker, rlimit-only isolation.
"""

from __future__ import annotations

import csv
import os
import site
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from _grading_attacks import MALFORMED, MARKER, SECRET_VAR, SLEEPER, Context, write_batch
from conftest import ROOT
from explodebook.coursework.assignment import assign, load_questions
from explodebook.coursework.grading import grade
from explodebook.coursework.sandbox import Limits

pytestmark = pytest.mark.slow

CHAPTER = ROOT / "chapters" / "01_what_are_exploding_gradients.md"
SECRET = "s3cret-token-of-the-grader"
LIMITS = Limits(seconds=60, memory=2 * 2**30, disk=256 * 2**20)


def _package_dirs() -> list[Path]:
    import explodebook

    return [Path(explodebook.__file__).parent, *map(Path, site.getsitepackages())]


def _sleepers() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if SLEEPER.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("hostile")
    files = assign(CHAPTER, out / "assignment", book=ROOT)
    folder = out / "handed-in"
    grades = out / "grades"
    ctx = Context(
        classmate=folder / "zz_classmate.ipynb",
        csv=grades / "grades.csv",
        feedback=grades / "feedback",
        autograder=files.autograder,
        solution=files.solution,
    )
    names = write_batch(folder, files.student, files.solution, ctx)
    other = out / "other-section"
    other.mkdir()
    (other / "hang.ipynb").write_bytes(files.solution.read_bytes())  # a classmate named "hang"
    log: list[str] = []
    saved = os.environ.get(SECRET_VAR)
    os.environ[SECRET_VAR] = SECRET
    try:
        table = grade([folder, other], files.autograder, ctx.csv, ctx.feedback,
                      jobs=2, limits=LIMITS, log=log.append)
    finally:
        if saved is None:
            os.environ.pop(SECRET_VAR, None)
        else:
            os.environ[SECRET_VAR] = saved
    isolated = any("separate users" in line and "private /tmp" in line for line in log)
    return SimpleNamespace(
        files=files, folder=folder, other=other, ctx=ctx, names=names, table=table, log=log,
        isolated=isolated, questions=load_questions(CHAPTER),
        csv=pd.read_csv(ctx.csv, index_col="submission", keep_default_na=False),
    )


def _row(batch, name: str, folder: Path | None = None) -> pd.Series:
    return batch.csv.loc[str((folder or batch.folder) / name)]


def _feedback(batch, student: str) -> str:
    return (batch.ctx.feedback / f"{student}.txt").read_text()


def _isolated(batch) -> None:
    if not batch.isolated:
        pytest.skip("the grader is not root here: no separate users, private mounts or "
                    "network namespace (" + "; ".join(batch.log[:1]) + ")")


def _classmates_full_marks(batch) -> None:
    for row in (_row(batch, "zz_classmate.ipynb"), _row(batch, "hang.ipynb", batch.other)):
        assert row["status"] == "graded" and row["total"] == row["possible"] == 7, row


# -- one test per attack class ---------------------------------------------------


def test_tampering_with_the_grader_gains_nothing(batch) -> None:
    row = _row(batch, "tamper_grader.ipynb")
    assert row["status"] == "graded" and row["total"] == 0
    _classmates_full_marks(batch)


def test_tampering_with_the_checks_helpers_gains_nothing(batch) -> None:
    row = _row(batch, "tamper_checks.ipynb")
    assert row["status"] == "graded" and row["total"] == 0
    _classmates_full_marks(batch)


def test_answers_are_values_no_code_of_theirs_runs_in_the_grader(batch) -> None:
    row = _row(batch, "code_in_answers.ipynb")
    assert row["total"] == 0
    text = _feedback(batch, "code_in_answers")
    assert "[-1.0, 0.5]" in text and "9" in text  # what the grader saw: plain values
    _classmates_full_marks(batch)


def test_forged_results_count_for_nothing(batch) -> None:
    row = _row(batch, "forge_results.ipynb")
    assert row["total"] == 0 and row["possible"] == 7  # points possible: the assignment's
    _classmates_full_marks(batch)


def test_a_classmates_notebook_cannot_be_copied(batch) -> None:
    _isolated(batch)
    row = _row(batch, "copy_classmate.ipynb")
    assert row["total"] == 0
    _classmates_full_marks(batch)


def test_the_graders_files_environment_and_processes_stay_private(batch) -> None:
    _isolated(batch)
    text = _feedback(batch, "snoop")
    assert "snoop found: nothing" in text, text
    for path in batch.ctx.feedback.glob("*.txt"):
        assert SECRET not in path.read_text()


def test_sabotage_harms_no_classmate_and_no_record(batch) -> None:
    _isolated(batch)
    assert "sabotage did: nothing" in _feedback(batch, "sabotage")
    _classmates_full_marks(batch)
    assert batch.ctx.classmate.read_bytes() == batch.files.solution.read_bytes()
    assert "forged" not in batch.ctx.csv.read_text()
    # every submission was graded, the grader survived to write every feedback file
    assert len(list(batch.ctx.feedback.glob("*.txt"))) == len(batch.csv)


def test_nothing_is_left_behind(batch) -> None:
    _isolated(batch)
    left = [d / MARKER for d in _package_dirs() if (d / MARKER).exists()]
    for path in left:
        path.unlink()
    assert not left, f"files left in the package's folders: {left}"
    assert not _sleepers(), "a process the notebook started outlived it"
    assert _row(batch, "persist.ipynb")["status"] == "graded"


def test_a_hang_is_stopped_and_earlier_answers_count(batch) -> None:
    row = _row(batch, "hang.ipynb")
    assert row["status"] == "timeout", row
    assert row["ch1-ex-growth"] == 2 and row["total"] == 2  # answered before the loop
    assert LIMITS.seconds <= row["seconds"] < LIMITS.seconds + 10
    assert "time limit" in row["error"] and "time limit" in _feedback(batch, "hang-hang")
    _classmates_full_marks(batch)


def test_a_memory_bomb_is_stopped_and_earlier_answers_count(batch) -> None:
    row = _row(batch, "memory.ipynb")
    if batch.isolated:  # a cgroup: the kernel stops the whole job
        assert row["status"] == "memory" and "memory limit" in row["error"], row
    else:  # RLIMIT_AS: the allocation fails inside the cell
        assert row["status"] == "graded" and "MemoryError" in row["notes"], row
    assert row["ch1-ex-growth"] == 2 and row["total"] == 2
    _classmates_full_marks(batch)


def test_a_crash_keeps_earlier_answers(batch) -> None:
    row = _row(batch, "crash.ipynb")
    assert row["status"] == "crashed" and "signal 11" in row["error"], row
    assert row["ch1-ex-growth"] == 2 and row["total"] == 2
    _classmates_full_marks(batch)


def test_a_flood_of_output_and_a_huge_answer_are_bounded(batch) -> None:
    row = _row(batch, "flood.ipynb")
    assert row["total"] == 0 and row["seconds"] < LIMITS.seconds
    assert "too large" in _feedback(batch, "flood")
    _classmates_full_marks(batch)


def test_the_disk_cannot_be_filled(batch) -> None:
    _isolated(batch)
    text = _feedback(batch, "disk")
    written = int(text.split("disk: wrote ")[1].split(" MB")[0])
    assert written <= LIMITS.disk // 2**20, text
    _classmates_full_marks(batch)


def test_there_is_no_network(batch) -> None:
    _isolated(batch)
    assert "network: unreachable" in _feedback(batch, "network")


def test_feedback_gives_no_answer_code_or_grader_internals_away(batch) -> None:
    row = _row(batch, "fishing.ipynb")
    # well-formed wrong answers pass the public form checks, nothing more
    assert row["total"] == 3.5
    text = _feedback(batch, "fishing")
    # every hidden check explains itself, without the reference answer
    for label, question in batch.questions.items():
        assert f"{label}: " in text and row[label] < question.points
    for leak in ("35", "20", "True", "0.58", "1.1 "):  # the reference: [35, 20], 0.58, 1.1, True
        assert leak not in text.split("Score:")[1], (leak, text)
    for path in batch.ctx.feedback.glob("*.txt"):
        body = path.read_text()
        assert "def test_" not in body and "Traceback" not in body
        assert str(batch.files.autograder.parent) not in body
        assert "explodebook/coursework" not in body


def test_files_that_are_not_notebooks_get_a_row_each(batch) -> None:
    for name in MALFORMED:
        row = _row(batch, name)
        assert row["status"] in ("unreadable", "missing") and row["total"] == 0, (name, row)
        assert row["error"], name
    assert "not JSON" in _row(batch, "not_json.ipynb")["error"]
    assert "format 4" in _row(batch, "format3.ipynb")["error"]
    assert "no notebook" in _row(batch, "homework.py")["error"]


def test_file_names_cannot_become_formulas_or_mix_up_feedback(batch) -> None:
    with open(batch.ctx.csv, newline="") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    formula = [c for c in cells if "HYPERLINK" in c]
    assert len(formula) == 2  # its path (safe: it starts with /) and its student name
    assert all(c.startswith(("'", "/")) for c in formula), formula
    # two students whose notebooks have the same name get their own feedback
    assert "7 / 7" in _feedback(batch, "hang-hang-2") or "7 / 7" in _feedback(batch, "hang-hang")
    texts = {_feedback(batch, "hang-hang"), _feedback(batch, "hang-hang-2")}
    assert len(texts) == 2


def test_every_file_handed_in_has_a_row(batch) -> None:
    handed_in = [p for p in batch.folder.iterdir()] + list(batch.other.iterdir())
    assert len(batch.csv) == len(handed_in)
    assert set(batch.csv.index) == {str(p) for p in handed_in}
    assert set(batch.csv["possible"]) == {7}


# -- the grading machine, not the students -------------------------------------------


def test_grading_resumes_where_it_stopped(batch, tmp_path) -> None:
    folder = tmp_path / "handed-in"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.ipynb").write_bytes(batch.files.student.read_bytes())
    csv = tmp_path / "grades.csv"
    grade([folder], batch.files.autograder, csv, jobs=1, limits=LIMITS)
    first = csv.read_text()
    log: list[str] = []
    grade([folder], batch.files.autograder, csv, jobs=1, limits=LIMITS, log=log.append)
    assert not log, "nothing changed: nothing to run, no sandbox started"
    assert csv.read_text() == first
    # a notebook handed in again is graded again; the other row is kept
    text = (folder / "b.ipynb").read_text().replace("layers_needed = ...", "layers_needed = [35, 20]")
    (folder / "b.ipynb").write_text(text)
    done: list[str] = []
    table = grade([folder], batch.files.autograder, csv, jobs=1, limits=LIMITS,
                  progress=lambda result, n, total: done.append(result.submission.name))
    assert table.loc[str(folder / "b.ipynb"), "total"] == 2
    assert table.loc[str(folder / "a.ipynb"), "total"] == 0
    assert sorted(done) == ["a.ipynb", "b.ipynb"]  # both reported, a.ipynb from the CSV


def test_a_sandbox_that_dies_is_started_again(batch, tmp_path, monkeypatch) -> None:
    from explodebook.coursework.sandbox import Sandbox

    submit = Sandbox.submit
    killed: list[int] = []

    def submit_then_die(self, *args, **kwargs):
        if not killed:  # the OOM killer takes the zygote, say, as the notebook goes in
            killed.append(self._zygote.pid)
            self._zygote.kill()
            self._zygote.wait()
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(Sandbox, "submit", submit_then_die)
    folder = tmp_path / "handed-in"
    folder.mkdir()
    (folder / "a.ipynb").write_text(batch.files.student.read_text().replace(
        "layers_needed = ...", "layers_needed = [35, 20]"))
    log: list[str] = []
    table = grade([folder], batch.files.autograder, tmp_path / "grades.csv", jobs=1,
                  limits=LIMITS, log=log.append)
    assert killed and any("starting it again" in line for line in log)
    row = table.loc[str(folder / "a.ipynb")]
    assert row["status"] == "graded" and row["total"] == 2
