"""The translated editions' student edition, catalog headers, search words and Sphinx extension.

``explodebook.book.i18n.edition_config`` makes the configuration of an
edition in another language (or of the gettext build of the English text);
this module adds what such an edition needs beyond Sphinx's own
translation of each page:

- the *student edition* in that language: the student configuration of
  `explodebook.coursework.edition.student_config` (no solutions, no
  sources), then ``explodebook.book.i18n.edition_config`` on top, so both keep
  a single definition (`student_edition_config`);
- the catalogs' headers naming the book (`write_catalog_headers`, run by
  ``explodebook.book.i18n.update_catalogs``);
- a Sphinx extension, loaded by every configuration ``edition_config`` writes
  (``setup``):

  - sphinx-exercise's titles in the edition's language. sphinx-exercise
    translates its labels through a gettext domain of its own,
    ``exercise``, and ships a Chinese catalog for "Exercise" and
    "Solution to", but not for the plain "Solution" title that
    ``exercise_style: solution_follow_exercise`` gives every solution. The
    book's catalogs add it: ``locales/<language>/LC_MESSAGES/exercise.po``,
    compiled by Sphinx with the page catalogs and registered as a fallback
    of sphinx-exercise's own catalog (Sphinx's ``sphinx.locale.init``, what
    ``app.add_message_catalog`` calls) before any page is read;
  - measurements stay out of translation. Text included from
    `MEASURED` folders (``benchmarks/*_results.md``, re-written by every
    ``make bench``) gets Sphinx's ``translatable = False`` node attribute,
    which both the gettext builder's extraction and the translation of a
    page honour: a new measurement does not turn a page's messages
    untranslated, and the tables show as measured, in English;
  - Chinese search: Sphinx splits Chinese text into words with jieba
    (``sphinx.search.zh``) when it can be imported and otherwise indexes
    Latin words only, silently; the extension makes that an error, and
    gives jieba the glossary's terms (`search_words`) through
    ``html_search_options["dict"]``, so that a term such as 梯度裁剪 is
    one word of the index and not only 梯度 and 裁剪.

Command line (``zh.mk`` uses it)::

    python -m explodebook.book.editions student-config _build/student_zh_config.yml --language zh_CN
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from explodebook.book import i18n

__all__ = [
    "EXTENSION_CATALOGS",
    "MEASURED",
    "STUDENT_SUFFIXES",
    "search_words",
    "setup",
    "student_edition_config",
    "write_catalog_headers",
    "write_student_edition_config",
]

#: Appended to the edition's title in its student edition (English:
#: `explodebook.coursework.edition.STUDENT_SUFFIX`).
STUDENT_SUFFIXES = {"zh_CN": "（学生版）"}

#: Folders (relative to the book) whose included text is never translated.
MEASURED = ("benchmarks",)

#: Gettext domains of Sphinx extensions that the book's catalogs complete.
EXTENSION_CATALOGS = ("exercise",)

# Sphinx's name for an unnamed project, as a header comment wraps it.
_UNNAMED = re.compile(r"Project\s+(?:#\s*)?name\s+(?:#\s*)?not\s+(?:#\s*)?set")
# A glossary table row: | English | 中文 | Note |
_ROW = re.compile(r"^\|([^|\n]*)\|([^|\n]*)\|", re.M)
_HAN = re.compile(r"[\u4e00-\u9fff]{2,}")
# A parenthetical in full-width or ASCII parentheses.
_ASIDE = re.compile(r"（[^）]*）|\([^)]*\)")


def student_edition_config(config: dict[str, Any], language: str | None, cache_dir: str | Path) -> dict[str, Any]:
    """The student edition of the book in ``language`` (None: English).

    Args:
        config: the parsed ``_config.yml`` of the English book (not modified).
        language: as for ``explodebook.book.i18n.edition_config``.
        cache_dir: the English book's execution cache.

    Returns:
        ``explodebook.book.i18n.edition_config`` of the student configuration
        (`explodebook.coursework.edition.student_config`), titled as the
        edition's student edition.
    """
    from explodebook.coursework.edition import STUDENT_SUFFIX, student_config

    out = i18n.edition_config(student_config(config, cache_dir), language, cache_dir)
    if language is not None:
        out["title"] = str(out.get("title", "")) + STUDENT_SUFFIXES.get(language, STUDENT_SUFFIX)
    return out


def write_student_edition_config(book: str | Path, language: str | None, output: str | Path) -> Path:
    """Write `student_edition_config` of ``book``'s ``_config.yml`` to ``output`` (YAML).

    The same as ``explodebook.book.i18n.write_edition_config`` (same execution
    cache), with the student edition's changes.
    """
    return i18n.write_edition_config(book, language, output, make=student_edition_config)


def write_catalog_headers(book: str | Path, language: str, pages: Sequence[str] | None = None) -> list[Path]:
    """Name the book (``_config.yml``'s title, the package's version) in the catalogs' headers.

    Sphinx's templates leave the project unnamed ("Project name not set"),
    and ``sphinx-intl update`` keeps an existing catalog's header.

    Args:
        book: the book's directory.
        language: the catalogs' language.
        pages: the catalogs to look at, by page (``chapters/05_relu``);
            None: every catalog of the language.

    Returns:
        The catalogs rewritten (none when every header names the book).
    """
    from babel.messages.pofile import read_po, write_po

    from explodebook import __version__
    from explodebook.book.sources import read_config

    title = str(read_config(book).get("title") or "")
    changed = []
    if pages is None:
        paths = sorted((Path(book) / i18n.LOCALES / language / "LC_MESSAGES").rglob("*.po"))
    else:
        paths = [i18n.catalog_path(book, language, page) for page in pages]
    for path in paths:
        with open(path, "rb") as f:
            catalog = read_po(f)
        comment = _UNNAMED.sub(title, catalog.header_comment)
        if (catalog.project, catalog.version, catalog.header_comment) == (title, __version__, comment):
            continue
        catalog.project, catalog.version, catalog.header_comment = title, __version__, comment
        with open(path, "wb") as f:
            write_po(f, catalog, width=76)  # sphinx-intl's width
        changed.append(path)
    return changed


def search_words(book: str | Path) -> list[str]:
    """The Chinese terms of the glossary (``glossary.md``), for jieba's word list.

    Each table row's second cell holds a term, or several separated by
    ``/``; a parenthetical (an abbreviation, an explanation) is left out.
    """
    words: dict[str, None] = {}
    for _, chinese in _ROW.findall((Path(book) / "glossary.md").read_text(encoding="utf-8")):
        for part in chinese.split("/"):
            for word in _HAN.findall(_ASIDE.sub(" ", part)):
                words[word] = None
    return list(words)


def _chinese_search(app: Any, config: Any) -> None:
    """Give jieba the glossary's terms; fail if it cannot split Chinese."""
    language = config.html_search_language or config.language or ""
    if not language.startswith("zh"):
        return
    try:
        import jieba  # noqa: F401  (sphinx.search.zh imports it the same way)
    except ImportError:
        from sphinx.errors import ExtensionError

        raise ExtensionError(
            "the Chinese edition's search needs jieba (pip install jieba; it is in requirements.txt): "
            "without it Sphinx indexes no Chinese word"
        ) from None
    options = dict(config.html_search_options or {})
    if "dict" not in options:
        path = Path(app.doctreedir) / "search_words.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{word}\n" for word in search_words(app.srcdir)), encoding="utf-8")
        options["dict"] = str(path)
        config.html_search_options = options


def _extension_catalogs(app: Any, env: Any, docnames: list[str]) -> None:
    """Register the book's catalogs of `EXTENSION_CATALOGS` (compiled by now)."""
    from sphinx.locale import init

    if not app.config.language or app.config.language == "en":
        return
    folders = [str(Path(app.srcdir) / folder) for folder in app.config.locale_dirs]
    for catalog in EXTENSION_CATALOGS:
        init(folders, app.config.language, catalog)


def _measured(source: str | None, folders: list[Path]) -> bool:
    if not source:
        return False
    path = Path(source).resolve()
    return any(path == folder or folder in path.parents for folder in folders)


def setup(app: Any) -> dict[str, Any]:
    """The Sphinx extension of the translated editions and the gettext build.

    Loaded through ``sphinx.extra_extensions`` of the configuration
    ``explodebook.book.i18n.edition_config`` writes; not by the English book.
    """
    from docutils import nodes
    from sphinx.transforms import SphinxTransform

    class KeepMeasuredInEnglish(SphinxTransform):
        """Mark text included from `MEASURED` folders untranslatable."""

        # Before Sphinx's translation of the page (sphinx.transforms.i18n.Locale: 20).
        default_priority = 10

        def apply(self, **kwargs: Any) -> None:
            folders = [(Path(self.env.srcdir) / folder).resolve() for folder in MEASURED]
            # An included table has the file as its source, but MyST gives
            # its cells the including page's: everything inside counts.
            for element in list(self.document.findall(nodes.Element)):
                if _measured(element.source, folders):
                    for node in element.findall(nodes.TextElement):
                        node["translatable"] = False

    app.add_transform(KeepMeasuredInEnglish)
    app.connect("config-inited", _chinese_search)
    app.connect("env-before-read-docs", _extension_catalogs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explodebook.book.editions", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student-config", help="write the student edition's configuration in a language")
    student.add_argument("output")
    student.add_argument("--language", help="the edition's language; none: English")
    student.add_argument("--book", default=".")
    args = parser.parse_args(argv)
    print(write_student_edition_config(args.book, args.language, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
