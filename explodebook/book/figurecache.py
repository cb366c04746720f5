"""Another edition's execution cache: the English cache with every figure redrawn in that language.

MyST-NB builds a page from its executed notebook in the execution cache.
`translate_cache` copies the English book's cache and, in the notebooks of
the book's current pages, replaces every PNG (inline figures, widget
images, the frames of `explodebook.scrubber` sliders) by its figure from
the figure store (`explodebook.book.figuretext`), redrawn with the
translations of the ``figures`` catalog, and translates the sliders' own
text (title, frame labels, buttons) with the same catalog. Nothing is executed.
As in the ``values`` catalog (`explodebook.book.valuetext`), a message is
the text with its numbers as placeholders: "loss inf at step {0}". `write_template`
writes that catalog's template (``figures.pot``) from the same figures, so
that ``make catalogs`` brings new or changed figure text to translators
like any other message.

Redrawn PNGs are kept in the store (``<language>/<key>-<translations>.png``):
a build redraws only figures whose PNG or translations changed.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explodebook.book import figuretext, valuetext

__all__ = ["figure_store", "edition_cache", "page_notebooks", "pngs", "rewrite_pngs", "scrubber_messages", "translate_scrubbers",
           "translate_cache", "write_template", "Report"]  # fmt: skip

#: The gettext domain (catalog file name) of the figures' text.
DOMAIN = "figures"

_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/]+=*)")
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def figure_store(cache: str | Path) -> Path:
    """The figure store of an execution cache: a folder inside it, so that the two travel together."""
    return Path(cache) / "figures"


def edition_cache(cache: str | Path, language: str) -> Path:
    """The execution cache of the edition in ``language``, next to the English one ``cache``."""
    cache = Path(cache)
    return cache.with_name(f"{cache.name}-{language}")


def _decode(text: str) -> bytes | None:
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data.startswith(figuretext.PNG_SIGNATURE) else None


def _encode(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def rewrite_pngs(notebook: dict[str, Any], replace: Callable[[bytes], bytes | None]) -> int:
    """Replace the PNGs of a notebook (a JSON dict) where ``replace`` gives new bytes.

    PNGs are found in ``image/png`` outputs, in ``data:image/png`` URIs of
    HTML outputs (scrubbers), and in the base64 buffers of the saved widget
    state (``ipywidgets.Image`` values). ``replace`` gets every PNG and
    returns its replacement, or None to keep it.

    Returns:
        how many PNGs were replaced.
    """
    count = 0

    def swap(png: bytes | None) -> str | None:
        nonlocal count
        new = replace(png) if png is not None else None
        if new is None:
            return None
        count += 1
        return _encode(new)

    def in_text(text: str) -> str:
        return _URI.sub(lambda m: "data:image/png;base64," + (swap(_decode(m.group(1))) or m.group(1)), text)

    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            for mime, value in data.items():
                if mime == "image/png" and isinstance(value, str):
                    data[mime] = swap(_decode(value)) or value
                elif mime.startswith("text/html"):
                    data[mime] = [in_text(v) for v in value] if isinstance(value, list) else in_text(value)
    state = ((notebook.get("metadata") or {}).get("widgets") or {}).get(_WIDGET_STATE) or {}
    for model in (state.get("state") or {}).values():
        for buffer in model.get("buffers") or []:
            if buffer.get("encoding") == "base64":
                buffer["data"] = swap(_decode(buffer["data"])) or buffer["data"]
    return count


# The text of a kernel-free slider (explodebook.scrubber): its title, its
# frames' labels (in the script, and the first one in the markup) and the
# buttons' words.
_SCRUBBER_TITLE = re.compile(r'(<div class="eb-scrubber-title">)(.*?)(</div>)', re.DOTALL)
_SCRUBBER_LABELS = re.compile(r"(var labels = )(\[.*?\]);")
_SCRUBBER_START = re.compile(r'((?:alt|aria-valuetext)="|<output aria-live="polite">)([^"<]*)')
_SCRUBBER_BUTTONS = re.compile(r"(&lsaquo; )(Prev)(</button>)|(>)(Next)( &rsaquo;)")


def _scrubber_html(notebook: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(output data, joined HTML) of each scrubber output of a notebook."""
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            value = data.get("text/html")
            text = "".join(value) if isinstance(value, list) else value
            if isinstance(text, str) and "data-eb-scrubber" in text:
                yield data, text


def _translate_scrubber(text: str, lookup: Callable[[str], str]) -> str:
    """A scrubber's HTML with its title, labels and buttons passed through ``lookup``."""
    import html

    def label(value: str) -> str:
        return lookup(value) if figuretext.is_message(value) else value

    text = _SCRUBBER_TITLE.sub(lambda m: m[1] + html.escape(lookup(html.unescape(m[2]))) + m[3], text)
    match = _SCRUBBER_LABELS.search(text)
    if match:
        from explodebook.scrubber import _script_json

        labels = json.loads(match[2])
        text = text[: match.start(2)] + _script_json([label(v) for v in labels]) + text[match.end(2) :]
    text = _SCRUBBER_START.sub(lambda m: m[1] + html.escape(label(html.unescape(m[2]))), text)
    return _SCRUBBER_BUTTONS.sub(
        lambda m: m[1] + lookup(m[2]) + m[3] if m[2] else m[4] + lookup(m[5]) + m[6], text)  # fmt: skip


def scrubber_messages(notebook: dict[str, Any]) -> list[str]:
    """The words of the notebook's scrubbers (titles, frame labels, buttons), each once."""
    found: dict[str, None] = {}

    def collect(text: str) -> str:
        found.setdefault(text, None)
        return text

    for _, text in _scrubber_html(notebook):
        _translate_scrubber(text, collect)
    return [t for t in found if figuretext.is_message(t) or t in ("Prev", "Next")]


def translate_scrubbers(notebook: dict[str, Any], lookup: Callable[[str], str | None]) -> list[str]:
    """Translate the notebook's scrubbers in place; the messages ``lookup`` has no translation for."""
    missing: list[str] = []

    def translated(text: str) -> str:
        result = lookup(text)
        if result is None:
            missing.append(text)
        return text if result is None else result

    for data, text in _scrubber_html(notebook):
        data["text/html"] = _translate_scrubber(text, translated).splitlines(keepends=True)
    return list(dict.fromkeys(missing))


def pngs(notebook: dict[str, Any]) -> list[bytes]:
    """Every PNG of a notebook (as `rewrite_pngs` finds them), in order."""
    found: list[bytes] = []
    rewrite_pngs(notebook, lambda png: found.append(png))  # type: ignore[func-returns-value]
    return found


def page_notebooks(book: str | Path, cache: str | Path) -> Iterator[tuple[str, Path]]:
    """(docname, executed notebook file) of each page of the book found in ``cache``."""
    from jupyter_cache import get_cache

    from explodebook.book.prebuild import chapters
    from explodebook.book.sources import Book

    jc = get_cache(str(cache))
    for chapter in chapters(Book.load(Path(book).resolve())):
        try:
            record = jc.match_cache_notebook(chapter.notebook)
        except KeyError:
            continue
        yield chapter.docname, Path(jc._get_notebook_path_cache(record.hashkey))


def missing_figures(notebook_file: str | Path, store: str | Path) -> list[str]:
    """Keys of the PNGs of an executed notebook whose figures the store does not have."""
    notebook = json.loads(Path(notebook_file).read_text(encoding="utf-8"))
    keys = {figuretext.png_key(png) for png in pngs(notebook)}
    return sorted(k for k in keys if not (Path(store) / f"{k}.pickle").exists()
                  and not (Path(store) / f"{k}.error").exists())  # fmt: skip


def read_catalog(path: str | Path) -> dict[str, str]:
    """The translated, not fuzzy, messages of a ``.po`` file (empty if there is none)."""
    from babel.messages.pofile import read_po

    if not Path(path).exists():
        return {}
    with open(path, "rb") as handle:
        catalog = read_po(handle)
    return {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy and isinstance(m.id, str)}


@dataclass
class Report:
    """What `translate_cache` did."""

    redrawn: int = 0  # PNGs replaced in the edition's cache
    reused: int = 0  # of those, taken from earlier builds' redraws
    unrecorded: dict[str, int] = field(default_factory=dict)  # docname -> PNGs with no stored figure
    unpicklable: dict[str, int] = field(default_factory=dict)  # docname -> PNGs whose figure could not be stored
    untranslated: dict[str, list[str]] = field(default_factory=dict)  # docname -> messages left in English


def translate_cache(book: str | Path, source: str | Path, target: str | Path, catalog: str | Path,
                    language: str) -> Report:  # fmt: skip
    """Copy the execution cache ``source`` to ``target`` with the current pages' figures translated.

    Args:
        book: the book's folder (its ``_toc.yml`` says which pages are current).
        source: the English edition's execution cache (with its figure store).
        target: the edition's cache; replaced if it exists.
        catalog: the edition's ``figures.po``.
        language: the edition's language (names the folder of kept redraws).
    """
    source, target = Path(source), Path(target)
    store = figure_store(source)
    kept = store / language
    kept.mkdir(parents=True, exist_ok=True)
    translations = read_catalog(catalog)

    def lookup(text: str) -> str | None:
        # a message is the text with its numbers as placeholders ({0}...):
        # "loss inf at step 8" and "... step 25" are one message
        return valuetext.translated(text, translations.get)

    # Made beside the target and swapped in at the end: a build reading the
    # edition's cache never sees it half written.
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    shutil.copytree(source, building, ignore=shutil.ignore_patterns("figures"))
    final, target = target, building
    report = Report()
    done: dict[tuple[str, str], bytes | None] = {}  # a PNG a page embeds twice is redrawn once

    def translated_png(key: str, docname: str) -> bytes | None:
        if (store / f"{key}.error").exists():
            report.unpicklable[docname] = report.unpicklable.get(docname, 0) + 1
            return None
        if not (store / f"{key}.pickle").exists():
            report.unrecorded[docname] = report.unrecorded.get(docname, 0) + 1
            return None
        try:
            stored = figuretext.load(store / f"{key}.pickle")
        except Exception:  # noqa: BLE001 - e.g. a formatter the page defined: pickled by name, gone here
            report.unpicklable[docname] = report.unpicklable.get(docname, 0) + 1
            return None
        words = figuretext.messages(stored["figure"])
        used = {w: lookup(w) for w in words}
        untranslated = [w for w, t in used.items() if t is None]
        if untranslated:
            report.untranslated.setdefault(docname, []).extend(untranslated)
        if not words:
            return None  # no text to translate: the English PNG is the edition's
        digest = hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()[:16]
        redrawn = kept / f"{key}-{digest}.png"
        report.redrawn += 1
        if redrawn.exists():
            report.reused += 1
            return redrawn.read_bytes()
        new, _ = figuretext.redraw(stored, lookup)
        redrawn.write_bytes(new)
        return new

    for docname, path in page_notebooks(book, target):
        notebook = json.loads(path.read_text(encoding="utf-8"))

        def replace(png: bytes, docname: str = docname) -> bytes | None:
            key = figuretext.png_key(png)
            if (docname, key) not in done:
                done[docname, key] = translated_png(key, docname)
            return done[docname, key]

        untranslated = translate_scrubbers(notebook, lookup)
        if untranslated:
            report.untranslated.setdefault(docname, []).extend(untranslated)
        rewrite_pngs(notebook, replace)
        path.write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")
    for docname, words in report.untranslated.items():
        report.untranslated[docname] = list(dict.fromkeys(words))
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    building.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return report


def write_template(book: str | Path, cache: str | Path, output: str | Path) -> int:
    """Write the ``figures`` catalog template: the text of every current page's figures.

    Each message's location comment names the pages whose figures show it.

    Returns:
        the number of messages.
    """
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    store = figure_store(cache)
    template = Catalog(project="explodebook figures", fuzzy=False)
    for docname, path in page_notebooks(book, cache):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        found = []
        for key in dict.fromkeys(figuretext.png_key(png) for png in pngs(notebook)):
            try:
                found += figuretext.messages(figuretext.load(store / f"{key}.pickle")["figure"])
            except Exception:  # noqa: BLE001 - not recorded, or not loadable here: translate_cache reports it
                continue
        for text in found + scrubber_messages(notebook):
            message = valuetext.template(text)[0]
            if not figuretext.is_message(message):
                continue
            existing = template.get(message)
            locations = list(existing.locations) if existing else []
            if (docname, None) not in locations:
                locations.append((docname, None))
            template.add(message, locations=locations)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as handle:
        write_po(handle, template, width=0, omit_header=False, sort_output=False)
    return len(template)


def _translate_for_build(app: Any) -> None:
    """Sphinx ``builder-inited``: make the edition's cache from the English one, figures translated."""
    from sphinx.util import logging

    source = app.config.explodebook_figures_from
    language = app.config.language
    if not source or not language or language == "en":
        return
    from explodebook.book.i18n import LOCALES

    book = Path(app.srcdir)
    catalog = book / LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    target = Path(app.config.nb_execution_cache_path)
    report = translate_cache(book, source, target, catalog, language)
    log = logging.getLogger(__name__)
    log.info(f"figures: {report.redrawn} in {language} ({report.reused} kept from earlier builds)")
    for docname, count in {**report.unrecorded, **report.unpicklable}.items():
        log.warning(f"figures: {docname}: {count} figure(s) left in English (not recorded; run `make book`)")
    for docname, words in report.untranslated.items():
        log.warning(f"figures: {docname}: {len(words)} untranslated figure message(s), first {words[0]!r}; "
                    "translate them in figures.po")  # fmt: skip


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension of the language editions: their figures translated as the build starts.

    ``explodebook_figures_from`` (set by `explodebook.book.i18n.edition_config`)
    names the English execution cache; the edition's own cache
    (``execute.cache``, `edition_cache`) is made from it by `translate_cache`.
    A figure left in English is a warning, so ``-W`` fails the build.
    """
    app.add_config_value("explodebook_figures_from", None, "env")
    app.connect("builder-inited", _translate_for_build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explodebook.book.figurecache", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pot = sub.add_parser("template", help="write figures.pot from the English cache's figures")
    pot.add_argument("output", type=Path)
    tr = sub.add_parser("translate", help="copy the English cache with the figures translated")
    tr.add_argument("--language", required=True)
    for p in (pot, tr):
        p.add_argument("--book", type=Path, default=Path("."))
        p.add_argument("--cache", type=Path, default=None,
                       help="the English execution cache (default: the one `make book` fills)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.cache is None:
        from explodebook.book.prebuild import cache_path
        from explodebook.book.sources import Book

        book = Book.load(args.book.resolve())
        args.cache = cache_path(book.root, book.config)
    if args.command == "template":
        count = write_template(args.book, args.cache, args.output)
        print(f"figures: {count} messages -> {args.output}")
        return 0
    from explodebook.book.i18n import LOCALES

    catalog = args.book / LOCALES / args.language / "LC_MESSAGES" / f"{DOMAIN}.po"
    target = edition_cache(args.cache, args.language)
    report = translate_cache(args.book, args.cache, target, catalog, args.language)
    print(f"figures: {report.redrawn} PNGs in {args.language} ({report.reused} from earlier builds) -> {target}")
    for label, found in (("figures not recorded (run `make book` again)", report.unrecorded),
                         ("figures that could not be stored", report.unpicklable)):  # fmt: skip
        for docname, count in found.items():
            print(f"figures: {docname}: {count} {label}")
    for docname, words in report.untranslated.items():
        print(f"figures: {docname}: {len(words)} untranslated message(s), first {words[0]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
