"""A chapter as an otter-grader assignment.

One source of truth: the question text and the reference answer are the
chapter's own ``exercise`` and ``solution`` directives. A small YAML file
per chapter, ``explodebook/coursework/checks/<chapter>.yml``, adds only what
a grader needs and the book does not show: which exercises are autograded,
the name(s) the answer is stored in, points, and the checks. Exercises
without an entry become free-response questions, graded by hand, with the
chapter's solution in the instructor's notebook.

``assign(chapter, out)`` writes a *master notebook* in otter-grader's
format (the chapter's prose and experiments, then the exercises as
questions) and runs ``otter assign`` on it, which produces

- ``out/student/<chapter>.ipynb``: answer cells blanked, public checks
  (``grader.check("label")``) the student can run;
- ``out/autograder/<chapter>.ipynb``: the reference solutions;
- ``out/autograder/autograder.zip``: every check, hidden ones included,
  for `explodebook.coursework.grading` (and for ``otter run``, ``otter
  grade`` or Gradescope). It installs what the notebooks need: its
  ``environment.yml`` (what otter's ``setup.sh`` builds the grading image
  from) and ``requirements.txt`` list the book's package with both
  frameworks, as a wheel built from this checkout and shipped in the zip
  (``files/explodebook-*.whl``), so the image grades with the very code the
  checks were written against.

Grading re-executes a submission. So that one notebook grades in seconds,
only the chapter's first code cell (set-up), its cells that only import,
and the answer cells run when grading; the chapter's experiments carry
otter's ``otter_ignore`` tag. An autograded answer cell must therefore be
self-contained apart from those names, and the question says so (its
``given`` code repeats what it needs from later cells). Code between an
exercise and its solution computes what the solution quotes: it is part of
the solution, and left out (`explodebook.coursework.cells`).

The grading files are read by `explodebook.coursework.questions`; what the
grading image installs is `explodebook.coursework.packaging`.
"""

from __future__ import annotations

import ast
import shutil
import sys
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from explodebook.coursework.myst import (
    Exercise,
    cite_labels,
    glued_values,
    split_exercises,
    to_jupyter_markdown,
)
from explodebook.book.publish import Repository
from explodebook.book.sources import read_config as book_config
from explodebook.coursework.cells import imports_only, join_solutions
from explodebook.coursework.packaging import grading_requirements, package_wheel
from explodebook.coursework.questions import (  # Check, Question: also imported from here
    MANUAL_POINTS,
    Check,
    Question,
    checks_file,
    load_questions,
)

__all__ = ["AssignmentFiles", "master_notebook", "assign"]

#: Code cells with this tag are skipped when otter grades a notebook.
IGNORE_TAG = "otter_ignore"


@dataclass(frozen=True)
class AssignmentFiles:
    """What `assign` wrote."""

    student: Path
    solution: Path
    autograder: Path
    master: Path
    questions: list[str] = field(default_factory=list)


def _assigned_names(code: str) -> set[str]:
    """Names a code block assigns at its top level or in its loops."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, ast.For):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
    return names


def _reference_code(exercise: Exercise, question: Question, chapter: Path) -> str:
    """The solution's code, checked to define the answer's names."""
    blocks = exercise.solution_code
    if not blocks and not question.store:
        raise ValueError(
            f"{chapter.name}: exercise {exercise.label!r} is autograded but its solution has "
            "no ```python block to serve as the reference answer"
        )
    code = "\n\n".join(blocks)
    if question.store:
        tree = ast.parse(question.store)
        if not all(isinstance(node, (ast.Assign, ast.AnnAssign)) for node in tree.body):
            raise ValueError(
                f"{checks_file(chapter).name}: the store of {exercise.label!r} may only assign "
                "the answer's names (the solution's code does the work)"
            )
        code += "\n\n# the answer, stored for grading\n" + question.store
    missing = [name for name in question.answer if name not in _assigned_names(code)]
    if missing:
        raise ValueError(
            f"{chapter.name}: the solution of {exercise.label!r} must assign {missing} "
            f"(the answer names in {checks_file(chapter).name})"
        )
    return code


def _raw(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_raw_cell(text)


def _markdown(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def _code(text: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text)
    if tags:
        cell.metadata["tags"] = tags
    return cell


def _autograded(
    exercise: Exercise, question: Question, number: int, chapter: Path, md: Any
) -> list[nbformat.NotebookNode]:
    reference = _reference_code(exercise, question, chapter)
    placeholder = "\n".join(f"{name} = ..." for name in question.answer)
    if question.given:
        placeholder = f"{question.given}\n\n{placeholder}"
        reference = f"{question.given}\n\n{reference}"
    points = f"{question.points} point{'s' if question.points != 1 else ''}"
    prompt = (
        f"**Exercise {number}** ({points}, autograded)\n\n{md(exercise.prompt)}"
        f"\n\n**Your answer:** {md(question.instructions)} The answer cell may use the names "
        "the chapter's first code cell defines; define everything else it needs in the cell "
        "itself (grading runs only that first cell and the answer cells). Then run the check "
        "below it."
    )
    solution = (
        f"# BEGIN SOLUTION NO PROMPT\n{reference}\n# END SOLUTION\n"
        f'""" # BEGIN PROMPT\n{placeholder}\n""" # END PROMPT'
    )
    return [
        _raw(f"# BEGIN QUESTION\nname: {question.label}\npoints: {question.points}"
             + ("\nall_or_nothing: true" if question.all_or_nothing else "")),
        _markdown(prompt),
        _raw("# BEGIN SOLUTION"),
        _code(solution),
        _raw("# END SOLUTION"),
        _raw("# BEGIN TESTS"),
        *[_code(check.cell_source()) for check in question.checks],
        _raw("# END TESTS"),
        _raw("# END QUESTION"),
    ]


def _manual(exercise: Exercise, number: int, md: Any) -> list[nbformat.NotebookNode]:
    solution = md(exercise.solution) if exercise.solution else "(no reference solution)"
    return [
        _raw(f"# BEGIN QUESTION\nname: {exercise.label}\nmanual: true\npoints: {MANUAL_POINTS}"),
        _markdown(
            f"**Exercise {number}** ({MANUAL_POINTS} point, graded by hand)\n\n"
            f"{md(exercise.prompt)}"
        ),
        _raw("# BEGIN SOLUTION"),
        _markdown(solution),
        _raw("# END SOLUTION"),
        _raw("# END QUESTION"),
    ]


# The chapters glue numbers into the book's prose with MyST-NB; a notebook
# opened elsewhere (Colab) may not have it, and needs no glue.
_GLUE_FALLBACK = """\
try:
    from myst_nb import glue  # records numbers for the book's prose
except ImportError:  # not building the book: nothing to record
    def glue(name, value, display=True):
        return None
"""


def _setup_cell(code: str, notebook: str, install_spec: str) -> str:
    """The chapter's first cell, made to run outside the book's environment too."""
    install = textwrap.dedent(
        f"""\
        # Set-up. Outside the book's environment (e.g. on Colab) this first
        # installs the companion package and the grader.
        import importlib.util

        if not all(importlib.util.find_spec(m) for m in ("explodebook", "otter")):
            %pip install -q otter-grader "{install_spec}"

        import os

        import otter

        # The checks live in this notebook's metadata. A renamed copy finds
        # itself when it is the only notebook in its folder (and grading
        # needs no name).
        grader = otter.Notebook("{notebook}" if os.path.exists("{notebook}") else None)
        """
    )
    return install + "\n" + code


def master_notebook(
    chapter: str | Path,
    *,
    book: str | Path = ".",
    questions: dict[str, Question] | None = None,
) -> nbformat.NotebookNode:
    """The otter-grader master notebook of a chapter.

    Args:
        chapter: the chapter's MyST Markdown file.
        book: the book's directory: its ``_config.yml`` (repository URL),
            ``references.bib`` (citations) and, if the book was built,
            ``_build/jupyter_execute`` (the chapter's glued numbers) and
            its execution cache (the values of its ``{eval}`` expressions).
        questions: the autograded questions; default `load_questions`.

    Raises:
        ValueError: the grading file names an exercise the chapter does not
            have, or a reference solution does not define its answer.
    """
    import jupytext

    chapter, book = Path(chapter), Path(book)
    questions = load_questions(chapter) if questions is None else questions
    settings = book_config(book)
    # the same package the book's Colab/Binder notebooks install
    install_spec = Repository.from_config(settings).install_spec
    rel = chapter.resolve().relative_to(book.resolve()) if chapter.is_absolute() else chapter
    glue = glued_values(book / "_build" / "jupyter_execute" / rel.with_suffix(".glue.json"))
    citations = cite_labels(book / "references.bib")
    from explodebook.book import expressions  # the book's tooling, only here

    evals = expressions.values(expressions.cached_outputs(chapter, book))

    def md(text: str) -> str:
        return to_jupyter_markdown(text, glue, citations, evals)

    source = jupytext.read(chapter)
    cells: list[nbformat.NotebookNode] = [
        _raw(
            "# ASSIGNMENT CONFIG\n"
            + yaml.safe_dump(
                {
                    "name": chapter.stem,
                    "init_cell": False,
                    "check_all_cell": True,
                    "export_cell": False,
                    "run_tests": False,
                    "tests": {"ok_format": False},
                }
            )
        ),
        _markdown(
            f"*This assignment is chapter `{chapter.stem}` of the Exploding Gradients book. "
            "Run the cells in order; the experiments take a little while on a laptop CPU. "
            "Answer each exercise in its answer cell and run the check under it: public "
            "checks tell you whether your answer has the right form; more checks run when "
            "your notebook is graded.*"
        ),
    ]
    seen: set[str] = set()
    first_code = True
    number = 0
    for cell in join_solutions(source.cells):
        if cell.cell_type == "code":
            code = cell.source
            if first_code:
                code = code.replace("from myst_nb import glue\n", _GLUE_FALLBACK)
                cells.append(_code(_setup_cell(code, f"{chapter.stem}.ipynb", install_spec)))
                first_code = False
            elif imports_only(code):  # cheap, and the answers need the names
                cells.append(_code(code))
            else:
                cells.append(_code(code, [IGNORE_TAG]))
            continue
        if cell.cell_type != "markdown":
            continue
        for segment in split_exercises(cell.source):
            if segment.exercise is None:
                cells.append(_markdown(md(segment.text)))
                continue
            number += 1
            label = segment.exercise.label
            seen.add(label)
            if label in questions:
                cells += _autograded(segment.exercise, questions[label], number, chapter, md)
            else:
                cells += _manual(segment.exercise, number, md)
    unknown = sorted(set(questions) - seen)
    if unknown:
        raise ValueError(
            f"{checks_file(chapter).name} grades {unknown}, but {chapter.name} has no "
            f"exercise with that label (it has {sorted(seen)})"
        )
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata.update(
        kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
        language_info={"name": "python"},
    )
    return notebook


def assign(chapter: str | Path, out: str | Path, *, book: str | Path = ".") -> AssignmentFiles:
    """Turn a chapter into an otter-grader assignment in ``out``.

    Writes ``out/source/<chapter>.ipynb`` (the master notebook) and runs
    ``otter assign`` on it; see the module's docstring for what it makes.
    ``out`` is emptied first.
    """
    from otter.assign import main as otter_assign

    chapter, out = Path(chapter), Path(out)
    if not chapter.exists():
        raise FileNotFoundError(f"no chapter at {chapter}")
    notebook = master_notebook(chapter, book=book)
    if out.exists():
        shutil.rmtree(out)
    master = out / "source" / f"{chapter.stem}.ipynb"
    master.parent.mkdir(parents=True)
    # what the grading image installs (otter's environment.yml, setup.sh)
    wheel = package_wheel()
    if wheel is not None:
        shutil.copy(wheel, master.parent / wheel.name)
    install_spec = Repository.from_config(book_config(Path(book))).install_spec
    requirements = grading_requirements(wheel.name if wheel else None, install_spec)
    (master.parent / "requirements.txt").write_text("\n".join(requirements) + "\n")
    config = notebook.cells[0]
    settings = yaml.safe_load(config.source.split("\n", 1)[1])
    settings.update(
        requirements="requirements.txt",
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        autograder_files=[wheel.name] if wheel is not None else [],
    )
    config.source = "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(settings)
    nbformat.write(notebook, master)
    otter_assign(str(master), str(out), no_pdfs=True, no_run_tests=True)
    zips = sorted((out / "autograder").glob("*-autograder_*.zip"))
    if len(zips) != 1:
        raise RuntimeError(f"otter assign wrote {len(zips)} autograder zips in {out / 'autograder'}")
    autograder = zips[0].rename(out / "autograder" / "autograder.zip")
    with zipfile.ZipFile(autograder, "a") as archive:  # for a plain pip install too
        if "requirements.txt" not in archive.namelist():
            archive.writestr("requirements.txt", "\n".join(requirements) + "\n")
    return AssignmentFiles(
        student=out / "student" / f"{chapter.stem}.ipynb",
        solution=out / "autograder" / f"{chapter.stem}.ipynb",
        autograder=autograder,
        master=master,
        questions=sorted(load_questions(chapter)),
    )
