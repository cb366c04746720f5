"""Assignments made from chapters are graded right.

For each autograded chapter, end to end through ``otter assign`` and the
book's own grader (sandboxed runners, checks in the grader's process): one
folder of handed-in notebooks is graded once, by the command the README
gives, and everything is asserted on that one grading. The chapter's
reference solutions score full marks, the untouched student notebook scores
zero, and a plausible wrong answer to every autograded question loses its
points with a message that says what went wrong, and does not give the
answer away.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from filelock import FileLock

from conftest import ROOT
from explodebook.coursework.__main__ import main as cli
from explodebook.coursework.assignment import AssignmentFiles, assign, load_questions
from explodebook.coursework.grading import COLUMNS_AFTER, grade

pytestmark = pytest.mark.slow

# A wrong answer a student might plausibly give, per question, and a phrase
# of the message the student must see.
WRONG: dict[str, dict[str, tuple[str, str]]] = {
    "01_what_are_exploding_gradients": {
        "ch1-ex-growth": ("layers_needed = np.floor(6 / np.log10([1.5, 2]))", "round up"),
        "ch1-ex-product": ("boundary_scale = 1.0", "still explodes"),
        "ch1-ex-depth": ("largest_stable_scale = 1.2", "diverges"),
        "ch1-ex-sigmoid": (
            "Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(32, 32)))\n"
            "sigmoid_norms = theory.rnn_backprop_norms(3 * Q, 60, 'sigmoid')\n"
            "long_term_vanishes = False",
            "which bound on sigma_max",
        ),
    },
    "02_the_problem": {
        "ch2-ex-overflow": ("overflow_steps = [[27, 218, 218], [44, 235, 235]]", "still within"),
        "ch2-ex-lr": ("largest_lr = 1.5e-3", "becomes non-finite"),
    },
    "02a_recurrent_networks": {
        # the ratio the wrong way round, T = 5 over T = 80
        "ch2-ex-growth": ("growth = {0.5: 1.16, 1.0: 1.14, 1.5: 0.049, 2.0: 1.06e-4}",
                          "is not the first gradient norm"),
    },
    "03_how_to_know": {
        "ch3-ex-threshold": ("threshold_level, scaled_verdict = 10, 'healthy'", "must be higher"),
    },
    "03a_subtle_or_conclusive": {
        "ch3-ex-lr": ("lr_max = {'torch': 1.5e-3, 'keras': 1.5e-3}", "the largest rate that trains is smaller"),
    },
    "03b_mystery_runs": {
        "ch3-ex-depth": ("nonfinite_by_depth = {4: [None, None], 10: [4, 4], 15: [4, 4]}",
                         "does not go non-finite at step 4"),
    },
    "04_redesign": {
        "rd-ex-layers": ("layers_to_remove = 20", "still above 10"),
        "rd-ex-predict-gain": ("gain_at_1_1 = 1.21 ** 10", "not the measured ratio"),
    },
    "04a_batch_size": {
        "rd-ex-batch-lr": ("largest_lr_by_batch = {1: 1e-4, 32: 1e-2, 500: 1e-2}",
                           "is not one that trains"),
    },
    "04b_truncated_bptt": {
        "rd-ex-predict-vanishing": ("vanishing_ratio = 2.0 ** 40", "not the measured ratio"),
        "rd-ex-reach": ("expected_loss = {k: (1 - k / 10) / 12 for k in (1, 3, 5, 8, 10)}",
                        "not the expected loss"),
    },
    "05_relu": {
        "relu-ex-bound": ("sigmoid_layers = 62", "not yet below"),
        "relu-ex-depth": ("first_layer_norms = {d: [1.44 ** d, 1.44 ** d] for d in (5, 10, 20, 40)}",
                          "is not the first layer's gradient norm"),
    },
    "06_lstm": {
        "lstm-ex-forget": ("norms = np.ones(80)", "not the input gradient norms"),
    },
    "06a_lstm_memory_and_limits": {
        "lstm-ex-longer": (
            "adding = RunSpec(model='rnn', width=32, init='xavier', optimizer='adam',"
            " learning_rate=0.01, steps=400, seq_len=20)\n"
            "trace = run(adding.replace(cell='lstm', seq_len=40))\nplateau_end = 399",
            "its spec differs",
        ),
    },
    "07_gradient_clipping": {
        "clip-ex-bounds": (
            "bound_clipnorm, bound_clipvalue, bound_global = 1.0, 0.5, 1.0",
            "each variable",
        ),
        "clip-ex-momentum": ("step_bound = 0.01 * 1.0", "without momentum"),
    },
    "07a_choosing_the_threshold": {
        "clip-ex-median": ("share_at_median = 0.5", "is not the share of steps clipped"),
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
        "reg-ex-overshoot": ("stops = {100.0: 8, 200.0: 8}", "first goes non-finite"),
        "reg-ex-where": (
            "final_loss_by_l2 = {0.0: [2.4, 2.4], 0.01: [9.0, 9.0], 0.1: [1.0, 1.0]}",
            "RunSpec(global_clipnorm=1.0, l2=l2)",
        ),
        "reg-ex-adam": (
            # the package's own run copied instead of an AdamW loop
            "matching_optimizer = 'Adam'\nadamw_losses ="
            " run(RunSpec(optimizer='adam', learning_rate=0.01, l2=0.01)).loss",
            "AdamW(weight_decay=0.02) loop",
        ),
    },
    "08a_where_regularization_helps": {
        "reg-ex-clip-edge": (
            "edge_final = {'l2 = 1': 0.09, 'global_clipnorm = 100': 800.0}",
            "is not where that run ends",
        ),
        "reg-ex-decay": (
            "halving_mlp = np.log(2) / (0.0015 * 1.0)\nhalving_rnn = np.log(2) / (0.1 * 0.1)",
            "2 * l2 * W, not l2 * W",
        ),
    },
    "09_fixes_compared": {
        "ex-cmp-recall": ("trace = run(RunSpec())\nlargest_norms = [1.0, 1.0]",
                          "should be run(RunSpec(global_clipnorm=1.0))"),
        "ex-cmp-combine": ("finite_by_variant = {'batch 8 + L2': [True, True],"
                           " 'L2 + clipping': [True, True]}", "did not end as you say"),
    },
    "10_beyond_the_article": {
        "bey-ex-leaky": ("leaky_std = np.sqrt(2 / 32)", "plain ReLU"),
    },
    "11_watch_your_model": {
        "mon-ex-threshold": (
            "first_nonfinite = {0.005: [None, None], 0.01: [None, None], 0.02: [30, 30], 0.03: [18, 18]}",
            "does not stay finite",
        ),
    },
    "11a_monitor_in_practice": {
        # the hooked run without clipping: its norms part from the clipped run's after step 0
        "mon-ex-manual": ("manual_grad_norms = train('torch', 0.03).grad_norms", "do not match"),
    },
    "10a_normalization_and_residuals": {
        "bey-ex-zero-branch": ("largest_residual_scale = 0.3", "goes non-finite"),
    },
    "10b_warmup_and_adam": {
        "bey-ex-warmup-scaled": (
            "first_nonfinite = {(lr, w): [None, None] for lr in (0.1, 0.3) for w in (0, 50, 200)}",
            "does not end as you say",
        ),
    },
    "10c_mixed_precision": {
        "bey-ex-scale-window": ("windows = {'deep': (16, 24), 'classic': (0, 16)}",
                                "overflow float16"),
    },
}


def _answer_cell(notebook: nbformat.NotebookNode, label: str) -> int:
    """Index of the cell holding the answer to ``label`` (the one before its check)."""
    checks = [i for i, c in enumerate(notebook.cells) if c.source == f'grader.check("{label}")']
    assert len(checks) == 1, f"one check cell for {label}"
    return checks[0] - 1


def _sections(text: str) -> dict[str, str]:
    """A feedback file's text per question (``name: score / possible`` and its lines)."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^(\S+): [\d.]+ / [\d.]+$", line)
        if head:
            current = head[1]
            out[current] = ""
        elif current and line.startswith("  - "):
            out[current] += line[4:] + "\n"
        else:
            current = None
    return out


def test_the_sandbox_runs_the_graders_own_package(tmp_path) -> None:
    """A grader run from a checkout on PYTHONPATH (or any copy of the package)
    starts its sandbox on that same copy, not on whatever the interpreter
    would import by default (an editable install of another checkout: the
    notebooks crashed at once, exit code 70, when the two differed)."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "explodebook", copy / "explodebook",
                    ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    probe = (
        "import subprocess, sys\n"
        "import explodebook\n"
        "from explodebook.coursework.zygote import clean_env\n"
        f"env = clean_env({str(home)!r})\n"
        "child = subprocess.run([sys.executable, '-c', 'import explodebook; print(explodebook.__file__)'],\n"
        f"                       env=env, cwd={str(home)!r}, capture_output=True, text=True, check=True)\n"
        "print(explodebook.__file__)\n"
        "print(child.stdout.strip())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=home, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy)}, check=True)
    grader, sandboxed = done.stdout.split()
    assert grader.startswith(str(copy))
    assert sandboxed == grader


@pytest.fixture(scope="module")
def sandbox():
    """One sandbox for every chapter's grading (its imports cost seconds)."""
    from explodebook.coursework.sandbox import Sandbox

    with Sandbox(jobs=2) as box:
        yield box


@pytest.fixture(scope="module", params=sorted(WRONG))
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sandbox):
    """The chapter's assignment, and one folder of notebooks graded with it."""
    chapter = ROOT / "chapters" / f"{request.param}.md"
    out = tmp_path_factory.mktemp(request.param)
    assert cli(["assign", str(chapter), "--book", str(ROOT), "--out", str(out)]) == 0
    stem = chapter.stem
    files = AssignmentFiles(
        student=out / stem / "student" / f"{stem}.ipynb",
        solution=out / stem / "autograder" / f"{stem}.ipynb",
        autograder=out / stem / "autograder" / "autograder.zip",
        master=out / stem / "source" / f"{stem}.ipynb",
        questions=sorted(load_questions(chapter)),
    )
    folder = out / "handed-in"
    folder.mkdir()
    (folder / "reference.ipynb").write_bytes(files.solution.read_bytes())
    (folder / "blank.ipynb").write_bytes(files.student.read_bytes())
    notebook = nbformat.read(files.solution, as_version=4)
    for label, (code, _) in WRONG[stem].items():
        notebook.cells[_answer_cell(notebook, label)].source = code
    nbformat.write(notebook, folder / "wrong_answers.ipynb")  # students rename their copies
    csv, feedback = out / "grades.csv", out / "feedback"
    results = {}
    grade([folder], files.autograder, csv, feedback, sandbox=sandbox,
          progress=lambda result, done, total: results.setdefault(result.submission.name, result))
    table = pd.read_csv(csv, index_col="submission", keep_default_na=False)
    return SimpleNamespace(
        files=files, folder=folder, table=table, feedback=feedback, csv=csv, results=results,
        questions=load_questions(chapter),
    )


def test_every_question_has_a_wrong_answer(graded) -> None:
    assert sorted(WRONG[graded.files.student.stem]) == graded.files.questions
    assert graded.files.questions, "each of these chapters has autograded questions"


def test_one_row_per_notebook_with_the_assignments_columns(graded) -> None:
    table = graded.table
    names = ["blank.ipynb", "reference.ipynb", "wrong_answers.ipynb"]
    assert list(table.index) == [str(graded.folder / n) for n in names]
    assert list(table.columns) == ["student", *graded.files.questions, *COLUMNS_AFTER]
    assert graded.csv.read_text().startswith("submission,student,")
    # points possible are the assignment's, whatever each notebook did
    possible = sum(q.points for q in graded.questions.values())
    assert (table["possible"] == possible).all()
    assert (table["status"] == "graded").all() and (table["error"] == "").all()


def test_reference_solutions_score_full_marks(graded) -> None:
    row = graded.table.loc[str(graded.folder / "reference.ipynb")]
    assert row["total"] == row["possible"] > 0, (graded.feedback / "reference.txt").read_text()
    assert row["percent"] == 100


def test_untouched_student_notebook_scores_zero(graded) -> None:
    row = graded.table.loc[str(graded.folder / "blank.ipynb")]
    assert row["total"] == 0 and row["possible"] > 0
    assert all(row[label] == 0 for label in graded.files.questions)
    # every failed check says the answer is missing, not a traceback from the check
    message = (graded.feedback / "blank.txt").read_text()
    for label, question in graded.questions.items():
        assert f"`{question.answer[0]}` is still Ellipsis" in _sections(message)[label]
    assert "Traceback" not in message and "a check could not use" not in message


def test_wrong_answers_lose_points_with_a_helpful_message(graded) -> None:
    row = graded.table.loc[str(graded.folder / "wrong_answers.ipynb")]
    sections = _sections((graded.feedback / "wrong_answers.txt").read_text())
    for label, (_, phrase) in WRONG[graded.files.student.stem].items():
        assert row[label] < graded.questions[label].points
        assert phrase in sections[label], (label, sections[label])


def test_feedback_shows_no_check_code(graded) -> None:
    for path in graded.feedback.glob("*.txt"):
        text = path.read_text()
        assert "def test_" not in text and "assert " not in text and 'File "' not in text


def _numbers(value) -> list[float]:
    """The numbers of an answer (not of traces: those are checked against runs)."""
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        return []
    if isinstance(value, (int, float, np.number)):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.size <= 16):
        return [x for v in value for x in _numbers(v)]
    return []


def test_feedback_does_not_give_the_reference_answers_away(graded) -> None:
    reference = graded.results["reference.ipynb"].answers
    assert set(reference) >= {q.answer[0] for q in graded.questions.values()}
    # what the student already has: the notebook's text, their own answers
    known = graded.files.student.read_text() + graded.folder.joinpath("wrong_answers.ipynb").read_text()
    text = (graded.feedback / "wrong_answers.txt").read_text().split("Score:")[1]
    for name, value in reference.items():
        for x in _numbers(value):
            for spec in (".2g", ".3g", ".4g", ".2f"):
                shown = format(x, spec)
                if len(shown.lstrip("-0.")) >= 2 and shown not in known:
                    assert shown not in text, (name, x, shown, text)


# -- the autograder zip on its own: what otter's grading image installs -----------

ZIP_CHAPTER = "07_gradient_clipping"  # the fastest to grade


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def zip_env(tmp_path_factory: pytest.TempPathFactory):
    """A clean virtualenv made from the autograder zip's own files.

    As otter's setup.sh builds the grading image (Docker, Gradescope) from
    the zip's environment.yml, without conda or Docker: Python (this one's
    version, which environment.yml names), then its pip list, in which the
    book's package is the wheel inside the zip. The environment is kept in
    .envs/ while those requirements do not change (as make test-envs keeps
    its own); the package itself is reinstalled from the zip every time.

    Made anew (a fresh CI machine), it is the suite's second-longest set-up
    (103 s in a fresh-clone CI run at 22f3e27, byte-compiling included;
    then about 20 s for the test). ``make test`` runs it; ``-m "not
    zipenv"`` leaves it out.
    """
    out = tmp_path_factory.mktemp("zip")
    chapter = ROOT / "chapters" / f"{ZIP_CHAPTER}.md"
    files = assign(chapter, out / "assignment", book=ROOT)
    source = out / "source"  # where the image unpacks it: /autograder/source
    with zipfile.ZipFile(files.autograder) as archive:
        archive.extractall(source)
    environment = yaml.safe_load((source / "environment.yml").read_text())
    python = [d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert python == [f"python={sys.version_info.major}.{sys.version_info.minor}"]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    # The image takes torch's CPU wheels from PyTorch's index; here (no
    # internet but the registries) the constraint below pins the machine's
    # CPU wheel instead.
    index = "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert index in pip, pip
    pip = [r for r in pip if r != index]
    requirements = [r.replace("/autograder/source", str(source)) for r in pip]
    wheel = next(r for r in requirements if r.startswith("explodebook"))
    assert "/files/explodebook-" in wheel and (source / "files").is_dir()
    torch_cpu = ROOT / "tests" / "envs" / "torch-cpu.txt"  # the machine's CPU wheel of torch
    key = hashlib.sha256(
        "\n".join([r for r in pip if not r.startswith("explodebook")] + [
            re.sub(r" @ .*", "", wheel), torch_cpu.read_text(), sys.version])
        .encode()
    ).hexdigest()[:12]
    env = ROOT / ".envs" / f"autograder-{key}"
    venv_python = env / "bin" / "python"
    # One test run at a time makes or updates it (two runs of this checkout
    # at once would otherwise both install into the same folder).
    env.parent.mkdir(exist_ok=True)
    # pip sees the distributions on PYTHONPATH as installed: with this checkout
    # there (its explodebook.egg-info), it skipped the zip's wheel.
    outside = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    with FileLock(f"{env}.lock"):
        if not (env / ".installed").exists():
            shutil.rmtree(env, ignore_errors=True)
            _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(env)])
            # --no-compile: the test imports a small part of what it installs
            # (byte-compiling all of it doubled the install's CPU time).
            _run([str(venv_python), "-m", "pip", "install", "--quiet", "--no-compile",
                  "-c", str(torch_cpu), *requirements], timeout=3000, env=outside)
            (env / ".installed").touch()
        else:
            _run([str(venv_python), "-m", "pip", "install", "--quiet", "--no-deps",
                  "--force-reinstall", wheel.split(" @ file://")[1]], env=outside)
    home = out / "home"
    home.mkdir()
    clean = {"PATH": f"{env / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
             "MPLBACKEND": "agg", "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
             "JUPYTER_DATA_DIR": str(home / "jupyter")}
    return SimpleNamespace(files=files, python=venv_python, env=clean, cwd=home, out=out)


@pytest.mark.zipenv
def test_the_autograder_zip_installs_the_package_it_grades_with(zip_env) -> None:
    done = _run([str(zip_env.python), "-c",
                 "import explodebook, otter, torch, keras, pandas; print(explodebook.__file__)"],
                env=zip_env.env, cwd=zip_env.cwd)
    assert done.stdout.strip().startswith(str(zip_env.python.parents[1]))  # not this checkout
    # otter's own grading, as `otter grade` and Gradescope run it in the image
    script = ("import sys; from otter.run import main; "
              "r = main(sys.argv[1], autograder=sys.argv[2], output_dir=sys.argv[3], no_logo=True); "
              "print('SCORE', r.total, r.possible)")
    done = _run([str(zip_env.python), "-c", script, str(zip_env.files.solution),
                 str(zip_env.files.autograder), str(zip_env.out)],
                env=zip_env.env, cwd=zip_env.cwd, timeout=900)
    score = [line.split() for line in done.stdout.splitlines() if line.startswith("SCORE")]
    assert score and float(score[-1][1]) == float(score[-1][2]) > 0, done.stdout[-2000:]
    # the book's sandboxed grader, from the zip's package alone
    folder = zip_env.out / "handed-in"
    folder.mkdir()
    shutil.copy(zip_env.files.solution, folder / "reference.ipynb")
    csv = zip_env.out / "grades.csv"
    _run([str(zip_env.python), "-m", "explodebook.coursework", "grade",
          str(zip_env.files.autograder), str(folder), "--csv", str(csv)],
         env=zip_env.env, cwd=zip_env.cwd, timeout=900)
    table = pd.read_csv(csv, keep_default_na=False)
    assert list(table["status"]) == ["graded"]
    assert table["total"][0] == table["possible"][0] > 0
