"""Publishing: the launch notebooks, the launch branch, the launch and download links.

The fast tests generate the notebooks and compute the launch URLs with
sphinx-book-theme's own code on a stand-in Sphinx application (no book
build). The ``book`` test checks the same links in the built HTML.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest
import yaml

from conftest import ROOT, toc_files
from explodebook.book import publish, sphinxext
from explodebook.book.sources import Book

BOOK = Book.load(ROOT)
# Every executable page (a MyST notebook: its front matter names a kernel).
CHAPTERS = [
    name for name in toc_files()
    if (ROOT / f"{name}.md").is_file() and "\nkernelspec:" in (ROOT / f"{name}.md").read_text().split("\n---", 1)[0]
]
CONFIG = BOOK.config
REPOSITORY = publish.Repository.from_config(CONFIG)


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("notebooks")
    publish.write_notebooks(ROOT, out)
    return out


def test_a_notebook_for_every_toc_chapter(notebooks: Path) -> None:
    assert CHAPTERS, "no chapters in _toc.yml"
    assert publish.toc_chapters(ROOT) == CHAPTERS
    written = sorted(p.relative_to(notebooks).as_posix() for p in notebooks.rglob("*.ipynb"))
    assert written == sorted(f"{name}.ipynb" for name in CHAPTERS)


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_opens_and_has_the_chapters_code_cells_in_order(notebooks: Path, name: str) -> None:
    notebook = nbformat.read(notebooks / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    assert "jupytext" not in notebook.metadata, "nothing should sync it back to the .md"
    setup, *cells = notebook.cells
    assert setup.cell_type == "code" and publish.SETUP_TAG in setup.metadata.tags
    # jupytext's conversion has the code cells MyST-NB reads and the build executes
    code = [cell.source.strip() for cell in cells if cell.cell_type == "code"]
    assert code == [source.strip() for source in BOOK.code_cells(name)]
    assert all(not cell.get("outputs") for cell in cells if cell.cell_type == "code")
    assert sum(cell.cell_type == "markdown" for cell in cells) >= 5


def test_notebooks_are_generated_identically(notebooks: Path, tmp_path: Path) -> None:
    publish.write_notebooks(ROOT, tmp_path)
    for name in CHAPTERS:
        assert (tmp_path / f"{name}.ipynb").read_bytes() == (notebooks / f"{name}.ipynb").read_bytes()


def test_setup_cell_installs_from_the_launch_branch_and_is_a_no_op_here(monkeypatch) -> None:
    cell = publish.setup_cell(REPOSITORY)
    assert f"git+{REPOSITORY.url}@{REPOSITORY.branch}" in cell.source
    assert "myst" not in cell.source  # the chapters' numbers need no MyST-NB any more
    assert "myst-nb" in publish.setup_cell(REPOSITORY, myst_nb=True).source  # a chapter that still glues
    calls: list[Any] = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append(args))
    # Here the package is installed: nothing runs.
    exec(compile(cell.source, "setup", "exec"), {"__name__": "setup"})
    assert calls == []
    # Where it is missing (Colab), pip installs it.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "explodebook" else real(name, *a)
    )
    exec(compile(cell.source, "setup", "exec"), {"__name__": "setup"})
    assert len(calls) == 1 and calls[0][0][-1] == REPOSITORY.install_spec


def test_launch_notebooks_carry_the_books_numbers_and_install_only_what_they_import(tmp_path: Path) -> None:
    source = tmp_path / "c.md"
    source.write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"
        "# C\n\n```{code-cell} ipython3\nloss = 1 / 3\n```\n\n"
        "Loss {eval}`f\"{loss:.2f}\"`, step {eval}`step`.\n"
    )
    notebook = publish.chapter_notebook(source, REPOSITORY, {'f"{loss:.2f}"': "0.33"})
    assert notebook.cells[-1].source == "Loss 0.33, step {eval}`step`."  # unknown: left as is
    assert "myst" not in notebook.cells[0].source
    source.write_text(source.read_text().replace("loss = 1 / 3", "from myst_nb import glue\nloss = 1 / 3"))
    assert "myst-nb" in publish.chapter_notebook(source, REPOSITORY).cells[0].source


# -- the launch URLs, as sphinx-book-theme builds them ------------------------


class _Config(SimpleNamespace):
    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def theme_launch_urls(config: dict[str, Any], name: str, tmp_path: Path) -> dict[str, str]:
    """The launch buttons sphinx-book-theme puts on a chapter page, after the
    book's own extension: ``{button text: url}``, and ``".ipynb"``: the
    notebook the download button offers, if any."""
    from jupyter_book.config import yaml_to_sphinx
    from sphinx_book_theme.header_buttons import update_context_with_repository_info
    from sphinx_book_theme.header_buttons.launch import add_launch_buttons

    sphinx_config = yaml_to_sphinx(config)[0]
    app = SimpleNamespace(
        builder=None,
        config=_Config(html_theme_options=sphinx_config["html_theme_options"], html_context={}),
        env=SimpleNamespace(
            doc2path=lambda docname: str(ROOT / f"{docname}.md"),
            metadata={name: {"kernelspec": {"name": "python3"}}},
        ),
        outdir=str(tmp_path / "_build" / "html"),
    )
    # The theme copies MyST-NB's executed notebook for the download button.
    executed = tmp_path / "_build" / "jupyter_execute" / f"{name}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    executed.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    update_context_with_repository_info(app)
    context = {
        "pagename": name,
        "sourcename": f"{name}.md",
        "page_source_suffix": ".md",
        "header_buttons": [],
        **app.config.html_context,
    }
    add_launch_buttons(app, name, "page.html", context, None)
    sphinxext._launch_notebooks(app, name, "page.html", context, None)
    groups = [g for g in context["header_buttons"] if g.get("label") == "launch-buttons"]
    urls = {button["text"]: button["url"] for group in groups for button in group["buttons"]}
    if "ipynb_source" in context:
        urls[".ipynb"] = context["ipynb_source"]
    return urls


@pytest.mark.parametrize("name", CHAPTERS)
def test_launch_urls_open_the_generated_notebooks(notebooks: Path, name: str, tmp_path: Path) -> None:
    urls = theme_launch_urls(CONFIG, name, tmp_path)
    org, repo, branch = REPOSITORY.org, REPOSITORY.name, REPOSITORY.branch
    path = f"{name}.ipynb"
    assert urls[".ipynb"] == path  # downloaded from _sources/, MyST-NB's executed copy
    assert urls["Colab"] == f"https://colab.research.google.com/github/{org}/{repo}/blob/{branch}/{path}"
    assert urls["Binder"] == f"https://mybinder.org/v2/gh/{org}/{repo}/{branch}?urlpath=lab/tree/{path}"
    # The launch tree puts each notebook at that path, next to its chapter.
    assert (notebooks / path).is_file()


def test_the_launch_branch_is_not_the_source_branch() -> None:
    # _config.yml's repository.branch: the launch notebooks are generated
    # and pushed to a branch of their own, never committed to main.
    assert REPOSITORY.launch_branch() not in publish.SOURCE_BRANCHES


def test_student_edition_has_no_launch_buttons(tmp_path: Path) -> None:
    from explodebook.coursework import student_config

    student = student_config(CONFIG, tmp_path / "cache")
    assert theme_launch_urls(student, CHAPTERS[0], tmp_path) == {}


def test_extension_leaves_other_pages_and_buttons_alone() -> None:
    context = {
        "page_source_suffix": ".rst",
        "header_buttons": [{"label": "launch-buttons", "buttons": [{"url": "https://x/a.rst"}]}],
    }
    sphinxext._launch_notebooks(None, "a", "page.html", context, None)
    assert context["header_buttons"][0]["buttons"][0]["url"] == "https://x/a.rst"
    context = {
        "page_source_suffix": ".md",
        "header_buttons": [
            {"label": "download-buttons", "buttons": [{"url": "../_sources/a.md"}]},
            {"label": "launch-buttons", "buttons": [{"url": "https://h/v2/gh/o/r/b?urlpath=lab/tree/a.md"}]},
        ],
    }
    sphinxext._launch_notebooks(None, "a", "page.html", context, None)
    assert context["header_buttons"][0]["buttons"][0]["url"] == "../_sources/a.md"
    assert context["header_buttons"][1]["buttons"][0]["url"].endswith("lab/tree/a.ipynb")


# -- the launch branch's tree, Binder ------------------------------------------


def test_launch_tree_has_the_committed_files_notebooks_and_binder_setup(tmp_path: Path) -> None:
    # A scratch repository with the book's files and the launch branch set.
    source = tmp_path / "source"
    for path in ["_toc.yml", "requirements.txt", "pyproject.toml", *[f"{n}.md" for n in CHAPTERS]]:
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, source / path)
    config = dict(CONFIG, repository={"url": REPOSITORY.url, "branch": "notebooks"})
    (source / "_config.yml").write_text(yaml.safe_dump(config))
    (source / "uncommitted.txt").write_text("not published")
    (source / ".github" / "workflows").mkdir(parents=True)
    (source / ".github" / "workflows" / "pages.yml").write_text("name: x\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(source)]
    subprocess.run(["git", "init", "-q", str(source)], check=True)
    subprocess.run([*git, "add", "_config.yml", "_toc.yml", "requirements.txt", "pyproject.toml",
                    *[f"{n}.md" for n in CHAPTERS], ".github"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "book"], check=True)

    tree = publish.write_launch_tree(source, tmp_path / "launch")
    assert not (tree / "uncommitted.txt").exists() and not (tree / ".git").exists()
    assert (tree / "_config.yml").is_file() and not (tree / ".github").exists()
    for name in CHAPTERS:
        assert (tree / f"{name}.md").is_file() and (tree / f"{name}.ipynb").is_file()
        first = nbformat.read(tree / f"{name}.ipynb", as_version=4).cells[0]
        assert f"{REPOSITORY.url}@notebooks" in first.source
    # Binder reads binder/ instead of the root: the book's requirements with
    # PyTorch's CPU wheel index; `-e .` is installed from the repository root.
    requirements = (tree / "binder" / "requirements.txt").read_text()
    assert f"--extra-index-url {publish.TORCH_CPU_INDEX}" in requirements
    assert requirements.endswith((ROOT / "requirements.txt").read_text())
    lines = [line.split("#")[0].strip() for line in requirements.splitlines()]
    assert "-e ." in lines and any(re.fullmatch(r"torch==[\d.]+", line) for line in lines)
    assert (tree / "binder" / "runtime.txt").read_text().strip() == f"python-{publish.BINDER_PYTHON}"


def test_launch_tree_refuses_the_source_branch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="branch of their own"):
        publish.Repository("o", "r", "main").launch_branch()


# -- the site under a sub-path ----------------------------------------------------


def test_check_site_finds_host_absolute_and_missing_links(tmp_path: Path) -> None:
    (tmp_path / "chapters").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "a.css").write_text("")
    (tmp_path / "index.html").write_text(
        '<a href="chapters/x.html#top">x</a><link href="_static/a.css"><a href="#s">s</a>'
        '<a href="https://colab.research.google.com/github/o/r/blob/b/x.ipynb">c</a>'
    )
    (tmp_path / "chapters" / "x.html").write_text('<img src="../_static/a.css"><a href="../">up</a>')
    assert publish.check_site(tmp_path) == []
    (tmp_path / "chapters" / "x.html").write_text('<script src="/_static/a.css"></script><a href="y.html">')
    problems = publish.check_site(tmp_path)
    assert len(problems) == 2
    assert "absolute to the host" in problems[0] and "missing file" in problems[1]


# -- the built book ----------------------------------------------------------------


@pytest.mark.book
def test_built_pages_have_launch_and_download_links_to_notebooks(build) -> None:
    html = ROOT / "_build" / "html"
    assert build.returncode == 0, "the book did not build; see test_book"
    branch = REPOSITORY.branch
    for name in CHAPTERS:
        page = html / f"{name}.html"
        hrefs = re.findall(r'href="([^"]+)"', page.read_text(encoding="utf-8"))
        colab = [h for h in hrefs if h.startswith("https://colab.research.google.com/")]
        binder = [h for h in hrefs if h.startswith("https://mybinder.org/")]
        assert colab == [f"https://colab.research.google.com/github/{REPOSITORY.org}/"
                         f"{REPOSITORY.name}/blob/{branch}/{name}.ipynb"], f"{name}: {colab}"
        assert len(binder) == 1 and binder[0].endswith(f"/{branch}?urlpath=lab/tree/{name}.ipynb")
        downloads = [h for h in hrefs if h.endswith(".ipynb") and "://" not in h]
        assert downloads, f"{name}: no .ipynb download link"
        for href in downloads:
            notebook = (page.parent / href).resolve()
            assert notebook.is_file() and html in notebook.parents, f"{name}: {href} is missing"
            executed = nbformat.read(notebook, as_version=4)
            assert any(cell.get("outputs") for cell in executed.cells), f"{href} is not executed"
    # Served from https://<org>.github.io/<repo>/: every link stays inside.
    assert publish.check_site(html) == []
