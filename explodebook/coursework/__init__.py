"""Tools for instructors: the student edition, assignments and grading.

``python -m explodebook.coursework student-config`` writes the Jupyter Book
configuration of the *student edition*: the book's own ``_config.yml`` with
every exercise solution removed (sphinx-exercise's ``hide_solutions``) and
the execution cache shared with the full edition, so that building both
executes each chapter once. ``make book-student`` uses it.

``assign`` turns a chapter into an otter-grader assignment
(`explodebook.coursework.assignment`); ``grade`` grades a class's notebooks
(`explodebook.coursework.grading`): each runs in a sandbox
(`explodebook.coursework.sandbox`, `explodebook.coursework.runner`) that
hands back answer values as JSON (`explodebook.coursework.answers`), scored
in the grader by the assignment's checks (`explodebook.coursework.scoring`);
`explodebook.coursework.submissions` reads the platforms' downloads.
"""

from __future__ import annotations

from explodebook.coursework.edition import student_config, write_student_config

__all__ = ["student_config", "write_student_config"]
