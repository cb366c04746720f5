"""Translated editions of the book: their build configuration and the state of their gettext catalogs.

The English chapters are the only source. Sphinx's ``gettext`` builder
extracts every translatable message of every page (paragraphs, list items,
headings, figure captions, admonition and dropdown titles, tab labels,
exercise and solution text) into ``.pot`` templates; ``sphinx-intl update``
merges them into one catalog per page,
``locales/<language>/LC_MESSAGES/<page>.po``; a build with ``language`` set
reads the catalogs (compiled to ``.mo``) and shows each page translated
wherever a message has a translation that is not fuzzy. A message whose
English text changed comes back fuzzy or untranslated, and shows in English
until it is translated again.

A message keeps the page's MyST markup verbatim: roles such as
``{numref}`fig-x``` and ``{cite}`key```, inline expressions
``{eval}`expr``` (rendered from the execution cache in the translated
paragraph too: `explodebook.book.sphinxext`), math and inline code. A
translation must keep every one of them (`markup_mismatches`); only the
display text of a cross-reference (``{ref}`text <target>```) is translated.

Command line (``zh.mk`` uses it)::

    python -m explodebook.book.i18n config _build/zh_config.yml --language zh_CN
    python -m explodebook.book.i18n update zh_CN _build/i18n/_build/gettext
    python -m explodebook.book.i18n stats zh_CN
    python -m explodebook.book.i18n link-editions _build/html zh
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explodebook.book.figurecache import edition_cache

__all__ = [
    "CatalogStats",
    "ENGLISH_ONLY",
    "EXTENSION",
    "LOCALES",
    "catalog_path",
    "catalog_stats",
    "link_editions",
    "edition_config",
    "markup",
    "markup_mismatches",
    "translated_pages",
    "update_catalogs",
    "write_edition_config",
    "write_edition_toc",
]

#: The folder of the catalogs, relative to the book (Sphinx's ``locale_dirs``).
LOCALES = "locales"

#: The Sphinx extension every edition's configuration loads.
EXTENSION = "explodebook.book.editions"

#: The Sphinx extension that gives a language edition its figures in that language.
FIGURES_EXTENSION = "explodebook.book.figurecache"

#: Each edition's title (the English title stays the same in every language).
TITLES = {"zh_CN": "Exploding Gradients 中文版"}

#: Pages every edition shows in English, so they have no catalog: the API
#: reference is generated from the package's docstrings (about 1,400
#: messages, changed by every docstring edit), and its names are code.
ENGLISH_ONLY = ("api",)

# A MyST role with its content: {name}`content`.
_ROLE = re.compile(r"\{([A-Za-z][\w:.+-]*)\}`([^`]*)`")
# Display math ($$...$$, possibly over lines) before inline math ($...$).
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+?\$", re.DOTALL)
_CODE = re.compile(r"``[^`]+``|`[^`\n]+`")
# A cross-reference with display text: "text <target>".
_TARGET = re.compile(r"^.*<([^<>]+)>\s*$", re.DOTALL)


def edition_config(config: dict[str, Any], language: str | None, cache_dir: str | Path) -> dict[str, Any]:
    """The configuration of the edition of the book in ``language``.

    Args:
        config: the parsed ``_config.yml`` of the English book (not modified).
        language: a Sphinx language code with catalogs in `LOCALES`, e.g.
            ``zh_CN``; None for the English text (the gettext build).
        cache_dir: the English book's execution cache (made absolute): the
            edition reads the same cache, so nothing is executed twice.

    Returns:
        A new configuration with ``execute.cache`` pointing at ``cache_dir``,
        the editions' Sphinx extension (`EXTENSION`) and, for a language,
        Sphinx's ``language`` and the edition's title.

    Raises:
        ValueError: ``config`` reads no catalogs (``locale_dirs`` is not set).
    """
    sphinx_config = (config.get("sphinx") or {}).get("config") or {}
    if LOCALES not in (sphinx_config.get("locale_dirs") or []):
        raise ValueError(
            f"_config.yml's sphinx.config.locale_dirs does not list {LOCALES!r}, "
            "so no translation would be read; add it (see the README's Chinese edition section)"
        )
    out = copy.deepcopy(config)
    # explodebook.book.editions: exercise labels, measured tables, search.
    extensions = out["sphinx"].setdefault("extra_extensions", [])
    if EXTENSION not in extensions:
        extensions.append(EXTENSION)
    if language is not None:
        out["sphinx"]["config"]["language"] = language
        out["title"] = TITLES.get(language, f"{out.get('title', '')} ({language})")
        # The figures in the language, without executing anything: the
        # build starts by copying the English cache into the edition's own,
        # each figure redrawn (explodebook.book.figurecache).
        out["sphinx"]["config"]["explodebook_figures_from"] = str(Path(cache_dir).resolve())
        extensions.append(FIGURES_EXTENSION)
        cache_dir = edition_cache(cache_dir, language)
    out.setdefault("execute", {})["cache"] = str(Path(cache_dir).resolve())
    return out


def write_edition_config(
    book: str | Path, language: str | None, output: str | Path, make: Callable[..., dict[str, Any]] = edition_config
) -> Path:
    """Write `edition_config` of ``book``'s ``_config.yml`` to ``output`` (YAML).

    The execution cache is the one ``make book`` fills,
    ``<book>/_build/.jupyter_cache`` (or ``execute.cache`` if set).
    ``make`` is called as `edition_config` is, and builds on it (the
    student edition: `explodebook.book.editions.student_edition_config`).
    """
    import yaml

    book = Path(book)
    config = yaml.safe_load((book / "_config.yml").read_text(encoding="utf-8"))
    cache = (config.get("execute") or {}).get("cache") or "_build/.jupyter_cache"
    cache_dir = Path(cache) if Path(cache).is_absolute() else book / cache
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(make(config, language, cache_dir), sort_keys=False, allow_unicode=True)
    output.write_text("# Generated by python -m explodebook.book.i18n: do not edit.\n" + text, encoding="utf-8")
    return output


def write_edition_toc(book: str | Path, language: str, output: str | Path) -> Path:
    """Write ``book``'s ``_toc.yml`` with its part captions translated to ``output``.

    The captions are messages of the root page's catalog, but Sphinx cannot
    translate them: sphinx-external-toc inserts the toctrees after Sphinx's
    translation step. The edition's build reads this table of contents
    instead (``jupyter-book build --toc``); a caption without a translation
    stays English.
    """
    import yaml
    from babel.messages.pofile import read_po

    book = Path(book)
    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    translations: dict[str, str] = {}
    root_catalog = catalog_path(book, language, toc["root"])
    if root_catalog.exists():
        with open(root_catalog, "rb") as f:
            translations = {m.id: m.string for m in read_po(f) if m.id and m.string and not m.fuzzy}
    for part in toc.get("parts", []):
        if part.get("caption") in translations:
            part["caption"] = translations[part["caption"]]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(toc, sort_keys=False, allow_unicode=True)
    output.write_text("# Generated by python -m explodebook.book.i18n: do not edit.\n" + text, encoding="utf-8")
    return output


def catalog_path(book: str | Path, language: str, page: str) -> Path:
    """The catalog of ``page`` (a toc path without suffix, e.g. ``chapters/05_relu``)."""
    return Path(book) / LOCALES / language / "LC_MESSAGES" / f"{page}.po"


def translated_pages(book: str | Path, language: str) -> list[str]:
    """The pages listed as translated in ``locales/<language>/translated.txt``.

    One toc path (no suffix) per line; ``#`` starts a comment. The list grows
    until it holds every page of the book.
    """
    path = Path(book) / LOCALES / language / "translated.txt"
    pages = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pages.append(line)
    return pages


@dataclass(frozen=True)
class CatalogStats:
    """How much of one catalog is translated (messages, header excluded)."""

    path: Path
    translated: int
    fuzzy: int
    untranslated: int

    @property
    def total(self) -> int:
        """All messages of the catalog."""
        return self.translated + self.fuzzy + self.untranslated


def catalog_stats(path: str | Path) -> CatalogStats:
    """Count the translated, fuzzy and untranslated messages of a ``.po`` file.

    A fuzzy message (its English text changed since it was translated) counts
    as fuzzy even though it has a translation: Sphinx does not use it.
    """
    from babel.messages.pofile import read_po

    with open(path, "rb") as f:
        catalog = read_po(f)
    counts = Counter()
    for message in catalog:
        if not message.id:  # the header
            continue
        if message.fuzzy:
            counts["fuzzy"] += 1
        elif message.string:
            counts["translated"] += 1
        else:
            counts["untranslated"] += 1
    return CatalogStats(Path(path), counts["translated"], counts["fuzzy"], counts["untranslated"])


def update_catalogs(book: str | Path, language: str, pot_dir: str | Path) -> None:
    """Merge the ``.pot`` templates of the gettext build into the catalogs.

    ``sphinx-intl update`` does the merging: a new message is added
    untranslated, a message whose English text changed comes back fuzzy
    (with the old translation as a suggestion), a removed one is dropped.
    Templates of `ENGLISH_ONLY` pages are left out. The catalogs' headers
    then name the book (`explodebook.book.editions.write_catalog_headers`).
    """
    import subprocess

    pot_dir = Path(pot_dir)
    for page in ENGLISH_ONLY:
        (pot_dir / f"{page}.pot").unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "-m", "sphinx_intl", "update", "--pot-dir", str(pot_dir),
         "--locale-dir", str(Path(book) / LOCALES), "--language", language, "--no-obsolete"],
        check=True,
    )  # fmt: skip
    from explodebook.book.editions import write_catalog_headers

    pages = [pot.relative_to(pot_dir).with_suffix("").as_posix() for pot in sorted(pot_dir.rglob("*.pot"))]
    write_catalog_headers(book, language, pages)


def markup(text: str) -> Counter[str]:
    """The markup of a message a translation must keep, with multiplicity.

    Roles (by name and content; by name and target for a cross-reference with
    display text, ``{ref}`text <target>```), math and inline code.
    """
    found: Counter[str] = Counter()

    def role(match: re.Match[str]) -> str:
        name, content = match.group(1), match.group(2)
        target = _TARGET.match(content) if name != "eval" else None
        found[f"{{{name}}}`{target.group(1).strip() if target else content}`"] += 1
        return " "

    rest = _ROLE.sub(role, text)
    for pattern in (_MATH, _CODE):
        for match in pattern.finditer(rest):
            found[match.group(0)] += 1
        rest = pattern.sub(" ", rest)
    return found


def markup_mismatches(msgid: str, msgstr: str) -> list[str]:
    """What ``msgstr`` drops from, or adds to, the markup of ``msgid`` (empty if nothing)."""
    source, translation = markup(msgid), markup(msgstr)
    problems = [f"missing {item}" for item in sorted((source - translation).elements())]
    problems += [f"not in the English text: {item}" for item in sorted((translation - source).elements())]
    return problems


#: Where sphinx-book-theme puts a page's header buttons; the link goes first.
_HEADER_BUTTONS = '<div class="article-header-buttons">'
_LINK_CLASS = "edition-link"
#: Each edition's link to the other, in the language of the page it leads to.
_LINK_TEXT = {"en": "English", "zh_CN": "中文"}
_HREFLANG = {"en": "en", "zh_CN": "zh-CN"}


def _edition_link(href: str, language: str) -> str:
    text, hreflang = _LINK_TEXT[language], _HREFLANG[language]
    return (f'<a href="{href}" class="btn btn-sm {_LINK_CLASS}" hreflang="{hreflang}" lang="{hreflang}" '
            f'title="{text}">{text}</a>')  # fmt: skip


def link_editions(site: str | Path, folder: str = "zh", language: str = "zh_CN") -> int:
    """Link every page of a published site to the same page of the other edition.

    The English edition is at the root of ``site``, the edition in
    ``language`` under ``site/folder``. Every page of either that has a
    counterpart in the other gets a relative link to it, first among its
    header buttons (plain HTML: no script, nothing fetched from elsewhere).
    Pages already linked are left as they are, so running it twice is
    harmless.

    Returns:
        The number of pages given a link.
    """
    import os

    site = Path(site)
    edition = site / folder
    if not (edition / "index.html").is_file():
        raise FileNotFoundError(f"{edition} has no index.html: copy the {language} edition's HTML there first")
    linked = 0
    for page in sorted(edition.rglob("*.html")):
        rel = page.relative_to(edition)
        english = site / rel
        if not english.is_file():
            continue
        for source, target, target_language in ((english, page, language), (page, english, "en")):
            html = source.read_text(encoding="utf-8")
            if _HEADER_BUTTONS not in html or f'class="btn btn-sm {_LINK_CLASS}"' in html:
                continue
            href = Path(os.path.relpath(target, source.parent)).as_posix()
            html = html.replace(_HEADER_BUTTONS, _HEADER_BUTTONS + _edition_link(href, target_language), 1)
            source.write_text(html, encoding="utf-8")
            linked += 1
    return linked


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explodebook.book.i18n", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write the configuration of a translated edition")
    config.add_argument("output")
    config.add_argument("--language", help="the edition's language; none: the English text, for gettext")
    toc = commands.add_parser("toc", help="write _toc.yml with its captions translated")
    toc.add_argument("output")
    toc.add_argument("--language", required=True)
    toc.add_argument("--book", default=".")
    config.add_argument("--book", default=".")
    update = commands.add_parser("update", help="merge the gettext build's templates into the catalogs")
    update.add_argument("language")
    update.add_argument("pot_dir")
    update.add_argument("--book", default=".")
    link = commands.add_parser("link-editions", help="link each page of a site to its other edition")
    link.add_argument("site")
    link.add_argument("folder", nargs="?", default="zh")
    link.add_argument("--language", default="zh_CN")
    stats = commands.add_parser("stats", help="translated, fuzzy and untranslated messages per catalog")
    stats.add_argument("language")
    stats.add_argument("--book", default=".")
    args = parser.parse_args(argv)
    if args.command == "config":
        print(write_edition_config(args.book, args.language, args.output))
        return 0
    if args.command == "toc":
        print(write_edition_toc(args.book, args.language, args.output))
        return 0
    if args.command == "link-editions":
        print(f"{link_editions(args.site, args.folder, args.language)} pages linked to their other edition")
        return 0
    if args.command == "update":
        update_catalogs(args.book, args.language, args.pot_dir)
    folder = Path(args.book) / LOCALES / args.language / "LC_MESSAGES"
    rows = [catalog_stats(path) for path in sorted(folder.rglob("*.po"))]
    if not rows:
        print(f"no catalogs in {folder}: run `make catalogs` first", file=sys.stderr)
        return 1
    print(f"{'catalog':<48} {'translated':>10} {'fuzzy':>6} {'untranslated':>12}")
    for row in rows:
        print(f"{str(row.path.relative_to(folder)):<48} {row.translated:>10} {row.fuzzy:>6} {row.untranslated:>12}")
    total = [sum(getattr(row, name) for row in rows) for name in ("translated", "fuzzy", "untranslated")]
    print(f"{'all ' + str(len(rows)) + ' catalogs':<48} {total[0]:>10} {total[1]:>6} {total[2]:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
