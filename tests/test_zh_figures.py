"""The Chinese edition's figures: recorded while the book executes, redrawn with translated text.

`explodebook.book.figuretext` records every PNG matplotlib saves (with the
figure, pickled) and redraws a figure with a catalog's translations;
`explodebook.book.figurecache` finds the PNGs of executed notebooks and
makes the edition's copy of the execution cache. The unit tests draw
figures in this process; the tiny-book tests execute a page through
`explodebook.book.prebuild` in a real kernel, as `make book` does.
"""

from __future__ import annotations

import base64
import re
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from babel.messages.pofile import read_po  # noqa: E402

from explodebook.book import figurecache, figuretext  # noqa: E402
from explodebook.book import prebuild as pb  # noqa: E402
from explodebook.book.i18n import catalog_stats  # noqa: E402
from conftest import toc_files  # noqa: E402
from test_prebuild import HEADER  # noqa: E402  (the tiny books' page header)

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "locales" / "zh_CN" / "LC_MESSAGES" / "figures.po"

ZH = {
    "loss of two runs": "两次运行的损失",
    "step": "步",
    "exploded at step 40": "第 40 步爆炸",
    "clipped": "裁剪后",
    "PyTorch": "PyTorch",
    "norm of $W$": "$W$ 的范数",
    "low": "低",
    "high": "高",
    # a catalog's message: the numbers are placeholders (explodebook.book.valuetext)
    "exploded at step {0}": "第 {0} 步爆炸",
}


def draw() -> plt.Figure:
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(6, 2.5))
    ax.plot([1, 2, 4, 8], label="clipped")
    ax.plot([1, 3, 9, 27], label="σ = 3")  # no word: not a message
    ax.set(title="loss of two runs", xlabel="step", ylabel="norm of $W$", yscale="log")
    ax.annotate("exploded at step 40", (2, 9))
    ax.legend()
    bars.bar(["PyTorch", "Keras"], [1, 2])  # category tick labels
    bars.set_yticks([1, 2], ["low", "high"])  # tick labels given as text
    bars.set_title("0.5")  # a number: not a message
    return fig


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Recording on in this process, into a fresh store; off again afterwards."""
    import matplotlib.backend_bases as bases

    monkeypatch.setattr(bases.FigureCanvasBase, "print_figure", bases.FigureCanvasBase.print_figure)
    folder = tmp_path / "store"
    assert figuretext.install(folder)
    return folder


def png_of(fig: plt.Figure, **kwargs) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60, **kwargs)
    return buffer.getvalue()


def test_messages_are_the_words_of_titles_labels_legends_annotations_and_categories() -> None:
    fig = draw()
    png_of(fig)  # tick labels exist once drawn; numeric ones are not messages
    found = figuretext.messages(fig)
    assert set(found) == {k for k in ZH if "{" not in k} | {"Keras"}
    assert "σ = 3" not in found and "0.5" not in found
    plt.close(fig)


@pytest.mark.parametrize(("text", "expected"), [
    ("step", True), ("$10^{-2}$", False), ("σ = 3", False), ("1/6: predicting the mean", True),
    ("$\\eta$ = 0.1", False), ("‖W‖₂ / step 0 (log)", True), ("", False),
    ("learning_rate = 1e-06", False), ("depth = 10", False), ("truncation k = 3", True),
])  # fmt: skip
def test_a_message_has_a_word_outside_mathtext(text: str, expected: bool) -> None:
    assert figuretext.is_message(text) is expected


def test_every_saved_png_is_recorded_with_its_figure(store: Path) -> None:
    fig = draw()
    png = png_of(fig, bbox_inches="tight")
    stored = figuretext.load(store / f"{figuretext.png_key(png)}.pickle")
    assert stored["kwargs"]["dpi"] == 60 and stored["kwargs"]["bbox_inches"] == "tight"
    assert figuretext.messages(stored["figure"]) == figuretext.messages(fig)
    # saving the same figure again to the same bytes writes nothing new
    assert png_of(fig, bbox_inches="tight") == png
    assert len(list(store.glob("*.pickle"))) == 1
    plt.close(fig)


def test_redraw_without_translations_gives_back_the_same_png(store: Path) -> None:
    # only the words change: everything else of the figure is kept exactly
    fig = draw()
    png = png_of(fig, bbox_inches="tight")
    stored = figuretext.load(store / f"{figuretext.png_key(png)}.pickle")
    same, missing = figuretext.redraw(stored, lambda text: text)
    assert same == png and not missing
    plt.close(fig)


def test_redraw_draws_the_translations(store: Path) -> None:
    fig = draw()
    png = png_of(fig)
    key = figuretext.png_key(png)
    english, _ = figuretext.redraw(figuretext.load(store / f"{key}.pickle"), lambda text: text)
    chinese, missing = figuretext.redraw(figuretext.load(store / f"{key}.pickle"), ZH.get)
    assert missing == ["Keras"]  # not in the catalog: left in English, and said
    assert chinese != english
    figure = figuretext.load(store / f"{key}.pickle")["figure"]
    figuretext.translate(figure, ZH.get)
    ax, bars = figure.axes
    assert ax.get_title() == "两次运行的损失" and ax.get_xlabel() == "步"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["裁剪后", "σ = 3"]
    assert figuretext.cjk_font() in ax.title.get_fontfamily()
    # a label with mathtext is drawn in the CJK font alone (mathtext does not fall back)
    assert ax.yaxis.label.get_fontfamily() == [figuretext.cjk_font()]
    figure.canvas.draw()
    assert [t.get_text() for t in bars.get_xticklabels()] == ["PyTorch", "Keras"]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["低", "高"]
    plt.close("all")


def test_no_cjk_font_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib import font_manager

    figuretext.cjk_font.cache_clear()
    monkeypatch.setattr(font_manager, "findSystemFonts", lambda *a, **k: ["/usr/share/fonts/DejaVuSans.ttf"])
    try:
        with pytest.raises(RuntimeError, match="apt-get install fonts-wqy-microhei"):
            figuretext.cjk_font()
    finally:
        figuretext.cjk_font.cache_clear()


def test_a_figure_that_cannot_be_pickled_is_reported_not_raised(store: Path) -> None:
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, pos: f"{x:g} s"))
    ax.set_title("a lambda inside")
    png = png_of(fig)  # the page's figure is still saved
    assert png.startswith(figuretext.PNG_SIGNATURE)
    error = store / f"{figuretext.png_key(png)}.error"
    assert "pickle" in error.read_text().lower() or "lambda" in error.read_text()
    plt.close(fig)


def _notebook(pngs: list[bytes]) -> dict:
    b64 = [base64.b64encode(p).decode() for p in pngs]
    return {
        "cells": [
            {"cell_type": "code", "outputs": [{"output_type": "display_data",
                                               "data": {"image/png": b64[0] + "\n", "text/plain": "<Figure>"}}]},
            {"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {"text/html": [
                f'<img src="data:image/png;base64,{b64[1]}">\n', f'<script>["data:image/png;base64,{b64[0]}"]</script>']}}]},
            {"cell_type": "markdown", "source": "data:image/png;base64,"},
        ],
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {
            "m1": {"model_name": "ImageModel", "buffers": [{"path": ["value"], "encoding": "base64", "data": b64[1]}]},
            "m2": {"model_name": "HTMLModel", "state": {"value": "<b>no png</b>"}},
        }}}},
    }  # fmt: skip


def test_pngs_are_found_in_outputs_scrubber_html_and_widget_state() -> None:
    one = png_of(draw())
    fig, ax = plt.subplots()
    ax.set_title("another figure")
    two = png_of(fig)
    plt.close("all")
    notebook = _notebook([one, two])
    assert figurecache.pngs(notebook) == [one, two, one, two]
    swapped = figurecache.rewrite_pngs(notebook, lambda png: b"\x89PNG\r\n\x1a\nNEW" if png == one else None)
    assert swapped == 2
    assert figurecache.pngs(notebook) == [b"\x89PNG\r\n\x1a\nNEW", two, b"\x89PNG\r\n\x1a\nNEW", two]


FIGURE_CHAPTER = HEADER + """
# Figures

```{code-cell} ipython3
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(4, 2))
ax.plot([1, 2, 4], label="clipped")
ax.set(title="loss of two runs", xlabel="step")
ax.legend();
```

```{code-cell} ipython3
from explodebook.scrubber import scrubber

def frame(n):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(range(n + 2))
    ax.set_title("exploded at step 40" if n else "clipped")
    return fig

scrubber([0, 1], frame, labels=["a", "b"])
```
"""


def figure_book(tmp_path: Path) -> Path:
    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    (book / "intro.md").write_text("# Tiny\n")
    (book / "chapters" / "figs.md").write_text(FIGURE_CHAPTER)
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/figs\n")
    (book / "_config.yml").write_text("title: Tiny\nexecute:\n  execute_notebooks: cache\n  timeout: 120\n")
    return book


@pytest.mark.slow
@pytest.mark.parametrize("keep_kernels", [True, False], ids=["kept-kernel", "own-kernel"])
def test_prebuild_records_every_figure_of_the_page_and_the_edition_redraws_them(
    tmp_path: Path, keep_kernels: bool
) -> None:
    book = figure_book(tmp_path)
    lines: list[str] = []
    report = pb.prebuild(book, keep_kernels=keep_kernels, jobs=1, log=lines.append)
    assert report["executed"] and not report["failed"], lines
    cache = Path(report["cache"])
    store = figurecache.figure_store(cache)
    ((docname, notebook_file),) = figurecache.page_notebooks(book, cache)
    notebook = json.loads(notebook_file.read_text())
    pngs = figurecache.pngs(notebook)
    # the inline figure and the scrubber's two frames (the page embeds some twice)
    assert len(set(pngs)) == 3
    assert figurecache.missing_figures(notebook_file, store) == []

    template = tmp_path / "figures.pot"
    assert figurecache.write_template(book, cache, template) == 6
    with open(template, "rb") as handle:
        messages = {m.id: m.locations for m in read_po(handle) if m.id}
    # the figures' words, and the scrubber's buttons (its labels "a", "b" are no words)
    # (numbers as placeholders: one message for "exploded at step 40" and "... 41")
    assert set(messages) == {"loss of two runs", "step", "exploded at step {0}", "clipped", "Prev", "Next"}
    assert messages["step"] == [("chapters/figs", None)]

    po = tmp_path / "figures.po"
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                  + "".join(f'msgid "{k}"\nmsgstr "{ZH[k]}"\n\n' for k in messages if k in ZH),
                  encoding="utf-8")  # fmt: skip
    target = tmp_path / "zh_cache"
    result = figurecache.translate_cache(book, cache, target, po, "zh_CN")
    assert result.redrawn == 3 and not result.unrecorded
    assert result.untranslated == {"chapters/figs": ["Prev", "Next"]}
    ((_, translated_file),) = figurecache.page_notebooks(book, target)
    translated = figurecache.pngs(json.loads(translated_file.read_text()))
    assert len(translated) == len(pngs) and not set(translated) & set(pngs)
    # the English cache is untouched, and a second build reuses the redraws
    assert figurecache.pngs(json.loads(notebook_file.read_text())) == pngs
    again = figurecache.translate_cache(book, cache, target, po, "zh_CN")
    assert again.reused == again.redrawn == 3

    # `make book-zh`'s command: the book's own cache, the edition's next to it
    assert figurecache._main(["translate", "--language", "zh_CN", "--book", str(book)]) == 0
    assert figurecache.edition_cache(cache, "zh_CN") == cache.with_name(".jupyter_cache-zh_CN")
    assert list(figurecache.page_notebooks(book, cache.with_name(".jupyter_cache-zh_CN")))

    # a page cached without its figures recorded is executed again
    for path in store.glob("*.pickle"):
        path.unlink()
    third = pb.prebuild(book, keep_kernels=keep_kernels, jobs=1, log=lines.append)
    assert list(third["executed"]) == ["chapters/figs"], lines
    assert any("not recorded" in line for line in lines)
    assert figurecache.missing_figures(notebook_file, store) == []


def test_the_figures_catalog_is_complete() -> None:
    stats = catalog_stats(CATALOG)
    assert stats.total > 0
    assert (stats.untranslated, stats.fuzzy) == (0, 0), f"{CATALOG.name}: {stats}"


def test_figure_translations_keep_every_number_math_span_and_symbol() -> None:
    import re

    keep = re.compile(r"\$[^$]*\$|\d+(?:\.\d+)?(?:e[-+]?\d+)?|[‖∇σηΣ∂⋯²³₀-₉ₜₖ]")
    with open(CATALOG, "rb") as handle:
        catalog = read_po(handle)
    bad = [(m.id, m.string) for m in catalog if m.id and m.string
           and sorted(keep.findall(m.id)) != sorted(keep.findall(m.string))]  # fmt: skip
    assert not bad, "\n".join(f"{i!r} -> {s!r}" for i, s in bad[:20])


@pytest.mark.book
def test_the_figures_catalog_is_in_step_with_the_books_figures(build, tmp_path: Path) -> None:
    # what `make catalogs` would write from the figures the build recorded
    assert build.returncode == 0
    template = tmp_path / "figures.pot"
    figurecache.write_template(ROOT, ROOT / "_build" / ".jupyter_cache", template)
    with open(template, "rb") as pot, open(CATALOG, "rb") as po:
        english = {m.id for m in read_po(pot) if m.id}
        catalog = {m.id for m in read_po(po) if m.id}
    assert english == catalog, (
        f"figures.po out of step with the book's figures ({len(english - catalog)} new or changed, "
        f"{len(catalog - english)} gone, e.g. {sorted(english - catalog)[:3]}); run `make catalogs`"
    )


def test_a_scrubbers_title_labels_and_buttons_are_messages_and_translate() -> None:
    from explodebook.scrubber import scrubber

    def frame(k: int) -> plt.Figure:
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot(range(k + 2))
        return fig

    shown = scrubber([0, 1], frame, labels=["truncation k = 2", "σ = 3"], title="Truncation <length> (no kernel needed)")
    html_text = shown._repr_html_()
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"text/html": html_text.splitlines(keepends=True)}}]}]}  # fmt: skip
    assert figurecache.scrubber_messages(notebook) == [
        "Truncation <length> (no kernel needed)", "truncation k = 2", "Prev", "Next"]
    zh = {"Truncation <length> (no kernel needed)": "截断长度（无需内核）", "truncation k = 2": "截断 k = 2",
          "Prev": "上一帧"}  # fmt: skip
    assert figurecache.translate_scrubbers(notebook, zh.get) == ["Next"]
    out = "".join(notebook["cells"][0]["outputs"][0]["data"]["text/html"])
    assert '<div class="eb-scrubber-title">截断长度（无需内核）</div>' in out
    assert 'alt="截断 k = 2"' in out and 'aria-valuetext="截断 k = 2"' in out and ">截断 k = 2</output>" in out
    assert "&lsaquo; 上一帧</button>" in out and ">Next &rsaquo;" in out
    labels = json.loads(re.search(r"var labels = (\[.*?\]);", out).group(1))
    assert labels == ["截断 k = 2", "σ = 3"]
    # the frames are untouched
    assert figurecache.pngs(notebook) == figurecache.pngs(
        {"cells": [{"cell_type": "code", "outputs": [{"data": {"text/html": html_text}}]}]})


@pytest.fixture(scope="module")
def zh_build(build, tmp_path_factory: pytest.TempPathFactory):
    """The Chinese edition, built once per run (tests/_zh_edition.py), after the English book."""
    from _zh_edition import zh_edition

    return zh_edition(build, tmp_path_factory)


@pytest.mark.book
def test_the_zh_build_redrew_the_figures_and_executed_nothing(zh_build) -> None:
    log = zh_build.stdout + zh_build.stderr
    assert zh_build.returncode == 0, log[-3000:]
    assert re.search(r"figures: \d+ in zh_CN", log), "the figures were not translated"
    assert "Executing" not in log


@pytest.mark.book
@pytest.mark.parametrize("page", [p for p in toc_files() if p.startswith("chapters/")])
def test_a_zh_page_shows_its_figures_redrawn_and_its_sliders_in_chinese(zh_build, page: str) -> None:
    from _zh_edition import ZH_HTML

    english = (ROOT / "_build" / "html" / f"{page}.html").read_text(encoding="utf-8")
    chinese = (ZH_HTML / f"{page}.html").read_text(encoding="utf-8")
    images = [re.findall(r'src="[./]*_images/([^"]+\.png)"', html) for html in (english, chinese)]
    assert len(images[0]) == len(images[1]), "a figure is missing from the Chinese page"
    if images[0]:  # the same figures, drawn again: every one of them has words
        assert not set(images[0]) & set(images[1]), "a figure is the English one"
    for title in re.findall(r'eb-scrubber-title">([^<]*)<', chinese):
        assert re.search(r"[\u4e00-\u9fff]", title), f"slider title in English: {title}"


def test_a_recorded_figure_that_cannot_be_loaded_stays_english_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A figure can pickle a function the page defined by its name (a tick
    # formatter, say), which the process that redraws cannot load.
    import pickle

    fig, ax = plt.subplots()
    ax.set_title("a title")
    png = png_of(fig)
    plt.close(fig)
    source = tmp_path / "cache"
    (source / "figures").mkdir(parents=True)
    (source / "figures" / f"{figuretext.png_key(png)}.pickle").write_bytes(
        pickle.dumps({"figure": None})[:-4] + b"junk")  # fmt: skip
    (source / "nb.ipynb").write_text(json.dumps(_notebook([png, png])))
    monkeypatch.setattr(figurecache, "page_notebooks", lambda book, cache: iter([("page", Path(cache) / "nb.ipynb")]))
    report = figurecache.translate_cache(tmp_path, source, tmp_path / "zh", tmp_path / "none.po", "zh_CN")
    assert report.unpicklable == {"page": 1} and report.redrawn == 0
    assert figurecache.pngs(json.loads((tmp_path / "zh" / "nb.ipynb").read_text())) == [png] * 4
