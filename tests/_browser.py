"""What the browser tests of the rendered book share: servers, a reader's visit, the checks.

`test_browser.py` (the English book) and `test_browser_zh.py` (its Chinese
edition) are two files so that two xdist workers visit them side by side at
the end of `make test`, instead of one while the other idles (146 s of
`make test`'s 12 min 32 s in a run at 3c6b51a).

Every page of the table of contents (and Sphinx's own index pages), of the
English book and of its Chinese edition (issue 20), is served from
127.0.0.1 and opened in headless Chromium with every request to another
host blocked, the way a reader behind a firewall would see it. Chapters
added to ``_toc.yml`` are covered without new test code. A failing page
leaves a screenshot in ``_build/browser-failures/``.

No request may fail, and requests are only counted once the page has
settled (`Visit.settle`): every widget view rendered by the widget manager,
every web font the page declares loaded, nothing left in flight. The widget
manager's stylesheets declare icon fonts the browser only fetches when it
needs a glyph, and when depends on timing, so the fonts are loaded on
purpose: a font the book declares but cannot serve fails every time, not
only on a slow machine.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _zh_edition import ZH_HTML, zh_edition
from conftest import ROOT, toc_files

HTML = ROOT / "_build" / "html"
# The editions, by the folder each is published under (`make pages`).
ZH = "zh"
FAILURES = ROOT / "_build" / "browser-failures"
# Written by the theme (pydata-sphinx-theme) on a first visit with an empty
# profile; not an error of the book.
BENIGN_CONSOLE = ("Got invalid theme mode",)
# Pages Sphinx writes besides those of the table of contents (search.html
# has its own test, index.html only redirects to the root page).
GENERATED_PAGES = ["genindex", "py-modindex"]
# Every page a test opens, in each edition.
PAGES = toc_files() + GENERATED_PAGES
# Upper bounds, not sleeps: each wait ends as soon as its condition holds.
WIDGETS_TIMEOUT_MS = 60_000
NETWORK_TIMEOUT_S = 30.0

# How far the widget manager got. On a page that loads it (embed-amd.js),
# it defines the AMD module "@jupyter-widgets/html-manager" (and adds its
# stylesheets), then each widget view (a `<script>` of type
# widget-view+json) gets a `div.widget-subarea` inserted just before it,
# which the view is rendered into (html-manager's renderWidgets).
_WIDGET_VIEWS = """() => {
    const views = document.querySelectorAll(
        'script[type="application/vnd.jupyter.widget-view+json"]');
    let rendered = 0;
    for (const view of views) {
        const area = view.previousElementSibling;
        if (area && area.classList.contains('widget-subarea') && area.childElementCount > 0)
            rendered += 1;
    }
    const manager = document.querySelector('script[src*="embed-amd.js"]') !== null;
    return {views: views.length, rendered: rendered,
            manager: manager,
            manager_loaded: manager && typeof window.require === 'function'
                && window.require.defined('@jupyter-widgets/html-manager'),
            errors: document.querySelectorAll('.jupyter-widgets-error-widget').length};
}"""

# Every @font-face of the page's stylesheets, loaded whether a glyph on the
# page needs it yet or not; the ones that could not be.
_LOAD_ALL_FONTS = """async () => {
    await document.fonts.ready;
    const faces = [...document.fonts];
    const loads = await Promise.allSettled(faces.map(face => face.load()));
    return faces.filter((face, i) => loads[i].status === 'rejected')
                .map(face => `${face.family} ${face.weight} ${face.style}`);
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request (the log buries a failure's report)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(folder: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(build) -> Iterator[str]:
    assert build.returncode == 0, "the book did not build; see test_book"
    yield from _serve(HTML)


@pytest.fixture(scope="module")
def zh_server(build, tmp_path_factory) -> Iterator[str]:
    """The Chinese edition (built once per run, shared with test_zh.py), on a server of its own."""
    assert build.returncode == 0, "the book did not build; see test_book"
    zh_build = zh_edition(build, tmp_path_factory)
    assert zh_build.returncode == 0, "the Chinese edition did not build; see test_zh"
    yield from _serve(ZH_HTML)


@pytest.fixture(scope="module")
def context(browser) -> Iterator[Any]:
    """One browser context (one reader's profile) for every page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # A returning reader's theme choice: no first-visit console message.
    context.add_init_script("localStorage.setItem('mode', 'light');")
    yield context
    context.close()


class Visit:
    """One page opened with third-party hosts blocked, and what happened."""

    def __init__(self, context: Any, base: str, name: str, edition: str = "") -> None:
        self.name = name
        self.edition = edition  # "" for the English book
        self.blocked: list[str] = []
        self.failed: dict[str, str] = {}  # URL: status or network error
        self.errors: list[str] = []
        self.fonts_failed: list[str] = []
        self.in_flight: dict[Any, str] = {}
        self.widgets: dict[str, Any] = {}
        self.page = context.new_page()

        def route(route: Any) -> None:
            if route.request.url.startswith(base + "/"):
                route.continue_()
            else:
                self.blocked.append(route.request.url)
                route.abort()

        def response(response: Any) -> None:
            if response.status >= 400:
                self.failed.setdefault(response.url, str(response.status))

        def request(request: Any) -> None:
            self.in_flight[request] = request.url

        def requestfinished(request: Any) -> None:
            self.in_flight.pop(request, None)

        def requestfailed(request: Any) -> None:
            self.in_flight.pop(request, None)
            # Chromium also aborts the body of a 404 (already counted); a
            # blocked third-party request is counted in self.blocked.
            if request.url.startswith(base + "/"):
                self.failed.setdefault(request.url, str(request.failure))

        self.page.route("**/*", route)
        self.page.on("request", request)
        self.page.on("requestfinished", requestfinished)
        self.page.on("requestfailed", requestfailed)
        self.page.on("response", response)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text)
            if m.type == "error" and not m.text.startswith(BENIGN_CONSOLE)
            else None,
        )
        self.page.goto(f"{base}/{name}.html", wait_until="networkidle")

    def settle(self) -> None:
        """Wait until every widget has rendered and no request is in flight.

        Loads every font the page declares on the way (`_LOAD_ALL_FONTS`);
        the ones that fail are in `fonts_failed`, the widget counts in
        `widgets`.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(
                f"() => {{ const w = ({_WIDGET_VIEWS})();"
                " return w.manager === w.manager_loaded && w.rendered === w.views; }",
                timeout=WIDGETS_TIMEOUT_MS,
            )
        except PlaywrightTimeout:
            w = self.page.evaluate(_WIDGET_VIEWS)
            loaded = w["manager"] == w["manager_loaded"]
            manager = "" if loaded else "the widget manager did not load, "
            raise AssertionError(
                f"{self.name}: in {WIDGETS_TIMEOUT_MS / 1000:.0f} s, {manager}"
                f"{w['rendered']} of {w['views']} widget views rendered"
            ) from None
        self.widgets = self.page.evaluate(_WIDGET_VIEWS)
        self.fonts_failed += self.page.evaluate(_LOAD_ALL_FONTS)
        self.wait_for_network()

    def wait_for_network(self) -> None:
        """Until every request the page made has been answered (or failed)."""
        deadline = time.monotonic() + NETWORK_TIMEOUT_S
        while self.in_flight:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: requests still in flight after {NETWORK_TIMEOUT_S:.0f} s: "
                    f"{sorted(self.in_flight.values())[:5]}"
                )
            # Lets playwright deliver the page's events; not a fixed sleep.
            self.page.wait_for_timeout(50)

    def screenshot_on_failure(self) -> None:
        FAILURES.mkdir(parents=True, exist_ok=True)
        path = FAILURES / (f"{self.edition}/{self.name}".strip("/").replace("/", "__") + ".png")
        self.page.screenshot(path=str(path), full_page=True)


def open_visit(request: Any, context: Any, base: str, name: str, edition: str) -> Iterator[Visit]:
    """A `visit` fixture's body: the page opened; a screenshot if its test failed; closed."""
    visit = Visit(context, base, name, edition)
    failed_before = request.session.testsfailed
    yield visit
    if request.session.testsfailed > failed_before:
        visit.screenshot_on_failure()
    visit.page.close()


def check_page(visit: Visit) -> None:
    """Each page loads once; every check runs on it, in a reader's order."""
    check_renders_offline_without_errors(visit)
    check_sliders_move_and_change_the_frame(visit)
    check_exercise_solutions_open_from_their_dropdown(visit)
    check_framework_tabs_switch(visit)
    # What the clicks and key presses loaded must not have failed either.
    visit.wait_for_network()
    check_no_request_failed(visit)


def check_every_built_page_is_visited(html: Path) -> None:
    """No page of the edition built in ``html`` escapes the checks (its pages are `PAGES`)."""
    visited = set(PAGES) | {"search"}
    built = {
        str(path.relative_to(html).with_suffix(""))
        for path in html.rglob("*.html")
        if not path.relative_to(html).parts[0].startswith("_")
    }
    # index.html: only a redirect to the root page
    assert f"url={toc_files()[0]}.html" in (html / "index.html").read_text()
    assert built - {"index"} - visited == set(), "pages no test opens"


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


def check_no_request_failed(visit: Visit) -> None:
    assert visit.blocked == [], f"{visit.name} asks third-party hosts for {visit.blocked[:5]}"
    assert visit.failed == {}, (
        f"{visit.name}: {len(visit.failed)} failed requests, e.g. "
        f"{[f'{reason} {url}' for url, reason in list(visit.failed.items())[:5]]}"
    )
    assert visit.fonts_failed == [], f"{visit.name}: fonts that do not load {visit.fonts_failed}"


def check_renders_offline_without_errors(visit: Visit) -> None:
    page = visit.page
    visit.settle()
    assert _images_decoded(page) == [], f"{visit.name}: images that did not decode"
    visit.wait_for_network()
    check_no_request_failed(visit)
    assert visit.errors == [], f"{visit.name}: console errors {visit.errors[:5]}"
    assert visit.widgets["errors"] == 0, f"{visit.name}: widgets that rendered as errors"
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
