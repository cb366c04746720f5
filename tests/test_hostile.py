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
# 30 s, as the unprivileged grader below: a correct chapter-1 notebook is graded in
# 9 s even under a load of 6.7 on 2 cores (benchmarks/grading_results.md), and the
# "hang" attack burns a core for the whole limit (60 s made this the suite's slowest file).
LIMITS = Limits(seconds=30, memory=2 * 2**30, disk=256 * 2**20)


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
def chapter1(tmp_path_factory: pytest.TempPathFactory):
    """Chapter 1's assignment (student notebook, solutions, autograder zip)."""
    return assign(CHAPTER, tmp_path_factory.mktemp("assignment"), book=ROOT)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, chapter1):
    out = tmp_path_factory.mktemp("hostile")
    files = chapter1
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
    # well-formed wrong answers pass the public form checks, nothing more (and
    # get nothing of ch1-ex-sigmoid's point, which is all or nothing)
    assert row["total"] == 3 and row["ch1-ex-sigmoid"] == 0
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


# -- a grader that is not root: the rlimit-only mode ----------------------------------

#: Attacks whose outcome the rlimit-only mode guarantees too: all of them are
#: decided by scoring in the grader's own process, or by the limits every
#: mode sets. What it cannot guarantee, since the notebooks run as the
#: grader's own user: that a notebook does not read what that user may read
#: (classmates' notebooks, the hidden checks, the grades so far), write
#: where that user may write (a classmate's notebook before it is graded,
#: the CSV), signal the grader's processes (kill it: the CSV keeps the rows
#: written so far and grading resumes), fill the disk beyond each file's
#: size limit, or use the network. Those are test_hostile's ``_isolated``
#: tests above, and instructors.md says so.
UNPRIVILEGED = ("tamper_grader", "tamper_checks", "code_in_answers", "forge_results", "hang",
                "memory", "crash")

# As root: a private mount namespace in which the interpreter's folders are
# reachable (Python may live under /root, mode 700, as on this machine; the
# sandbox's own `expose`), then the user's ids, then the grader.
_DROP = """
import os, sys
from explodebook.coursework.linux import CLONE_NEWNS, MS_PRIVATE, MS_REC, mount, unshare
from explodebook.coursework.mounts import expose, needed_paths, private_ancestors
uid, gid = int(sys.argv[1]), int(sys.argv[2])
unshare(CLONE_NEWNS)
mount(None, "/", None, MS_REC | MS_PRIVATE, None)
expose(private_ancestors(needed_paths()))
os.setgroups([])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
"""


def _unprivileged_user() -> tuple[int, int, str | None]:
    """A user that is not root: this one, or (as root) one made for the test."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid(), None
    import shutil
    import subprocess
    import uuid

    if shutil.which("useradd") is None:
        pytest.skip("root without useradd: no unprivileged user to grade as")
    name = f"ebgrade{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                           "/usr/sbin/nologin", name], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"useradd failed: {done.stderr.strip()}")
    import pwd

    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid, name


def test_an_unprivileged_grader_keeps_what_its_mode_guarantees(chapter1) -> None:
    import shutil
    import subprocess
    import sys
    import tempfile

    from _grading_attacks import attacks, build

    import nbformat

    uid, gid, created = _unprivileged_user()
    work = Path(tempfile.mkdtemp(prefix="explodebook-unprivileged-"))
    try:
        folder, home = work / "handed-in", work / "home"
        folder.mkdir()
        home.mkdir()
        autograder = work / "autograder.zip"
        shutil.copy(chapter1.autograder, autograder)
        shutil.copy(chapter1.solution, folder / "zz_classmate.ipynb")
        student = nbformat.read(chapter1.student, as_version=4)
        ctx = Context(folder / "zz_classmate.ipynb", work / "grades.csv", work / "feedback",
                      autograder, chapter1.solution)
        for attack in attacks(ctx):
            if attack.name in UNPRIVILEGED:
                nbformat.write(build(attack, student), folder / f"{attack.name}.ipynb")
        for path in [work, *work.rglob("*")]:
            os.chown(path, uid, gid)
        grade_command = ["-m", "explodebook.coursework", "grade", str(autograder), str(folder),
                         "--csv", str(ctx.csv), "--feedback", str(ctx.feedback), "--jobs", "2",
                         "--timeout", "30", "--memory", "3"]
        if os.geteuid() == 0:
            command = [sys.executable, "-c", _DROP, str(uid), str(gid), *grade_command]
        else:
            command = [sys.executable, *grade_command]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "LANG": "C.UTF-8", "MPLBACKEND": "agg", "TF_CPP_MIN_LOG_LEVEL": "2",
               "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
               "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=home,
                              timeout=900)
        assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
        # the grader knew it was not root, and said what that means
        assert "the grader's own user" in done.stdout + done.stderr, done.stdout[-2000:]
        table = pd.read_csv(ctx.csv, index_col="submission", keep_default_na=False)
        row = lambda name: table.loc[str(folder / f"{name}.ipynb")]  # noqa: E731
        assert len(table) == len(UNPRIVILEGED) + 1
        classmate = row("zz_classmate")
        assert classmate["status"] == "graded" and classmate["total"] == 7, (
            classmate.to_dict(), done.stderr[-3000:])
        for name in ("tamper_grader", "tamper_checks", "code_in_answers", "forge_results"):
            assert row(name)["total"] == 0 and row(name)["possible"] == 7, (name, row(name))
        assert row("hang")["status"] == "timeout" and row("hang")["total"] == 2
        # RLIMIT_AS: the allocation fails inside the cell, earlier answers count (a
        # limit on address space, not memory: PyTorch and TensorFlow reserve
        # about 2.3 GB of it, so under 3 GB a correct notebook would abort)
        assert row("memory")["status"] == "graded" and "MemoryError" in row("memory")["notes"]
        assert row("memory")["total"] == 2
        assert row("crash")["status"] == "crashed" and row("crash")["total"] == 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created:
            import subprocess

            subprocess.run(["userdel", created], capture_output=True)


# -- guessed answers ---------------------------------------------------------------------

#: For each exercise whose answer alone is a yes/no or a choice of two: what a
#: student who only read the question would hand in, alone and with made-up
#: evidence of the right form.
GUESSES = {
    "01_what_are_exploding_gradients": {
        "ch1-ex-sigmoid": [
            {"long_term_vanishes": True},
            {"long_term_vanishes": False},
            # the chapter's bound (gamma * sigma_max)**k, not the recurrence's norms
            {"long_term_vanishes": True, "sigmoid_norms": [0.75 ** k for k in range(61)]},
        ],
    },
    "08_weight_regularization": {
        "reg-ex-adam": [
            {"matching_optimizer": "Adam"},
            {"matching_optimizer": "AdamW"},
            {"matching_optimizer": "Adam", "adamw_losses": [12.0] * 1600},  # of the right size
        ],
    },
}


@pytest.mark.parametrize("chapter", sorted(GUESSES))
def test_guessed_answers_score_nothing(chapter, tmp_path) -> None:
    from explodebook.coursework import answers
    from explodebook.coursework.scoring import Checks

    files = assign(ROOT / "chapters" / f"{chapter}.md", tmp_path / "assignment", book=ROOT)
    checks = Checks.from_zip(files.autograder)
    for label, guesses in GUESSES[chapter].items():
        for guess in guesses:
            scored = checks.score({name: answers.encode(v) for name, v in guess.items()})[label]
            assert scored.score == 0, (label, guess, scored)
