"""The rendered book, page by page, in a real browser, with the network cut.

Every page of the table of contents is served from 127.0.0.1 and opened in
headless Chromium with every request to another host blocked, the way a
reader behind a firewall would see it. Chapters added to ``_toc.yml`` are
covered without new test code. A failing page leaves a screenshot in
``_build/browser-failures/``.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, toc_files

HTML = ROOT / "_build" / "html"
FAILURES = ROOT / "_build" / "browser-failures"
# Written by the theme (pydata-sphinx-theme) on a first visit with an empty
# profile; not an error of the book.
BENIGN_CONSOLE = ("Got invalid theme mode",)

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def server(build) -> Iterator[str]:
    assert build.returncode == 0, "the book did not build; see test_book"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class Visit:
    """One page opened with third-party hosts blocked, and what happened."""

    def __init__(self, browser: Any, base: str, name: str) -> None:
        self.name = name
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        # A returning reader's theme choice: no first-visit console message.
        self.page.add_init_script("localStorage.setItem('mode', 'light');")

        def route(route: Any) -> None:
            if route.request.url.startswith(base + "/"):
                route.continue_()
            else:
                self.blocked.append(route.request.url)
                route.abort()

        self.page.route("**/*", route)
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text)
            if m.type == "error" and not m.text.startswith(BENIGN_CONSOLE)
            else None,
        )
        self.page.goto(f"{base}/{name}.html", wait_until="networkidle")

    def screenshot_on_failure(self) -> None:
        FAILURES.mkdir(parents=True, exist_ok=True)
        path = FAILURES / (self.name.replace("/", "__") + ".png")
        self.page.screenshot(path=str(path), full_page=True)


@pytest.fixture(params=toc_files())
def visit(request, browser, server) -> Iterator[Visit]:
    visit = Visit(browser, server, request.param)
    failed_before = request.session.testsfailed
    yield visit
    if request.session.testsfailed > failed_before:
        visit.screenshot_on_failure()
    visit.page.close()


def _images_decoded(page: Any) -> list[str]:
    """Sources of images that did not decode (empty when all did)."""
    return page.evaluate(
        """async () => {
            const bad = [];
            for (const img of document.images) {
                img.loading = 'eager';
                try { await img.decode(); } catch (e) {}
                if (!(img.complete && img.naturalWidth > 0)) bad.push(img.src.slice(0, 80));
            }
            return bad;
        }"""
    )


def test_page(visit: Visit) -> None:
    """Each page loads once; every check runs on it, in a reader's order."""
    check_renders_offline_without_errors(visit)
    check_sliders_move_and_change_the_frame(visit)
    check_exercise_solutions_open_from_their_dropdown(visit)
    check_framework_tabs_switch(visit)


def check_renders_offline_without_errors(visit: Visit) -> None:
    page = visit.page
    assert visit.blocked == [], f"{visit.name} asks third-party hosts for {visit.blocked[:5]}"
    assert visit.failed == [], f"{visit.name}: failed requests {visit.failed[:5]}"
    assert visit.errors == [], f"{visit.name}: console errors {visit.errors[:5]}"
    assert _images_decoded(page) == [], f"{visit.name}: images that did not decode"
    # An `explore` widget whose default setting failed shows this message.
    assert "Cannot run this setting" not in page.content(), f"{visit.name}: a widget failed"
    if visit.name.startswith("chapters/"):
        assert page.locator("main img").count() >= 1, f"{visit.name} has no figure"
    # Equations are typeset by the book's own MathJax.
    if page.locator(".math").count():
        page.wait_for_selector("mjx-container", timeout=10_000)


def check_sliders_move_and_change_the_frame(visit: Visit) -> None:
    page = visit.page
    scrubbers = page.locator(".eb-scrubber")
    for i in range(scrubbers.count()):
        scrubber = scrubbers.nth(i)
        scrubber.scroll_into_view_if_needed()
        image = scrubber.locator("img")
        slider = scrubber.locator("input[type=range]")
        before = image.get_attribute("src")
        # A reader's keyboard: focus the slider, press an arrow key (or
        # Home when the slider starts at its last frame).
        slider.focus()
        at_end = slider.input_value() == slider.get_attribute("max")
        page.keyboard.press("Home" if at_end else "ArrowRight")
        after = image.get_attribute("src")
        assert after != before, f"{visit.name}: slider {i} did not change the frame"
        assert image.evaluate("img => img.naturalWidth") > 0


def check_exercise_solutions_open_from_their_dropdown(visit: Visit) -> None:
    page = visit.page
    dropdowns = page.locator("details.solution, .solution.dropdown")
    for i in range(dropdowns.count()):
        dropdown = dropdowns.nth(i)
        dropdown.scroll_into_view_if_needed()
        body = dropdown.locator("section").first
        if dropdown.evaluate("el => el.tagName") == "DETAILS":
            dropdown.locator("summary").click()
            assert dropdown.evaluate("el => el.open"), f"{visit.name}: solution {i} stays shut"
        else:
            assert not body.is_visible(), f"{visit.name}: solution {i} is open on load"
            dropdown.locator(".toggle-button, button, p.admonition-title").first.click()
            page.wait_for_timeout(300)
        assert body.is_visible(), f"{visit.name}: solution {i} did not open"


def check_framework_tabs_switch(visit: Visit) -> None:
    """Clicking a framework's tab shows its code, in every tab set of the page."""
    page = visit.page
    tab_sets = page.locator(".sd-tab-set")
    for framework in ("Keras", "PyTorch"):
        for i in range(tab_sets.count()):
            tab_set = tab_sets.nth(i)
            tab_set.scroll_into_view_if_needed()
            tab_set.locator("label.sd-tab-label", has_text=framework).click()
            # the tab sets share one sync group: every set shows the framework
            for j in range(tab_sets.count()):
                other = tab_sets.nth(j)
                labels = other.locator("label.sd-tab-label")
                contents = other.locator(".sd-tab-content")
                shown = [contents.nth(k).is_visible() for k in range(contents.count())]
                titles = [labels.nth(k).inner_text().strip() for k in range(labels.count())]
                assert shown.count(True) == 1, f"{visit.name}: tab set {j} shows {shown}"
                assert titles[shown.index(True)] == framework, (
                    f"{visit.name}: clicked {framework} in tab set {i}, set {j} shows "
                    f"{titles[shown.index(True)]}"
                )


def test_search_finds_clipnorm(browser, server) -> None:
    visit = Visit(browser, server, "search")
    try:
        visit.page.goto(f"{server}/search.html?q=clipnorm", wait_until="networkidle")
        visit.page.wait_for_selector("ul.search li", timeout=15_000)
        hits = visit.page.locator("ul.search li a").all_inner_texts()
        assert any("clipping" in hit.lower() for hit in hits), hits
        assert visit.blocked == [] and visit.errors == []
    except BaseException:
        visit.screenshot_on_failure()
        raise
    finally:
        visit.page.close()
