"""The Chinese edition (issue 20): complete catalogs for the pages listed as translated, markup kept, catalogs in step with the English text, a -W -n build from the shared execution cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from explodebook.book.i18n import (
    ENGLISH_ONLY,
    LOCALES,
    catalog_path,
    catalog_stats,
    link_editions,
    markup_mismatches,
    translated_pages,
    write_edition_config,
    write_edition_toc,
)

from conftest import ROOT, toc_files

LANGUAGE = "zh_CN"
CATALOGS = ROOT / LOCALES / LANGUAGE / "LC_MESSAGES"
ZH_OUT = ROOT / "_build" / "zh"
ZH_HTML = ZH_OUT / "_build" / "html"


def _messages(path: Path) -> list:
    with open(path, "rb") as f:
        return [message for message in read_po(f) if message.id]


# --- the helpers themselves (each check must be able to fail) ---------------


def test_markup_check_catches_a_dropped_or_changed_role_math_or_code() -> None:
    msgid = "Norm {eval}`f\"{x:.2f}\"` at $s = 1$, see {numref}`fig-a` and `clip`."
    good = "在 $s = 1$ 时范数为 {eval}`f\"{x:.2f}\"`，见 {numref}`fig-a` 和 `clip`。"
    assert markup_mismatches(msgid, good) == []
    assert markup_mismatches(msgid, good.replace("{eval}`f\"{x:.2f}\"`", "0.50"))  # value typed in
    assert markup_mismatches(msgid, good.replace("$s = 1$", "s = 1"))  # math dropped
    assert markup_mismatches(msgid, good.replace("fig-a", "fig-b"))  # other target
    assert markup_mismatches(msgid, good.replace("`clip`", "clip"))  # code dropped
    assert markup_mismatches(msgid, good + " {cite}`x`")  # added


def test_markup_check_lets_a_reference_translate_its_display_text() -> None:
    msgid = "The subject of {ref}`the next chapter <ch-problem>`."
    assert markup_mismatches(msgid, "见{ref}`下一章 <ch-problem>`。") == []
    assert markup_mismatches(msgid, "见{ref}`下一章 <ch-other>`。")


def test_catalog_stats_count_untranslated_and_fuzzy(tmp_path: Path) -> None:
    po = tmp_path / "page.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "one"\nmsgstr "一"\n\n#, fuzzy\nmsgid "two"\nmsgstr "二"\n\nmsgid "three"\nmsgstr ""\n',
        encoding="utf-8",
    )
    stats = catalog_stats(po)
    assert (stats.translated, stats.fuzzy, stats.untranslated, stats.total) == (1, 1, 1, 3)


def test_link_editions_links_each_page_to_its_counterpart_once(tmp_path: Path) -> None:
    from explodebook.book.publish import check_site

    page = '<html><div class="article-header-buttons"><a href="#">x</a></div></html>'
    for path in ("index.html", "chapters/a.html", "only_english.html",
                 "zh/index.html", "zh/chapters/a.html"):  # fmt: skip
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(page, encoding="utf-8")
    assert link_editions(tmp_path) == 4
    assert link_editions(tmp_path) == 0  # already linked
    english = (tmp_path / "chapters/a.html").read_text(encoding="utf-8")
    chinese = (tmp_path / "zh/chapters/a.html").read_text(encoding="utf-8")
    assert 'href="../zh/chapters/a.html"' in english and english.count("edition-link") == 1
    assert 'href="../../chapters/a.html"' in chinese and ">English</a>" in chinese
    assert "edition-link" not in (tmp_path / "only_english.html").read_text(encoding="utf-8")
    assert check_site(tmp_path) == []


# --- the committed catalogs ---------------------------------------------------


def test_translated_list_names_pages_of_the_book_once() -> None:
    pages = translated_pages(ROOT, LANGUAGE)
    assert len(pages) == len(set(pages)), "a page is listed twice in translated.txt"
    unknown = sorted(set(pages) - (set(toc_files()) - set(ENGLISH_ONLY)))
    assert not unknown, f"translated.txt lists pages that are not translatable pages of _toc.yml: {unknown}"


def test_every_translatable_page_has_a_catalog() -> None:
    for page in toc_files():
        path = catalog_path(ROOT, LANGUAGE, page)
        if page in ENGLISH_ONLY:
            assert not path.exists(), f"{page} stays English (ENGLISH_ONLY) but has a catalog"
        else:
            assert path.exists(), f"no catalog for {page}: run `make catalogs`"


@pytest.mark.parametrize("page", translated_pages(ROOT, LANGUAGE))
def test_translated_page_has_no_untranslated_or_fuzzy_message(page: str) -> None:
    path = catalog_path(ROOT, LANGUAGE, page)
    stats = catalog_stats(path)
    todo = [m.id[:80] for m in _messages(path) if m.fuzzy or not m.string]
    assert stats.untranslated == 0 and stats.fuzzy == 0, (
        f"{path.relative_to(ROOT)}: {stats.untranslated} untranslated, {stats.fuzzy} fuzzy "
        f"(English text changed): {todo[:5]}"
    )


def test_translations_keep_every_role_expression_math_and_code() -> None:
    problems = []
    for path in sorted(CATALOGS.rglob("*.po")):
        for message in _messages(path):
            if message.string and not message.fuzzy:
                for problem in markup_mismatches(message.id, message.string):
                    problems.append(f"{path.relative_to(CATALOGS)}: {message.id[:60]!r}: {problem}")
    assert not problems, "\n".join(problems)


# --- against the English text and the build (slow) -------------------------------


def _jupyter_book(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run(
        [str(jupyter_book), "build", str(ROOT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )


@pytest.mark.book
def test_translated_catalogs_are_in_step_with_the_english_text(build: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    # The gettext build reads the pages from the execution cache that the
    # `build` fixture filled; its templates are compared with the catalogs.
    config = write_edition_config(ROOT, None, tmp_path / "i18n_config.yml")
    out = tmp_path / "i18n"
    result = _jupyter_book("--builder", "custom", "--custom-builder", "gettext", "--config", str(config),
                           "--path-output", str(out))  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Executing" not in result.stdout, "the gettext build executed a page"
    # Pages not yet translated may lag behind until the next `make catalogs`
    # (nothing of them is translated yet); a translated page may not.
    templates = out / "_build" / "gettext"
    stale = []
    for page in translated_pages(ROOT, LANGUAGE):
        english = {m.id for m in _messages(templates / f"{page}.pot")}
        catalog = {m.id for m in _messages(catalog_path(ROOT, LANGUAGE, page))}
        if english != catalog:
            stale.append(f"{page}: {len(english - catalog)} new or changed, {len(catalog - english)} gone")
    assert not stale, "catalogs out of step with the English text; run `make catalogs`:\n" + "\n".join(stale)


@pytest.fixture(scope="module")
def zh_build(build: subprocess.CompletedProcess[str], tmp_path_factory: pytest.TempPathFactory):
    """The Chinese edition, as `make book-zh` builds it (after the English book)."""
    shutil.rmtree(ZH_OUT, ignore_errors=True)
    folder = tmp_path_factory.mktemp("zh")
    config = write_edition_config(ROOT, LANGUAGE, folder / "zh_config.yml")
    toc = write_edition_toc(ROOT, LANGUAGE, folder / "zh_toc.yml")
    return _jupyter_book("-W", "-n", "--keep-going", "--config", str(config), "--toc", str(toc),
                         "--path-output", str(ZH_OUT))  # fmt: skip


@pytest.mark.book
def test_zh_edition_builds_without_warnings_from_the_cache(zh_build) -> None:
    log = zh_build.stdout + zh_build.stderr
    problems = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert zh_build.returncode == 0, "\n".join(problems) or log[-5000:]
    assert "Executing" not in zh_build.stdout, "the Chinese edition executed a page again"
    assert "Using cached notebook" in zh_build.stdout


@pytest.mark.book
@pytest.mark.parametrize("page", translated_pages(ROOT, LANGUAGE))
def test_zh_page_is_chinese_with_every_value(zh_build, page: str) -> None:
    english = (ROOT / "_build" / "html" / f"{page}.html").read_text(encoding="utf-8")
    chinese = (ZH_HTML / f"{page}.html").read_text(encoding="utf-8")
    assert 'lang="zh-CN"' in chinese
    main = re.search(r"<main.*</main>", chinese, re.DOTALL)
    text = re.sub(r"<[^>]+>", "", main.group(0) if main else chinese)
    assert len(re.findall(r"[\u4e00-\u9fff]", text)) > 20, f"{page} shows no Chinese text"
    # Every inline expression of the page rendered in the translated
    # paragraphs too (an expression without its value renders nothing).
    value = '<span class="output text_plain">'
    assert chinese.count(value) == english.count(value)


@pytest.mark.book
def test_zh_navigation_shows_the_translated_part_captions(zh_build) -> None:
    # sphinx-external-toc adds the toctrees after Sphinx translates a page:
    # the edition reads a table of contents with translated captions.
    sidebar = (ZH_HTML / "intro.html").read_text(encoding="utf-8")
    assert "The article, chapter by chapter" not in sidebar
    assert "对照原文，逐章讲解" in sidebar
