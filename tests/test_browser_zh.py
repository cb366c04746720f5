"""The rendered Chinese edition, page by page, in a real browser, with the network cut.

The same checks as `test_browser.py`'s on every page of the edition
(`_browser`), and a search for a Chinese term.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _browser import PAGES, ZH, Visit, check_every_built_page_is_visited, check_no_request_failed, check_page, open_visit
from _browser import context, zh_server  # noqa: F401  (fixtures)
from _zh_edition import ZH_HTML

pytestmark = pytest.mark.book


@pytest.fixture(params=PAGES)
def visit(request, context, zh_server) -> Iterator[Visit]:  # noqa: F811
    yield from open_visit(request, context, zh_server, request.param, ZH)


def test_page(visit: Visit) -> None:
    check_page(visit)


def test_every_built_page_is_visited(zh_server) -> None:  # noqa: F811
    check_every_built_page_is_visited(ZH_HTML)


def test_zh_search_finds_a_chinese_term_and_lands_on_its_page(context, zh_server) -> None:  # noqa: F811
    """梯度裁剪 (gradient clipping) is one word of the index and leads to its chapter.

    Sphinx's Chinese search splits text into words with jieba, which cuts
    梯度裁剪 into 梯度 and 裁剪 unless told the term: the edition gives
    jieba the glossary's terms (explodebook.book.editions), and the query,
    which the browser keeps whole, finds them.
    """
    visit = Visit(context, zh_server, "search", ZH)
    try:
        visit.page.goto(f"{zh_server}/search.html?q=梯度裁剪", wait_until="networkidle")
        visit.page.wait_for_selector("ul.search li", timeout=15_000)
        links = visit.page.locator("ul.search li a")
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        assert hrefs and hrefs[0].split("?")[0].endswith("chapters/07_gradient_clipping.html"), hrefs
        visit.settle()
        check_no_request_failed(visit)
        assert visit.errors == []
        with visit.page.expect_navigation():
            links.first.click()
        assert visit.page.url.split("?")[0].endswith("/chapters/07_gradient_clipping.html")
        assert "梯度裁剪" in visit.page.locator("main h1").first.inner_text()
        visit.wait_for_network()
        check_no_request_failed(visit)
    except BaseException:
        visit.screenshot_on_failure()
        raise
    finally:
        visit.page.close()
