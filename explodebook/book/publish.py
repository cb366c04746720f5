"""Publishing the book: launch notebooks, the launch branch, the site check.

The book's chapters are MyST Markdown notebooks. Colab opens only ``.ipynb``
files stored on GitHub, and Binder opens a file of a branch, so the
Colab/Binder launch buttons open *generated* notebooks on a branch of their
own (``repository.branch`` in ``_config.yml``, e.g. ``notebooks``), never on
``main``:

- ``python -m explodebook.book.publish notebooks OUT`` converts every chapter of
  ``_toc.yml`` with jupytext into ``OUT/chapters/<name>.ipynb`` (no outputs),
  with one set-up cell first that installs the companion package where it
  is missing (Colab);
- ``python -m explodebook.book.publish launch-tree OUT`` writes the tree of the
  launch branch: the committed files of ``HEAD`` (``git archive``), the
  notebooks next to their chapters, and Binder's configuration
  (``binder/requirements.txt``: ``requirements.txt`` with PyTorch's CPU wheel
  index, ``binder/runtime.txt``). The Pages workflow commits that tree and
  force-pushes it to the launch branch;
- ``python -m explodebook.book.publish check-site HTML`` checks the built HTML
  for links that break when the book is served from a sub-path
  (``https://<org>.github.io/<repo>/``) or point at missing files.

The launch buttons themselves are sphinx-book-theme's; the book's Sphinx
extension (``explodebook.book.sphinxext``) makes them open ``<page>.ipynb``
instead of the page's ``.md`` source.
"""

from __future__ import annotations

import argparse
import html.parser
import io
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from explodebook.book import expressions
from explodebook.book.sources import Book, read_config

__all__ = [
    "Repository",
    "toc_chapters",
    "setup_cell",
    "chapter_notebook",
    "write_notebooks",
    "binder_requirements",
    "write_launch_tree",
    "check_site",
]

#: Tag of the generated set-up cell (the first cell of every launch notebook).
SETUP_TAG = "launch-setup"
#: Branches the launch notebooks must never be pushed to.
SOURCE_BRANCHES = ("main", "master")
#: PyTorch's index of CPU-only wheels: without it pip installs the CUDA build
#: (several GB) on Linux.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Binder's Python (``binder/runtime.txt``): the version the book is tested on.
BINDER_PYTHON = "3.11"


@dataclass(frozen=True)
class Repository:
    """The GitHub repository the book is published from (``_config.yml``).

    Attributes:
        org: the user or organization.
        name: the repository's name.
        branch: the branch the launch buttons open (``repository.branch``).
    """

    org: str
    name: str
    branch: str

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Repository:
        """The repository of a parsed ``_config.yml``.

        Raises:
            ValueError: no ``repository.url``, or not a GitHub repository
                (Colab opens notebooks from GitHub only).
        """
        repository = config.get("repository") or {}
        url = str(repository.get("url") or "").strip().rstrip("/")
        if url.endswith(".git"):
            url = url[: -len(".git")]
        parts = urlsplit(url)
        path = [part for part in parts.path.split("/") if part]
        if parts.netloc.lower() != "github.com" or len(path) != 2:
            raise ValueError(
                f"repository.url in _config.yml must be https://github.com/<org>/<repo>, got {url!r}"
            )
        return cls(org=path[0], name=path[1], branch=str(repository.get("branch") or "main"))

    @property
    def url(self) -> str:
        return f"https://github.com/{self.org}/{self.name}"

    @property
    def pages_url(self) -> str:
        """Where GitHub Pages serves a project site (without a custom domain)."""
        return f"https://{self.org.lower()}.github.io/{self.name}/"

    @property
    def install_spec(self) -> str:
        """A pip requirement for the companion package from the launch branch."""
        return f"explodebook @ git+{self.url}@{self.branch}"

    def launch_branch(self) -> str:
        """The launch branch, checked: generated notebooks never go to ``main``.

        Raises:
            ValueError: ``repository.branch`` is a source branch.
        """
        if self.branch in SOURCE_BRANCHES:
            raise ValueError(
                f"repository.branch in _config.yml is {self.branch!r}: the launch buttons "
                "need a branch of their own for the generated notebooks (e.g. "
                "'branch: notebooks'); they are never committed to the source branch"
            )
        return self.branch


def toc_chapters(book_dir: str | Path = ".") -> list[str]:
    """The toc's MyST Markdown notebooks, in order: the pages with a launch notebook.

    Returns:
        docnames without suffix, e.g. ``chapters/01_what_are_exploding_gradients``.
    """
    book = Book.load(book_dir)
    return [name for name in book.notebooks() if book.source(name).suffix == ".md"]


def setup_cell(repository: Repository, myst_nb: bool = False) -> Any:
    """The first cell of a launch notebook: installs what the chapter imports.

    It installs ``explodebook`` (from the launch branch), and ``myst-nb``
    only for a chapter that still imports it (``myst_nb``), only where they
    are missing, as on Colab, which has PyTorch, TensorFlow/Keras,
    scikit-learn, pandas and ipywidgets already; on Binder and in
    ``make lab`` it does nothing.
    """
    import nbformat

    modules = ("explodebook", "myst_nb") if myst_nb else ("explodebook",)
    packages = ('"myst-nb", ' if myst_nb else "") + f'"{repository.install_spec}"'
    source = (
        "# Set-up: installs the book's companion package where it is missing (Colab).\n"
        "# On Binder and in `make lab` everything is installed already.\n"
        "import importlib.util, subprocess, sys\n"
        "\n"
        f"if any(importlib.util.find_spec(m) is None for m in {modules!r}):\n"
        "    subprocess.run(\n"
        f'        [sys.executable, "-m", "pip", "install", "--quiet", {packages}],\n'
        "        check=True,\n"
        "    )"
    )
    return nbformat.v4.new_code_cell(source, metadata={"tags": [SETUP_TAG]})


def chapter_notebook(
    source: str | Path,
    repository: Repository | None = None,
    values: dict[str, str] | None = None,
) -> Any:
    """A chapter's MyST Markdown converted to an ``.ipynb`` notebook (nbformat 4).

    Args:
        source: the chapter's ``.md`` file.
        repository: where the set-up cell installs the package from; no
            set-up cell when None.
        values: the text of each ``{eval}`` expression as the built book
            shows it (`explodebook.book.expressions.cached_outputs`):
            written into the prose, since Colab renders no MyST (the same
            seeded run gives the same numbers).

    Returns:
        the notebook, without outputs, with the chapter's cells in order,
        deterministic cell ids and no jupytext pairing metadata (nothing
        syncs it back to the ``.md``).
    """
    import jupytext

    notebook = jupytext.read(Path(source), fmt="md:myst")
    notebook.metadata.pop("jupytext", None)
    notebook.metadata.setdefault("language_info", {"name": "python"})
    if values:
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = expressions.fill(cell.source, values)
    if repository is not None:
        uses_myst_nb = any("myst_nb" in c.source for c in notebook.cells if c.cell_type == "code")
        notebook.cells.insert(0, setup_cell(repository, myst_nb=uses_myst_nb))
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:03d}"
    return notebook


def write_notebooks(
    book_dir: str | Path = ".", out_dir: str | Path = "_build/notebooks", setup: bool = True
) -> list[Path]:
    """Write ``out_dir/<docname>.ipynb`` for every notebook page of the toc.

    The ``{eval}`` numbers in the prose are the built book's, where the
    book was built (its execution cache); else they stay expressions.

    Returns:
        the paths written, in toc order.
    """
    import nbformat

    book, out = Path(book_dir), Path(out_dir)
    repository = Repository.from_config(read_config(book)) if setup else None
    written = []
    for name in toc_chapters(book):
        target = out / f"{name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        values = expressions.values(expressions.cached_outputs(book / f"{name}.md", book))
        notebook = chapter_notebook(book / f"{name}.md", repository, values)
        nbformat.validate(notebook)
        target.write_text(nbformat.writes(notebook) + "\n", encoding="utf-8")
        written.append(target)
    return written


def binder_requirements(requirements: str) -> str:
    """Binder's ``requirements.txt``: the book's own, with CPU-only PyTorch.

    The pinned ``torch==X.Y.Z`` then resolves to the CPU wheel ``X.Y.Z+cpu``
    (a local version label matches the pin and sorts above it); ``-e .``
    still installs the package, since Binder runs pip from the repository root.
    """
    header = (
        "# Generated by `python -m explodebook.book.publish launch-tree` from the\n"
        "# repository's requirements.txt: edit that file instead.\n"
        f"--extra-index-url {TORCH_CPU_INDEX}\n"
    )
    return header + requirements


def write_launch_tree(
    book_dir: str | Path = ".",
    out_dir: str | Path = "_build/launch",
    ref: str = "HEAD",
) -> Path:
    """Write the launch branch's files into ``out_dir`` (replacing it).

    The tree is the committed files of ``ref`` (nothing uncommitted, nothing
    ignored) except ``.github/`` (the workflows), the generated notebooks
    next to their chapters and Binder's configuration in ``binder/`` (which
    Binder reads instead of the root's files).

    Raises:
        ValueError: ``repository.branch`` is a source branch (see
            `Repository.launch_branch`).
    """
    book, out = Path(book_dir).resolve(), Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=book, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")
    # The workflows run from main. Left out, also because GitHub refuses a
    # push by the workflow's own token that creates or changes workflow files.
    shutil.rmtree(out / ".github", ignore_errors=True)
    # The published commit's configuration, not the working tree's.
    Repository.from_config(read_config(out)).launch_branch()
    write_notebooks(out, out)
    binder = out / "binder"
    binder.mkdir(exist_ok=True)
    requirements = (out / "requirements.txt").read_text(encoding="utf-8")
    (binder / "requirements.txt").write_text(binder_requirements(requirements), encoding="utf-8")
    (binder / "runtime.txt").write_text(f"python-{BINDER_PYTHON}\n", encoding="utf-8")
    return out


class _Links(html.parser.HTMLParser):
    """Collects the URLs a page loads or links to."""

    ATTRIBUTES = {"href", "src"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in self.ATTRIBUTES and value]


def _local_targets(html_dir: Path) -> Iterator[tuple[Path, str]]:
    for page in sorted(html_dir.rglob("*.html")):
        if "_static" in page.relative_to(html_dir).parts:
            continue  # the themes' Jinja macro files, not pages
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for url in parser.urls:
            yield page, url


def check_site(html_dir: str | Path) -> list[str]:
    """Problems of a built site served from a sub-path; empty when none.

    Every ``href``/``src`` of every HTML page must be either absolute
    (``https:``, ``mailto:``, ``data:``...), a fragment, or relative and
    resolve to a file of the site. A link starting with ``/`` would point
    outside ``https://<org>.github.io/<repo>/``.
    """
    html = Path(html_dir).resolve()
    if not (html / "index.html").is_file():
        return [f"{html} has no index.html: build the book first"]
    problems = []
    for page, url in _local_targets(html):
        parts = urlsplit(url)
        where = page.relative_to(html)
        if parts.scheme or parts.netloc:
            continue
        if url.startswith("/"):
            problems.append(f"{where}: {url!r} is absolute to the host, not to the book")
            continue
        if not parts.path:
            continue  # a fragment or a query on the page itself
        target = (page.parent / unquote(parts.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if html not in target.parents or not target.is_file():
            problems.append(f"{where}: {url!r} points at a missing file")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m explodebook.book.publish", description="Publishing the book."
    )
    parser.add_argument("--book", default=".", help="the book's directory (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    notebooks = commands.add_parser("notebooks", help="write the launch notebooks")
    notebooks.add_argument("out", nargs="?", default="_build/notebooks")
    tree = commands.add_parser("launch-tree", help="write the launch branch's files")
    tree.add_argument("out", nargs="?", default="_build/launch")
    tree.add_argument("--ref", default="HEAD", help="the commit to publish (default: HEAD)")
    commands.add_parser("branch", help="print the launch branch (repository.branch)")
    site = commands.add_parser("check-site", help="check the built HTML's links")
    site.add_argument("html", nargs="?", default="_build/html")
    args = parser.parse_args(argv)
    try:
        if args.command == "notebooks":
            written = write_notebooks(args.book, args.out)
            print(f"{len(written)} notebooks in {args.out}")
        elif args.command == "launch-tree":
            print(write_launch_tree(args.book, args.out, args.ref))
        elif args.command == "branch":
            print(Repository.from_config(read_config(args.book)).launch_branch())
        elif args.command == "check-site":
            problems = check_site(args.html)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                return 1
            print(f"{args.html}: every link resolves inside the site")
    except (ValueError, OSError, subprocess.CalledProcessError) as err:
        print(f"explodebook.book.publish: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
