"""The Chinese edition (issue 20): complete catalogs for the pages listed as translated, markup kept, catalogs in step with the English text, a -W -n build from the shared execution cache."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from explodebook.book import editions
from explodebook.book.i18n import (
    ENGLISH_ONLY,
    EXTENSION,
    LOCALES,
    catalog_path,
    catalog_stats,
    link_editions,
    markup_mismatches,
    edition_config,
    translated_pages,
    update_catalogs,
    write_edition_config,
    write_edition_toc,
)
from explodebook.book.sources import read_config

from _zh_edition import LANGUAGE, ZH_HTML, ZH_STUDENT_HTML, jupyter_book, student_zh_edition, zh_edition
from conftest import ROOT, toc_files

CATALOGS = ROOT / LOCALES / LANGUAGE / "LC_MESSAGES"


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


def test_student_edition_in_chinese_is_the_edition_config_of_the_student_config(tmp_path: Path) -> None:
    from explodebook.coursework.edition import student_config

    config, cache = read_config(ROOT), tmp_path / "cache"
    student = editions.student_edition_config(config, LANGUAGE, cache)
    # Built by edition_config itself (one definition of the edition) from
    # the student configuration (one definition of what a student sees).
    expected = edition_config(student_config(config, cache), LANGUAGE, cache)
    assert student["title"] == expected["title"] + editions.STUDENT_SUFFIXES[LANGUAGE]
    assert {**student, "title": expected["title"]} == expected
    assert student["sphinx"]["config"]["hide_solutions"] is True
    assert student["sphinx"]["config"]["language"] == LANGUAGE
    assert EXTENSION in student["sphinx"]["extra_extensions"]
    written = editions.write_student_edition_config(ROOT, LANGUAGE, tmp_path / "student_zh.yml")
    import yaml

    assert yaml.safe_load(written.read_text(encoding="utf-8"))["title"] == student["title"]


def _po(path: Path, header: str, messages: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# SOME DESCRIPTIVE TITLE.\n# This file is distributed under the same license as the Project name not\n"
        f'# set package.\n#\nmsgid ""\nmsgstr ""\n"Project-Id-Version: {header}\\n"\n'
        '"Content-Type: text/plain; charset=utf-8\\n"\n\n' + messages,
        encoding="utf-8",
    )


def test_update_catalogs_names_the_book_in_every_header(tmp_path: Path) -> None:
    from explodebook import __version__

    (tmp_path / "_config.yml").write_text("title: A Book\n", encoding="utf-8")
    _po(tmp_path / "pot" / "page.pot", "Project name not set ", 'msgid "one"\nmsgstr ""\n\nmsgid "two"\nmsgstr ""\n')
    _po(catalog_path(tmp_path, LANGUAGE, "page"), "Project name not set ", 'msgid "one"\nmsgstr "一"\n')
    update_catalogs(tmp_path, LANGUAGE, tmp_path / "pot")
    with open(catalog_path(tmp_path, LANGUAGE, "page"), "rb") as f:
        catalog = read_po(f)
    assert (catalog.project, catalog.version) == ("A Book", __version__)
    assert "Project name not" not in catalog.header_comment and "A Book" in catalog.header_comment
    assert {m.id: m.string for m in catalog if m.id} == {"one": "一", "two": ""}
    assert editions.write_catalog_headers(tmp_path, LANGUAGE) == []  # already named


def test_search_words_are_the_glossary_terms() -> None:
    words = editions.search_words(ROOT)
    for term in ("梯度裁剪", "梯度爆炸", "长短期记忆网络", "按范数裁剪", "按值裁剪", "修正线性单元"):
        assert term in words
    assert all(re.fullmatch(r"[\u4e00-\u9fff]+", word) for word in words)
    assert len(words) == len(set(words)) > 20


def test_chinese_search_without_jieba_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from sphinx.errors import ExtensionError

    app = SimpleNamespace(doctreedir=str(tmp_path / "doctrees"), srcdir=str(ROOT))
    config = SimpleNamespace(html_search_language=None, language=LANGUAGE, html_search_options={})
    editions._chinese_search(app, config)
    words = Path(config.html_search_options["dict"]).read_text(encoding="utf-8").split()
    assert words == editions.search_words(ROOT)
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba fails
    with pytest.raises(ExtensionError, match="jieba"):
        editions._chinese_search(app, SimpleNamespace(html_search_language=None, language=LANGUAGE,
                                                      html_search_options={}))  # fmt: skip


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


def test_every_catalog_names_the_book() -> None:
    from explodebook import __version__

    title = read_config(ROOT)["title"]
    for path in sorted(CATALOGS.rglob("*.po")):
        with open(path, "rb") as f:
            catalog = read_po(f)
        assert (catalog.project, catalog.version) == (title, __version__), f"{path.relative_to(ROOT)}: run `make catalogs`"


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


@pytest.fixture(scope="module")
def templates(build: subprocess.CompletedProcess[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gettext build's templates of the English text (`make catalogs`' first step)."""
    # The gettext build reads the pages from the execution cache that the
    # `build` fixture filled.
    folder = tmp_path_factory.mktemp("i18n")
    config = write_edition_config(ROOT, None, folder / "i18n_config.yml")
    result = jupyter_book("--builder", "custom", "--custom-builder", "gettext", "--config", str(config),
                          "--path-output", str(folder / "i18n"))  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Executing" not in result.stdout, "the gettext build executed a page"
    return folder / "i18n" / "_build" / "gettext"


@pytest.mark.book
def test_translated_catalogs_are_in_step_with_the_english_text(templates: Path) -> None:
    # Pages not yet translated may lag behind until the next `make catalogs`
    # (nothing of them is translated yet); a translated page may not.
    stale = []
    for page in translated_pages(ROOT, LANGUAGE):
        english = {m.id for m in _messages(templates / f"{page}.pot")}
        catalog = {m.id for m in _messages(catalog_path(ROOT, LANGUAGE, page))}
        if english != catalog:
            stale.append(f"{page}: {len(english - catalog)} new or changed, {len(catalog - english)} gone")
    assert not stale, "catalogs out of step with the English text; run `make catalogs`:\n" + "\n".join(stale)


def _measured_includes() -> dict[str, list[Path]]:
    """The files of `editions.MEASURED` folders each page includes."""
    found: dict[str, list[Path]] = {}
    for page in toc_files():
        source = next(ROOT.glob(f"{page}.*"))
        for name in re.findall(r"^```\{include\}\s+(\S+)", source.read_text(encoding="utf-8"), re.M):
            if Path(name).parts[0] in editions.MEASURED:
                found.setdefault(page, []).append(ROOT / name)
    return found


@pytest.mark.book
def test_measured_tables_are_kept_out_of_translation(templates: Path) -> None:
    # `make bench` rewrites them: their text is not extracted, so a new
    # measurement cannot turn the page's messages untranslated.
    includes = _measured_includes()
    assert "instructors" in includes
    for page, files in includes.items():
        messages = [" ".join(m.id.split()) for m in _messages(templates / f"{page}.pot")]
        assert messages, f"{page}: nothing extracted at all"
        for path in files:
            text = path.read_text(encoding="utf-8")
            starts = [" ".join(block.split()[:5]) for block in re.split(r"\n\s*\n", text) if not block.startswith("|")]
            cells = [c.strip() for row in re.findall(r"^\|(.*)\|\s*$", text, re.M) for c in row.split("|")]
            assert starts and cells
            extracted = [s for s in starts if any(s in m for m in messages)]
            extracted += [c for c in cells if re.search("[A-Za-z]", c) and c in messages]
            assert not extracted, f"{page}: text of {path.name} extracted for translation: {extracted[:5]}"


@pytest.fixture(scope="module")
def zh_build(build: subprocess.CompletedProcess[str], tmp_path_factory: pytest.TempPathFactory):
    """The Chinese edition, as `make book-zh` builds it (after the English book), once per run."""
    return zh_edition(build, tmp_path_factory)


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


def _solution_pages() -> list[str]:
    return [page for page in toc_files() if page.startswith("chapters/")
            and "{solution}" in (ROOT / f"{page}.md").read_text(encoding="utf-8")]  # fmt: skip


@pytest.mark.book
def test_zh_exercise_and_solution_titles_are_chinese(zh_build) -> None:
    # sphinx-exercise's own catalog has "Exercise" and "Solution to"; the
    # book's exercise.po adds the "Solution" of solution_follow_exercise.
    title = re.compile(r'<p class="admonition-title">(.*?)</p>', re.S)
    pages = _solution_pages()
    assert pages
    for page in pages:
        english = title.findall((ROOT / "_build" / "html" / f"{page}.html").read_text(encoding="utf-8"))
        chinese = title.findall((ZH_HTML / f"{page}.html").read_text(encoding="utf-8"))
        solutions = english.count("Solution")
        assert solutions >= 1, f"{page}: no solution title in the English page"
        assert chinese.count("解答") == solutions and "Solution" not in chinese, (page, chinese)
        assert not any("Exercise" in t for t in chinese), (page, chinese)


# --- the Chinese student edition -------------------------------------------------

@pytest.fixture(scope="module")
def student_zh_build(build: subprocess.CompletedProcess[str], zh_build, tmp_path_factory: pytest.TempPathFactory):
    """The Chinese student edition, as `make book-student-zh` builds it, after the Chinese edition."""
    return student_zh_edition(build, tmp_path_factory)


def _chinese_solution_text(page: str) -> list[str]:
    """A run of Chinese text from the translation of each solution sentence of ``page``.

    The English sentences are test_book's (read from the chapter's
    solutions); their messages' translations are in the page's catalog.
    """
    from test_book import solution_sentences

    messages = _messages(catalog_path(ROOT, LANGUAGE, page))
    runs = []
    for line in solution_sentences().get(page, []):
        words = " ".join(line.split()[:6])
        for message in messages:
            if words in " ".join(message.id.split()):
                # Twelve characters that no other message's translation has
                # (a solution may repeat a phrase of the chapter's prose).
                windows = [run[i:i + 12] for run in re.findall(r"[\u4e00-\u9fff，、]{12,}", message.string)
                           for i in range(len(run) - 11)]  # fmt: skip
                unique = [w for w in windows if sum(w in m.string for m in messages) == 1]
                runs += unique[:1]
    return runs


@pytest.mark.book
def test_zh_student_edition_builds_without_warnings_from_the_cache(student_zh_build) -> None:
    log = student_zh_build.stdout + student_zh_build.stderr
    problems = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert student_zh_build.returncode == 0, "\n".join(problems) or log[-5000:]
    assert "Executing" not in student_zh_build.stdout, "the Chinese student edition executed a page"
    assert "Using cached notebook" in student_zh_build.stdout


@pytest.mark.book
def test_zh_student_edition_is_chinese_with_exercises_but_no_solution(zh_build, student_zh_build) -> None:
    pages = _solution_pages()
    runs = {page: _chinese_solution_text(page) for page in pages}
    # Enough to mean something: Chinese text of solutions on most pages.
    assert sum(len(found) >= 1 for found in runs.values()) >= len(pages) // 2, runs
    for page in pages:
        full = " ".join((ZH_HTML / f"{page}.html").read_text(encoding="utf-8").split())
        student = (ZH_STUDENT_HTML / f"{page}.html").read_text(encoding="utf-8")
        assert 'lang="zh-CN"' in student and "（学生版）" in student
        assert len(re.findall(r"[\u4e00-\u9fff]", student)) > 200, f"{page} shows no Chinese text"
        assert 'class="solution' not in student, f"{page}: a solution block is left"
        assert student.count('class="exercise') >= 3, f"{page}: exercises are missing"
        assert "解答" not in re.findall(r'<p class="admonition-title">(.*?)</p>', student)
        for run in runs[page]:
            assert run in full, f"{page}: {run!r} not in the full Chinese edition"
    # Nowhere in the published files (pages, search index, sources).
    every = [run for found in runs.values() for run in found]
    for path in ZH_STUDENT_HTML.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".js", ".txt", ".md", ".ipynb", ".json"}:
            text = " ".join(path.read_text(errors="replace").split())
            leaked = [run for run in every if run in text]
            assert not leaked, f"{path.relative_to(ZH_STUDENT_HTML)} holds solution text {leaked[:2]}"
