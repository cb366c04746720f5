"""The rendered English book, page by page, in a real browser, with the network cut.

The machinery and the checks are in `_browser` (its docstring says what a
visit checks); the Chinese edition's pages are in `test_browser_zh.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _browser import HTML, PAGES, Visit, check_every_built_page_is_visited, check_no_request_failed, check_page, open_visit
from _browser import context, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.book


@pytest.fixture(params=PAGES)
def visit(request, context, server) -> Iterator[Visit]:  # noqa: F811
    yield from open_visit(request, context, server, request.param, "")


def test_page(visit: Visit) -> None:
    check_page(visit)


def test_every_built_page_is_visited(server) -> None:  # noqa: F811
    check_every_built_page_is_visited(HTML)


def test_search_finds_clipnorm(context, server) -> None:  # noqa: F811
    visit = Visit(context, server, "search")
    try:
        visit.page.goto(f"{server}/search.html?q=clipnorm", wait_until="networkidle")
        visit.page.wait_for_selector("ul.search li", timeout=15_000)
        hits = visit.page.locator("ul.search li a").all_inner_texts()
        assert any("clipping" in hit.lower() for hit in hits), hits
        visit.settle()
        check_no_request_failed(visit)
        assert visit.errors == []
    except BaseException:
        visit.screenshot_on_failure()
        raise
    finally:
        visit.page.close()
