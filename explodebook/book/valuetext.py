"""Words computed by the chapters ({eval} values such as "12% more time per step"), translated for another edition.

An inline expression (``{eval}`expr```) shows a value the run computed.
Numbers read the same in every language, but a chapter also shows phrases
("the same", "conv1 and conv2", "within the noise of the measurement",
a verdict of `explodebook.diagnose`): in a translated paragraph they would
stay English. The ``values`` gettext catalog translates them.

A message is the value with each number replaced by a numbered
placeholder: "12% more time per step" is the message
``{0}% more time per step``, so a new measurement keeps its translation
(``每步多用 {0}% 的时间``), and the translation gets the numbers back in
their places. ``inf`` and ``nan`` count as numbers. `messages_of` lists
the messages of the values a page shows; `write_template` writes
``values.pot`` for ``make catalogs``; `translated` is what the book's
``eval`` role (``explodebook.book.sphinxext``) shows in a translated
paragraph.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from explodebook.book.figuretext import is_message

__all__ = ["DOMAIN", "template", "fill", "messages_of", "translated", "write_template", "catalog"]

#: The gettext domain (catalog file name) of the values' words.
DOMAIN = "values"

# A number on its own (not the digits of a name such as conv1 or l2).
_NUMBER = re.compile(r"(?<![\w.])(?:[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?|inf|nan)(?!\w|\.\d)")


def template(value: str) -> tuple[str, list[str]]:
    """``value`` with its numbers replaced by ``{0}``, ``{1}``...; and the numbers, in order.

    Braces already in the value are doubled, so that `fill` gives it back exactly.
    """
    numbers: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        numbers.append(match.group(0))
        return f"\x00{len(numbers) - 1}\x01"

    marked = _NUMBER.sub(placeholder, value)
    escaped = marked.replace("{", "{{").replace("}", "}}")
    return escaped.replace("\x00", "{").replace("\x01", "}"), numbers


def fill(message: str, numbers: list[str]) -> str:
    """A message (or its translation) with its placeholders replaced by ``numbers``.

    Raises:
        ValueError: the message names a placeholder there is no number for.
    """

    def part(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)[0]  # "{{" or "}}": a brace of the value
        index = int(match.group(1))
        if index >= len(numbers):
            raise ValueError(f"{message!r} has {{{index}}}, but the value has {len(numbers)} number(s)")
        return numbers[index]

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", part, message)


def shown_string(result: dict[str, Any]) -> str | None:
    """The string an expression's result shows (its ``text/plain`` is a str's repr), else None."""
    text = (result.get("data") or {}).get("text/plain")
    if result.get("status") != "ok" or not isinstance(text, str):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


def messages_of(expressions: dict[str, Any]) -> Iterator[str]:
    """The messages of a page's expression results (`explodebook.book.expressions` stores them)."""
    for result in expressions.values():
        value = shown_string(result)
        if value is not None:
            message, _ = template(value)
            if is_message(message):
                yield message


def translated(value: str, lookup: Callable[[str], str | None]) -> str | None:
    """``value`` in the catalog's language; itself if it has no words; None if it has no translation."""
    message, numbers = template(value)
    if not is_message(message):
        return value
    translation = lookup(message)
    return None if translation is None else fill(translation, numbers)


@functools.cache
def catalog(path: str) -> dict[str, str]:
    """The translated, not fuzzy, messages of the ``values.po`` at ``path`` (read once per process)."""
    from explodebook.book.figurecache import read_catalog

    return read_catalog(path)


def write_template(book: str | Path, cache: str | Path, output: str | Path, keep: str | Path | None = None) -> int:
    """Write ``values.pot``: the messages of the values every current page shows.

    ``keep``: a catalog (the edition's ``values.po``) whose messages stay in
    the template even when no page shows them in this build: a value
    computed from a measurement (chapter 11a's cost of the monitor) shows one
    of several phrases, and the next build may show another.

    Returns:
        the number of messages.
    """
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po
    from jupyter_cache import get_cache

    from explodebook.book.prebuild import chapters
    from explodebook.book.sources import Book

    jc = get_cache(str(cache))
    result = Catalog(project="explodebook values", fuzzy=False)
    for chapter in chapters(Book.load(Path(book).resolve())):
        try:
            record = jc.match_cache_notebook(chapter.notebook)
        except KeyError:
            continue
        for message in messages_of((record.data or {}).get("expressions") or {}):
            existing = result.get(message)
            locations = list(existing.locations) if existing else []
            if (chapter.docname, None) not in locations:
                locations.append((chapter.docname, None))
            # python-format off: "12% more" is no %-directive
            result.add(message, locations=locations, flags=() if existing is None else existing.flags)
    if keep is not None:
        from explodebook.book.figurecache import read_catalog

        for message in read_catalog(keep):
            if message not in result:
                result.add(message)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as handle:
        write_po(handle, result, width=0, sort_output=False)
    return len(result)


if __name__ == "__main__":
    import sys

    from explodebook.book.prebuild import cache_path
    from explodebook.book.sources import Book

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m explodebook.book.valuetext OUTPUT.pot   (from the book's folder)")
    book = Book.load(Path(".").resolve())
    language = "zh_CN"  # the edition whose catalog keeps the phrases this build does not show
    kept = Path("locales") / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    count = write_template(".", cache_path(book.root, book.config), sys.argv[1], kept if kept.exists() else None)
    print(f"values: {count} messages -> {sys.argv[1]}")
