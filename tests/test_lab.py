"""The live `explore` widgets, in JupyterLab, moved by a headless reader.

For chapter 1 and a fix chapter (gradient clipping), the test starts the
project's own ``jupyter lab`` on 127.0.0.1 (random token, free port, its own
runtime and settings directories), opens a notebook generated from the
chapter in headless Chromium with every request to another host blocked,
runs it with *Run > Run All Cells*, then:

- moves one control of the chapter's `explore` widget with the keyboard
  (focus the slider, press an arrow key) and asserts that the figure
  changes (its ``src`` and its pixels) within `LATENCY_BUDGET` seconds;
- in an extra cell, calls `explore` the way a learner might by mistake
  (learning rate 0 in chapter 1; per-variable clipping on top of global
  clipping in the clipping chapter), picks the invalid setting, and asserts
  the widget shows the package's own error message, and no traceback.

What runs: by default the chapter's first cell (imports, style), the
chapter's statements the widget needs (found by name in the chapter file at
test time, so they follow its edits) and the widget's cell verbatim. Set
``EXPLODEBOOK_LAB_CELLS=above`` to run every cell of the chapter up to the
widget instead, exactly as a learner reading top to bottom does (about two
minutes per chapter on a loaded 2-core machine, against ~20 s).

The .md files are opened through jupytext as `make lab` opens the chapters
(the viewer override the Makefile writes into the venv). The report (pages,
blocked requests, widgets moved, latencies, times) is printed (``pytest
-s``) and written to ``_build/lab-report.txt``; a failing test leaves a
screenshot in ``_build/browser-failures/lab-<name>.png``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _lab import LabServer, chapter_notebook, remove
from conftest import ROOT

pytestmark = pytest.mark.book

#: Seconds from a control's change until the new figure is on screen. The
#: default runs take about a second on an idle 2-core machine; the budget
#: allows for a machine shared with builds and other tests
#: (``EXPLODEBOOK_LAB_LATENCY`` overrides it).
LATENCY_BUDGET = float(os.environ.get("EXPLODEBOOK_LAB_LATENCY", "20"))
#: Seconds to run the notebook's cells (kernel start included).
RUN_BUDGET = 300.0
CELLS = os.environ.get("EXPLODEBOOK_LAB_CELLS", "slice")
FAILURES = ROOT / "_build" / "browser-failures"
REPORT = ROOT / "_build" / "lab-report.txt"


def _spec_error(**changes: Any) -> str:
    """The package's own message for an invalid RunSpec setting."""
    from explodebook import RunSpec

    try:
        RunSpec(**changes)
    except ValueError as error:
        return str(error)
    raise AssertionError(f"RunSpec({changes}) is valid")


@dataclass
class Case:
    name: str
    chapter: str
    #: the chapter widget's slider moved with the keyboard, and the key
    control: str
    key: str
    #: an extra cell displaying a widget with an invalid setting
    invalid_cell: str
    #: how to pick the invalid setting: (control, keyboard key or option label)
    invalid_control: str
    invalid_pick: str
    #: the package's message expected in the widget (computed from the package)
    expected_error: Callable[[], str]
    #: an option label to go back to a valid setting afterwards (dropdown)
    valid_again: str | None = None


CASES = [
    Case(
        name="chapter1",
        chapter="01_what_are_exploding_gradients.md",
        control="init_scale",
        key="ArrowRight",
        invalid_cell=(
            "# A learning rate of 0: no training at all?\n"
            "explore(train, {\"learning_rate\": [0.0, 1e-3, 3e-3, 0.01, 0.03]})"
        ),
        invalid_control="learning_rate",
        invalid_pick="Home",  # the slider's first value, 0
        expected_error=lambda: _spec_error(learning_rate=0.0),
    ),
    Case(
        name="clipping",
        chapter="07a_choosing_the_threshold.md",
        control="global_clipnorm",
        key="ArrowRight",
        invalid_cell=(
            "# Per-variable clipping on top of global clipping?\n"
            "explore(\n"
            "    baseline.replace(global_clipnorm=1.0),\n"
            "    {\"clipnorm\": [None, 1.0]},\n"
            "    frameworks=FRAMEWORKS,\n"
            "    draw=draw_clipping,\n"
            ")"
        ),
        invalid_control="clipnorm",
        invalid_pick="1",  # a drop-down: "off" or "1"
        expected_error=lambda: _spec_error(global_clipnorm=1.0, clipnorm=1.0),
        valid_again="off",
    ),
]


@dataclass
class Report:
    started: float = field(default_factory=time.perf_counter)
    lines: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        total = time.perf_counter() - self.started
        out = [
            f"JupyterLab widget test ({CELLS!r} cells), {time.strftime('%Y-%m-%d %H:%M:%S')}",
            *self.lines,
            f"pages opened: {len(self.pages)}",
            *(f"  {page}" for page in self.pages),
            f"requests blocked (not 127.0.0.1): {len(self.blocked)}",
            *(f"  {url}" for url in self.blocked[:20]),
            f"widgets moved: {len(self.moves)}",
            *(f"  {move}" for move in self.moves),
            f"total time: {total:.1f} s",
        ]
        return "\n".join(out)


@pytest.fixture(scope="module")
def lab(browser) -> Iterator[tuple[LabServer, Path, Report]]:
    """The lab server, a scratch directory inside the root, and the report."""
    if not Path(sys.executable).with_name("jupyter").exists():
        pytest.skip(f"no jupyter next to {sys.executable} (install requirements.txt)")
    report = Report()
    home = Path(tempfile.mkdtemp(prefix="explodebook-lab-"))
    (ROOT / "_build").mkdir(exist_ok=True)
    notebooks = Path(tempfile.mkdtemp(prefix="lab-test-", dir=ROOT / "_build"))
    server = LabServer(ROOT, home)
    try:
        up = server.wait_until_up()
        viewer = (
            "the Makefile's overrides"
            if server.settings_from_makefile
            else "the test profile (no Makefile overrides found)"
        )
        report.add(
            f"jupyter lab answered after {up:.1f} s on {server.base} "
            f"(.md opens with jupytext via {viewer})"
        )
        yield server, notebooks, report
    finally:
        server.stop()
        remove(notebooks)
        remove(home)
        text = report.text()
        print("\n" + text)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(text + "\n")


class LabPage:
    """A notebook opened in JupyterLab, third-party hosts blocked."""

    def __init__(self, browser: Any, server: LabServer, notebook: Path, workspace: str) -> None:
        import jupytext

        self.n_cells = len(jupytext.read(notebook).cells)
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.current: Any = None  # the cell under test, for a failure screenshot
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        base = server.base + "/"

        def route(route: Any) -> None:
            url = route.request.url
            if url.startswith((base, "data:", "blob:")):
                route.continue_()
            else:
                self.blocked.append(url)
                route.abort()

        self.page.route("**/*", route)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # Console errors are JupyterLab's as much as the book's: reported only.
        self.console_errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.console_errors.append(m.text[:200]) if m.type == "error" else None,
        )
        rel = notebook.relative_to(ROOT).as_posix()
        self.url = f"{server.base}/lab/workspaces/{workspace}/tree/{rel}"
        self.page.goto(f"{self.url}?token={server.token}", wait_until="domcontentloaded")

    def cell(self, index: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def wait_for_kernel(self, timeout: float = 120.0) -> None:
        """All cells loaded and the kernel idle (accepting its dialog if asked)."""
        page = self.page
        page.wait_for_function(
            "n => document.querySelectorAll('.jp-Notebook .jp-Cell').length === n",
            arg=self.n_cells,
            timeout=timeout * 1000,
        )
        start = time.perf_counter()
        kernel = page.locator(".jp-NotebookPanel-toolbar .jp-KernelName")
        status = page.locator(".jp-Notebook-ExecutionIndicator")
        while time.perf_counter() - start < timeout:
            dialog = page.locator(".jp-Dialog").first
            if dialog.count() and "Select Kernel" in dialog.inner_text():
                dialog.locator(".jp-mod-accept").click()  # the notebook's own kernel
            if (
                kernel.count()
                and "No Kernel" not in kernel.inner_text()
                and status.first.get_attribute("data-status") == "idle"
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"the kernel did not start within {timeout} s")

    def run_all(self, timeout: float) -> float:
        """Run > Run All Cells; seconds until every code cell has run."""
        page = self.page
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            state = page.evaluate(
                """() => {
                    const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
                    const dialog = document.querySelector('.jp-Dialog');
                    const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
                    return {
                        dialog: dialog ? dialog.innerText : null,
                        kernel: indicator ? indicator.dataset.status : null,
                        prompts: cells.map(
                            c => c.querySelector('.jp-InputPrompt').textContent.trim()),
                        errors: [...document.querySelectorAll('.jp-OutputArea-output')]
                            .map(o => o.innerText).filter(t => t.includes('Traceback')),
                    };
                }"""
            )
            if state["errors"]:
                raise AssertionError("a cell failed:\n" + state["errors"][0][-3000:])
            if state["dialog"] or state["kernel"] == "dead":  # e.g. "Kernel Restarting"
                raise AssertionError(
                    f"the kernel died (status {state['kernel']!r}, dialog {state['dialog']!r})"
                )
            if all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"]):
                return time.perf_counter() - start
            time.sleep(0.5)
        raise AssertionError(f"the cells did not finish within {timeout} s: {state['prompts']}")

    def screenshot(self, name: str) -> None:
        """The lab as it is, scrolled to the widget under test if any."""
        FAILURES.mkdir(parents=True, exist_ok=True)
        if self.current is not None:
            try:
                self.current.locator(".jp-OutputArea").scroll_into_view_if_needed(timeout=2000)
            except Exception:  # the screenshot matters more than the scroll
                pass
        self.page.screenshot(path=str(FAILURES / f"lab-{name}.png"), full_page=True)


class Widget:
    """The `explore` widget in one cell's output."""

    def __init__(self, lab_page: LabPage, cell_index: int) -> None:
        self.page = lab_page.page
        lab_page.current = lab_page.cell(cell_index)
        self.output = lab_page.cell(cell_index).locator(".jp-OutputArea")
        self.box = self.output.locator(".widget-vbox").first
        self.box.wait_for(state="visible", timeout=30_000)
        self.image = self.box.locator("img.widget-image")
        self.status = self.box.locator(".widget-html-content").first

    def control(self, name: str) -> Any:
        label = self.page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(name)}$"))
        return self.box.locator(".widget-slider, .widget-dropdown", has=label).first

    def value(self, name: str) -> str:
        control = self.control(name)
        if control.locator(".widget-readout").count():
            return control.locator(".widget-readout").inner_text().strip()
        select = control.locator("select")
        return select.evaluate("s => s.options[s.selectedIndex].text")

    def image_state(self) -> tuple[str | None, bytes]:
        self.image.scroll_into_view_if_needed()
        return self.image.get_attribute("src"), self.image.screenshot()

    def wait(self, js: str, arg: Any, timeout: float, what: str) -> None:
        """Wait for a condition in the page; fail saying what did not happen."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(js, arg=arg, timeout=timeout * 1000)
        except PlaywrightTimeout:
            raise AssertionError(
                f"{what} within {timeout:g} s; the widget says {self.status.inner_text()!r}"
            ) from None

    def wait_status(self, condition: str, timeout: float, what: str) -> str:
        """The status line once ``condition`` (JavaScript on its text ``t``) holds."""
        self.wait(
            f"el => (t => {condition})(el.textContent)", self.status.element_handle(), timeout, what
        )
        return self.status.inner_text()

    def wait_idle(self, timeout: float) -> str:
        """The status line once the widget is no longer running."""
        return self.wait_status("!t.includes('running')", timeout, "the widget did not finish")

    def press(self, name: str, key: str) -> None:
        """A reader's keyboard: focus the slider's handle, press a key."""
        handle = self.control(name).locator(".noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        self.page.keyboard.press(key)

    def pick(self, name: str, label: str) -> None:
        """Choose an option of a drop-down."""
        self.control(name).locator("select").select_option(label=label)

    def watch(self) -> None:
        """Start timing, in the page: key press, 'running' shown, new figure."""
        self.page.evaluate(
            """([status, img]) => {
                const t = {press: null, running: null, image: null};
                window.__ebTimes = t;
                document.addEventListener('keydown', () => {
                    if (t.press === null) t.press = performance.now();
                }, {capture: true, once: true});
                new MutationObserver(() => {
                    if (t.running === null && status.textContent.includes('running'))
                        t.running = performance.now();
                }).observe(status, {childList: true, subtree: true, characterData: true});
                new MutationObserver(() => {
                    if (t.image === null) t.image = performance.now();
                }).observe(img, {attributes: true, attributeFilter: ['src']});
            }""",
            [self.status.element_handle(), self.image.element_handle()],
        )

    def watched(self) -> dict[str, float | None]:
        """Seconds from the key press until the kernel said 'running' and
        until the new figure arrived (None: not seen)."""
        t = self.page.evaluate("() => window.__ebTimes")
        if t["press"] is None:
            return {"running": None, "image": None}
        return {
            k: None if t[k] is None else (t[k] - t["press"]) / 1000 for k in ("running", "image")
        }

    def wait_new_image(self, old_src: str | None, timeout: float) -> None:
        self.wait(
            "([img, old]) => img.src && img.src !== old && img.complete && img.naturalWidth > 0",
            [self.image.element_handle(), old_src],
            timeout,
            "no new figure",
        )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_explore_widget_live(case: Case, lab, browser) -> None:
    server, notebooks, report = lab
    start = time.perf_counter()
    notebook, explore_cell, (invalid_cell,) = chapter_notebook(
        ROOT / "chapters" / case.chapter, notebooks, [case.invalid_cell], cells=CELLS
    )
    lab_page = LabPage(browser, server, notebook, workspace=f"test-{case.name}")
    report.pages.append(f"{case.chapter} as {lab_page.url} ({lab_page.n_cells} cells)")
    try:
        lab_page.wait_for_kernel()
        ran = lab_page.run_all(RUN_BUDGET)
        report.add(
            f"{case.name}: opened and ran {lab_page.n_cells} cells in "
            f"{time.perf_counter() - start:.1f} s (Run All: {ran:.1f} s)"
        )

        # The chapter's widget: move one slider, the figure must change.
        widget = Widget(lab_page, explore_cell)
        assert widget.image.count() == 1, "the widget shows no figure"
        assert "Cannot run" not in widget.wait_idle(LATENCY_BUDGET), widget.status.inner_text()
        before_value = widget.value(case.control)
        src, pixels = widget.image_state()
        widget.watch()
        t0 = time.perf_counter()
        widget.press(case.control, case.key)
        widget.wait_new_image(src, LATENCY_BUDGET)
        latency = time.perf_counter() - t0
        in_page = widget.watched()
        running = "?" if in_page["running"] is None else f"{in_page['running']:.2f} s"
        after_value = widget.value(case.control)
        status = widget.wait_idle(LATENCY_BUDGET)
        new_src, new_pixels = widget.image_state()
        report.moves.append(
            f"{case.name}: {case.control} {before_value} -> {after_value} ({case.key}): "
            f"new figure after {latency:.2f} s (kernel running after {running}) [{status}]"
        )
        assert after_value != before_value, f"{case.control} did not move"
        assert new_src != src and new_pixels != pixels, "the figure did not change"
        assert "Cannot run" not in status, status
        assert latency < LATENCY_BUDGET

        # An invalid setting: the package's message, no traceback.
        bad = Widget(lab_page, invalid_cell)
        assert "Cannot run" not in bad.wait_idle(LATENCY_BUDGET), bad.status.inner_text()
        before_value = bad.value(case.invalid_control)
        bad_src = bad.image.get_attribute("src")
        t0 = time.perf_counter()
        if bad.control(case.invalid_control).locator("select").count():
            bad.pick(case.invalid_control, case.invalid_pick)
            how = f"option {case.invalid_pick!r}"
        else:
            bad.press(case.invalid_control, case.invalid_pick)
            how = case.invalid_pick
        message = bad.wait_status(
            "t.includes('Cannot run this setting')", LATENCY_BUDGET, "no error message"
        )
        latency = time.perf_counter() - t0
        output = bad.output.inner_text()
        report.moves.append(
            f"{case.name}: {case.invalid_control} {before_value} -> "
            f"{bad.value(case.invalid_control)} ({how}): message after {latency:.2f} s [{message}]"
        )
        expected = case.expected_error()
        assert expected in message, (expected, message)
        assert "Traceback" not in output, output
        assert "Traceback" not in lab_page.cell(invalid_cell).inner_text()
        assert bad.image.get_attribute("src") == bad_src  # the last good figure stays
        if case.valid_again is not None:
            t0 = time.perf_counter()
            bad.pick(case.invalid_control, case.valid_again)
            bad.wait_status(
                "!t.includes('Cannot run') && !t.includes('running')",
                LATENCY_BUDGET,
                "the widget did not recover",
            )
            report.moves.append(
                f"{case.name}: {case.invalid_control} back to {case.valid_again!r}: "
                f"valid again after {time.perf_counter() - t0:.2f} s [{bad.status.inner_text()}]"
            )
        assert lab_page.blocked == [], f"requests to other hosts: {lab_page.blocked[:5]}"
        assert lab_page.errors == [], f"page errors: {lab_page.errors[:5]}"
    except BaseException:
        lab_page.screenshot(case.name)
        report.add(f"{case.name}: FAILED (screenshot {FAILURES / f'lab-{case.name}.png'})")
        raise
    finally:
        report.blocked += lab_page.blocked
        if lab_page.console_errors:
            report.add(f"{case.name}: console errors (not checked): {lab_page.console_errors[:5]}")
        report.add(f"{case.name}: done in {time.perf_counter() - start:.1f} s")
        lab_page.page.close()
        server.shutdown_kernels()
