"""Moved to `explodebook.book.publish` (and `explodebook.book.sources`).

Kept only for ``explodebook.coursework.assignment``, which still imports
``Repository`` and ``book_config`` from here; remove this module once it
imports ``explodebook.book.publish.Repository`` and
``explodebook.book.sources.read_config`` instead. The command line is
``python -m explodebook.book.publish``.
"""

from explodebook.book.publish import Repository
from explodebook.book.sources import read_config as book_config

__all__ = ["Repository", "book_config"]
