"""`explodebook.book.prebuild`: chapters executed in parallel into MyST-NB's cache.

The point of the module is that the ``jupyter-book build`` that follows
executes nothing, so the key test builds a two-chapter book after a
prebuild and reads the build's log. The book's sources (config, toc,
chapters' code cells) are read by `explodebook.book.sources`, tested here
on the same small books.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from explodebook.book import prebuild as pb
from explodebook.book.sources import Book, code_cells, read_config, read_notebook, toc_pages

ROOT = Path(__file__).resolve().parents[1]

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3 (ipykernel)
  language: python
  name: python3
---
"""

CHAPTER = HEADER + """
# Chapter {n}

Some prose, and a fence that only looks like a cell:

:::{{note}}
Inside a colon fence.
:::

```{{code-cell}} ipython3
import os
from myst_nb import glue
threads = os.environ.get("OMP_NUM_THREADS", "unset")
backend = os.environ.get("MPLBACKEND", "unset")
glue("value_{n}", {n} * 10, display=False)
print("chapter {n}", threads, backend)
```

The value is {{glue:text}}`value_{n}`.

```{{code-cell}} ipython3
shown = {n} * 20
```

Shown inline: {{eval}}`shown * 2` and {{eval}}`f"{{shown / 3:.2f}}"`.
"""


def tiny_book(tmp_path: Path, chapters: int = 2) -> Path:
    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    (book / "intro.md").write_text("# Tiny\n\nNot a notebook.\n")
    for n in range(1, chapters + 1):
        (book / "chapters" / f"c{n}.md").write_text(CHAPTER.format(n=n))
    toc = "format: jb-book\nroot: intro\nchapters:\n" + "".join(
        f"  - file: chapters/c{n}\n" for n in range(1, chapters + 1)
    )
    (book / "_toc.yml").write_text(toc)
    (book / "_config.yml").write_text(
        "title: Tiny\nonly_build_toc_files: true\n"
        "execute:\n  execute_notebooks: cache\n  timeout: 60\n"
        "parse:\n  myst_enable_extensions: [colon_fence, dollarmath]\n"
        "html:\n  use_repository_button: false\n"
        "sphinx:\n  extra_extensions: [explodebook.book.sphinxext]\n"
    )
    return book


def test_the_books_chapters_are_the_toc_notebooks() -> None:
    book = Book.load(ROOT)
    found = pb.chapters(book)
    names = [c.docname for c in found]
    # the pages whose front matter names a kernel (not intro, api, bibliography)
    kernels = [name for name in toc_pages(ROOT) if (ROOT / f"{name}.md").is_file()
               and "\nkernelspec:" in (ROOT / f"{name}.md").read_text().split("\n---", 1)[0]]
    assert names == kernels
    assert {n for n in names if n.startswith("chapters/")} == {
        f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.md")}
    assert names == book.notebooks()
    assert all(c.notebook.cells for c in found)


def test_toc_pages_in_document_order_whatever_the_format(tmp_path: Path) -> None:
    book = tiny_book(tmp_path, 2)  # root and a flat list of chapters
    assert toc_pages(book) == ["intro", "chapters/c1", "chapters/c2"]
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n"
        "  - caption: A\n    chapters:\n"
        "      - file: chapters/c2\n        sections:\n          - file: chapters/c1.md\n"
        "          - url: https://example.org\n"
        "  - caption: B\n    chapters:\n      - file: api\n      - glob: extra/*\n"
    )
    assert toc_pages(book) == ["intro", "chapters/c2", "chapters/c1", "api"]
    real = toc_pages(ROOT)
    assert real[0] == "intro" and real[-1] == "bibliography"
    assert [n for n in real if n.startswith("chapters/")] == sorted(
        f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.md")
    )


def test_notebooks_and_code_cells_are_read_as_myst_nb_reads_them(tmp_path: Path) -> None:
    book = Book.load(tiny_book(tmp_path, 2))
    assert book.config["title"] == "Tiny" and book.config == read_config(book.root)
    assert book.source("intro") == book.root / "intro.md" and book.source("missing") is None
    assert book.read("intro") is None  # Markdown, not a notebook
    assert book.notebooks() == ["chapters/c1", "chapters/c2"]
    # the colon fence is prose (colon_fence is enabled), not a cell
    cell, second = book.code_cells("chapters/c1")
    assert second == "shown = 1 * 20"
    assert cell.startswith("import os\n") and cell.endswith('print("chapter 1", threads, backend)')
    # options (`:tags:` lines or a YAML block) are not part of the source
    path = book.root / "chapters" / "c1.md"
    path.write_text(path.read_text().replace("```{code-cell} ipython3\n", "```{code-cell} ipython3\n:tags: [hide-input]\n"))
    assert code_cells(path, book.config) == [cell, second]
    notebook, _ = read_notebook(path, book.config)
    assert notebook.cells[1].metadata["tags"] == ["hide-input"]
    with pytest.raises(ValueError, match="not a notebook"):
        code_cells(book.root / "intro.md")


def test_cache_path_follows_jupyter_book(tmp_path: Path) -> None:
    assert pb.cache_path(tmp_path, {}) == tmp_path / "_build" / ".jupyter_cache"
    out = tmp_path / "out"
    assert pb.cache_path(tmp_path, {}, out) == out / "_build" / ".jupyter_cache"
    assert pb.cache_path(tmp_path, {"execute": {"cache": "/x/c"}}, out) == Path("/x/c")
    assert pb.cache_path(tmp_path, {"execute": {"cache": "c"}}) == tmp_path / "c"


def test_hash_ignores_prose_but_not_code(tmp_path: Path) -> None:
    from jupyter_cache import get_cache

    cache = get_cache(str(tmp_path / "cache"))
    book = tiny_book(tmp_path, 1)
    path = book / "chapters" / "c1.md"
    config = read_config(book)
    key = pb.notebook_hash(read_notebook(path, config)[0], cache)
    path.write_text(path.read_text().replace("Some prose", "Other prose"))
    assert pb.notebook_hash(read_notebook(path, config)[0], cache) == key
    path.write_text(path.read_text().replace("* 10", "* 11"))
    assert pb.notebook_hash(read_notebook(path, config)[0], cache) != key


def book_build():
    """benchmarks/book_build.py, as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("book_build", ROOT / "benchmarks" / "book_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_build_after_prebuild_executes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = tiny_book(tmp_path)
    out = tmp_path / "out"
    lines: list[str] = []
    monkeypatch.setenv("MPLBACKEND", "agg")  # as `make test` sets it
    report = pb.prebuild(book, path_output=out, jobs=2, log=lines.append)
    assert os.environ["MPLBACKEND"] == "agg"  # the caller's environment is restored
    assert sorted(report["executed"]) == ["chapters/c1", "chapters/c2"], lines
    assert not report["failed"]
    assert all(report["cells"][d] for d in report["executed"])  # per-cell times
    # one kept kernel per worker; benchmarks/book_build.py reads these lines
    assert report["kernel_starts"] > 0 and set(report["cpu"]) == set(report["executed"])
    log = tmp_path / "prebuild.log"
    log.write_text("\n".join(lines))
    parsed = book_build().pages(log)
    assert sorted(parsed["pages"]) == ["chapters/c1", "chapters/c2"], lines
    assert parsed["kernel_cpu"] == pytest.approx(sum(report["cpu"].values()) + report["kernel_starts"], abs=0.2)

    # a second prebuild finds both in the cache
    again = pb.prebuild(book, path_output=out, jobs=2, log=lines.append)
    assert sorted(again["cached"]) == ["chapters/c1", "chapters/c2"] and not again["executed"]

    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", str(book), "-W", "-n", "--keep-going", "--path-output", str(out)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert log.count("Using cached notebook") == 2, log
    assert "Executing notebook" not in log
    page = (out / "_build" / "html" / "chapters" / "c2.html").read_text()
    # executed by prebuild, one thread per kernel, ipykernel's inline backend (not agg)
    assert "chapter 2 1 module://matplotlib_inline" in page
    assert ">20<" in page  # the glued value
    # the inline expressions, evaluated by the prebuild where execution
    # reached them, rendered from the cache (a string without its quotes)
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Shown inline: 80 and 13.33 ." in text, text[text.find("Shown"):][:80]


def test_failed_chapter_is_left_uncached(tmp_path: Path) -> None:
    book = tiny_book(tmp_path, 1)
    path = book / "chapters" / "c1.md"
    path.write_text(path.read_text().replace('print("chapter 1"', 'raise ValueError("boom"); print('))
    lines: list[str] = []
    report = pb.prebuild(book, keep_kernels=False, path_output=tmp_path / "out", jobs=1, log=lines.append)
    assert list(report["failed"]) == ["chapters/c1"] and "boom" in report["failed"]["chapters/c1"]
    assert not report["executed"]
    again = pb.prebuild(book, keep_kernels=False, path_output=tmp_path / "out", jobs=1, dry_run=True, log=lines.append)
    assert not again["cached"]


def test_inline_expressions_are_stored_with_the_cached_chapter(tmp_path: Path) -> None:
    from jupyter_cache import get_cache

    book = tiny_book(tmp_path, 1)
    out = tmp_path / "out"
    report = pb.prebuild(book, keep_kernels=False, path_output=out, jobs=1, log=lambda line: None)
    assert report["executed"] and not report["failed"]
    cache = get_cache(report["cache"])
    (record,) = cache.list_cache_records()
    shown = record.data["expressions"]
    assert shown["shown * 2"] == {"status": "ok", "data": {"text/plain": "40"}, "metadata": {}}
    assert shown['f"{shown / 3:.2f}"']["data"] == {"text/plain": "'6.67'"}

    # a prose edit that adds an expression keeps the cache key (code cells
    # only) but the value is missing: the chapter is executed again
    path = book / "chapters" / "c1.md"
    path.write_text(path.read_text() + "\nAnd {eval}`shown + 1`.\n")
    again = pb.prebuild(book, keep_kernels=False, path_output=out, jobs=1, log=lambda line: None)
    assert list(again["executed"]) == ["chapters/c1"]
    (record,) = cache.list_cache_records()
    assert record.data["expressions"]["shown + 1"]["data"] == {"text/plain": "21"}
    third = pb.prebuild(book, keep_kernels=False, path_output=out, jobs=1, log=lambda line: None)
    assert third["cached"] == ["chapters/c1"] and not third["executed"]


@pytest.mark.parametrize(
    ("prose", "message"),
    [
        ("Broken: {eval}`no_such_name`.", "raised NameError"),
        # the same text, two values at two places: the page could show only one
        ("```{code-cell} ipython3\nshown = 0\n```\n\nAgain {eval}`shown * 2`.", "different values"),
    ],
    ids=["error", "two-values"],
)
def test_a_bad_inline_expression_leaves_the_chapter_uncached(tmp_path: Path, prose: str, message: str) -> None:
    book = tiny_book(tmp_path, 1)
    path = book / "chapters" / "c1.md"
    path.write_text(path.read_text() + "\n" + prose + "\n")
    lines: list[str] = []
    report = pb.prebuild(book, keep_kernels=False, path_output=tmp_path / "out", jobs=1, log=lines.append)
    assert list(report["failed"]) == ["chapters/c1"], lines
    assert message in report["failed"]["chapters/c1"]
    assert any(message in line for line in lines)


SHARING = HEADER + """
# Chapter {n}

```{{code-cell}} ipython3
import os
from explodebook import cache
from explodebook.spec import RunSpec
cache.STORE_MIN_SECONDS = 0.0  # share even this short run
trace = cache.cached_run(RunSpec(task="regression-scaled", steps=40, learning_rate=0.003))
print("folder", os.environ.get(cache.STORE_ENV))
print("wall", repr(trace.wall_time))
print("chapter", {n})  # (pages with the same code share one cache record)
```
"""


def test_the_kernels_share_their_runs_for_one_prebuild(tmp_path: Path) -> None:
    book = tiny_book(tmp_path)
    for n in (1, 2):
        (book / "chapters" / f"c{n}.md").write_text(SHARING.format(n=n))
    # One page after the other, each in a kernel of its own: the second reads the first's run.
    report = pb.prebuild(book, keep_kernels=False, path_output=tmp_path / "out", jobs=1, log=lambda line: None)
    assert sorted(report["executed"]) == ["chapters/c1", "chapters/c2"], report["failed"]
    from jupyter_cache import get_cache

    from explodebook import cache as run_cache

    printed = {}
    for record in get_cache(report["cache"]).list_cache_records():
        notebook = get_cache(report["cache"]).get_cache_bundle(record.pk).nb
        text = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
        printed[Path(record.uri).stem] = dict(line.split(" ", 1) for line in text.splitlines())
    assert set(printed) == {"c1", "c2"}, printed
    assert printed["c1"]["wall"] == printed["c2"]["wall"]  # one run, measured once
    folder = printed["c1"]["folder"]
    assert folder == printed["c2"]["folder"] and folder != "None"
    assert not Path(folder).exists()  # gone with the prebuild
    assert run_cache.STORE_ENV not in os.environ  # the caller's environment is restored
