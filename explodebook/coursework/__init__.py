"""Tools for instructors: the student edition of the book.

``python -m explodebook.coursework student-config`` writes the Jupyter Book
configuration of the *student edition*: the book's own ``_config.yml`` with
every exercise solution removed (sphinx-exercise's ``hide_solutions``) and
the execution cache shared with the full edition, so that building both
executes each chapter once. ``make book-student`` uses it.
"""

from __future__ import annotations

from explodebook.coursework.edition import student_config, write_student_config

__all__ = ["student_config", "write_student_config"]
