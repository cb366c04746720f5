"""Words computed by the chapters ({eval} values), translated in the Chinese edition.

`explodebook.book.valuetext` turns a value into a message with numbered
placeholders for its numbers, and back; the book's ``eval`` role shows a
translated paragraph's values through the ``values`` catalog.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from explodebook.book import valuetext
from explodebook.book.i18n import catalog_stats

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "locales" / "zh_CN" / "LC_MESSAGES" / "values.po"


@pytest.mark.parametrize(("value", "message", "numbers"), [
    ("12% more time per step", "{0}% more time per step", ["12"]),
    ("all but Keras with l2 = 3", "all but Keras with l2 = {0}", ["3"]),  # l2: a name, not a number
    ("conv1 and conv2", "conv1 and conv2", []),
    ("0.3 and 1", "{0} and {1}", ["0.3", "1"]),
    ("inf", "{0}", ["inf"]),
    ("depth=10, lr=1e-06.", "depth={0}, lr={1}.", ["10", "1e-06"]),
    ("a {brace} -2", "a {{brace}} {0}", ["-2"]),
])  # fmt: skip
def test_a_values_message_has_placeholders_for_its_numbers(value: str, message: str, numbers: list[str]) -> None:
    assert valuetext.template(value) == (message, numbers)
    assert valuetext.fill(message, numbers) == value


def test_a_translation_gets_the_values_numbers_back() -> None:
    zh = {"{0}% more time per step": "每步多用 {0}% 的时间", "{0} and {1}": "{0} 和 {1}"}
    assert valuetext.translated("12% more time per step", zh.get) == "每步多用 12% 的时间"
    assert valuetext.translated("0.3 and 1", zh.get) == "0.3 和 1"
    assert valuetext.translated("1.5e-3", zh.get) == "1.5e-3"  # no words: shown as it is
    assert valuetext.translated("the same", zh.get) is None  # no translation: the caller warns
    with pytest.raises(ValueError, match=r"has \{2\}, but the value has 2"):
        valuetext.fill("{0} and {2}", ["1", "2"])


def test_only_strings_with_words_are_messages() -> None:
    def ok(text_plain: str) -> dict:
        return {"status": "ok", "data": {"text/plain": text_plain}}

    results = {"a": ok("'the same'"), "b": ok("3"), "c": ok("'inf'"), "d": ok("array([1, 2])"),
               "e": {"status": "error"}, "f": ok("'12% more time per step'")}  # fmt: skip
    assert list(valuetext.messages_of(results)) == ["the same", "{0}% more time per step"]


def _messages(path: Path) -> dict[str, str]:
    with open(path, "rb") as handle:
        return {m.id: m.string for m in read_po(handle) if m.id}


def test_the_values_catalog_is_complete_and_keeps_every_placeholder() -> None:
    stats = catalog_stats(CATALOG)
    assert stats.total > 0 and (stats.untranslated, stats.fuzzy) == (0, 0), stats
    bad = [(i, s) for i, s in _messages(CATALOG).items()
           if sorted(re.findall(r"\{\d+\}", i)) != sorted(re.findall(r"\{\d+\}", s))]  # fmt: skip
    assert not bad, bad


@pytest.mark.book
def test_the_values_catalog_is_in_step_with_the_book(build, tmp_path: Path) -> None:
    assert build.returncode == 0
    template = tmp_path / "values.pot"
    valuetext.write_template(ROOT, ROOT / "_build" / ".jupyter_cache", template)
    english, catalog = set(_messages(template)), set(_messages(CATALOG))
    # every value shown has its message; the catalog may hold more (the
    # other phrases of a value computed from a measurement)
    assert english <= catalog, (
        f"values.po lacks messages of values the pages show: {sorted(english - catalog)[:3]}; "
        "run `make catalogs` and translate them"
    )
    kept = tmp_path / "kept.pot"
    valuetext.write_template(ROOT, ROOT / "_build" / ".jupyter_cache", kept, keep=CATALOG)
    assert set(_messages(kept)) == english | catalog  # make catalogs drops none of them


@pytest.fixture(scope="module")
def zh_build(build, tmp_path_factory: pytest.TempPathFactory):
    from _zh_edition import zh_edition

    return zh_edition(build, tmp_path_factory)


def _shown_values(html: str) -> list[str]:
    """The values the {eval} roles of a page show (not its code cells, which stay English)."""
    return re.findall(r'<span class="output text_plain">([^<]*)</span>', html)


@pytest.mark.book
def test_a_zh_page_shows_computed_phrases_in_chinese(zh_build) -> None:
    from _zh_edition import ZH_HTML

    assert zh_build.returncode == 0
    shown = _shown_values((ZH_HTML / "chapters" / "11a_monitor_in_practice.html").read_text(encoding="utf-8"))
    # the monitor's cost: one of three phrases, depending on the measurement
    assert not [v for v in shown if re.search(r"more time per step|noise of the measurement|faster than", v)]
    assert [v for v in shown if re.search(r"的时间|在测量噪声之内|比不用它还快", v)]
    shown = _shown_values((ZH_HTML / "chapters" / "10c_mixed_precision.html").read_text(encoding="utf-8"))
    assert "the same" not in shown and "different" not in shown
    assert "相同的" in shown or "不同的" in shown
