"""The book's sources, read one way: ``_config.yml``, ``_toc.yml``, the chapters.

Everything that builds, publishes, tests or measures the book reads its
configuration, its table of contents and its chapters' code cells here
(`explodebook.book.prebuild`, `explodebook.book.publish`, the tests, the
benchmarks), so that they all agree with each other and with the build:

- the configuration is the parsed ``_config.yml`` (`read_config`);
- the pages are the ``file`` entries of ``_toc.yml``, root first, in
  document order, whatever the toc's format (``parts``, ``chapters``,
  ``sections``, ``subtrees``/``entries``; ``glob`` and ``url`` entries name
  no page of their own) (`toc_pages`);
- a page is a notebook when MyST-NB reads it as one (an ``.ipynb``, or MyST
  Markdown whose front matter says so), and a notebook's cells are the
  ones MyST-NB reads, with the book's ``myst_enable_extensions``
  (`read_notebook`, `code_cells`): the code the build executes.

`Book` bundles the three for one book directory::

    book = Book.load(".")
    book.config["title"], book.pages(), book.notebooks()
    book.code_cells("chapters/07_gradient_clipping")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Book", "code_cells", "read_config", "read_notebook", "toc_pages"]

#: Suffixes a page's source may have, in the order they are looked for.
SOURCE_SUFFIXES = (".md", ".ipynb")
# Keys of a toc entry that hold further entries (jb-book, jb-article and
# sphinx-external-toc's own format).
_NESTED = ("parts", "chapters", "sections", "subtrees", "entries")


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_config(book: str | Path = ".", path: str | Path | None = None) -> dict[str, Any]:
    """The parsed ``_config.yml`` of the book in ``book`` (or the file ``path``)."""
    return _yaml(Path(path) if path is not None else Path(book) / "_config.yml") or {}


def toc_pages(book: str | Path = ".", toc: str | Path | None = None) -> list[str]:
    """Every page of the toc, root first, in document order.

    Args:
        book: the book's directory.
        toc: the toc file (default ``book/_toc.yml``).

    Returns:
        docnames without suffix, e.g. ``chapters/01_what_are_exploding_gradients``.
    """
    data = _yaml(Path(toc) if toc is not None else Path(book) / "_toc.yml") or {}
    pages: list[str] = []

    def walk(entry: Any) -> None:
        if isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            if entry.get("file"):
                pages.append(str(entry["file"]).removesuffix(".md").removesuffix(".ipynb"))
            for key in _NESTED:
                walk(entry.get(key))

    walk({"file": data.get("root"), **{key: data.get(key) for key in _NESTED}})
    return pages


def read_notebook(path: str | Path, config: dict[str, Any] | None = None) -> tuple[Any, dict | None] | None:
    """Read ``path`` as MyST-NB does; ``None`` if it is not a notebook.

    Args:
        path: an ``.md`` or ``.ipynb`` file.
        config: the book's parsed ``_config.yml`` (its
            ``parse.myst_enable_extensions`` change how Markdown is read);
            none: no extensions.

    Returns:
        the notebook (nbformat) and the reader description jupyter-cache
        records (``None`` for an ``.ipynb``).
    """
    from myst_nb.core.read import is_myst_markdown_notebook, read_myst_markdown_notebook, standard_nb_read
    from myst_parser.config.main import MdParserConfig

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        return standard_nb_read(text), None
    if path.suffix != ".md" or not is_myst_markdown_notebook(text):
        return None
    extensions = ((config or {}).get("parse") or {}).get("myst_enable_extensions") or []
    md_config = MdParserConfig(enable_extensions=set(extensions))
    notebook = read_myst_markdown_notebook(text, config=md_config, add_source_map=True, path=str(path))
    return notebook, {"type": "plugin", "name": "myst_nb_md"}


def code_cells(path: str | Path, config: dict[str, Any] | None = None) -> list[str]:
    """The sources of a notebook's code cells, in order, without their options.

    Args:
        path: the chapter (MyST Markdown or ``.ipynb``).
        config: as for `read_notebook`.

    Raises:
        ValueError: ``path`` is not a notebook.
    """
    read = read_notebook(path, config)
    if read is None:
        raise ValueError(f"{path} is not a notebook (no MyST-NB front matter)")
    return [cell.source for cell in read[0].cells if cell.cell_type == "code"]


@dataclass
class Book:
    """One book's directory, with its configuration and toc.

    Attributes:
        root: the book's directory.
        config: its parsed configuration.
        toc: its toc file.
    """

    root: Path
    config: dict[str, Any] = field(repr=False)
    toc: Path

    @classmethod
    def load(cls, root: str | Path = ".", config: str | Path | None = None, toc: str | Path | None = None) -> Book:
        """The book in ``root``.

        Args:
            root: the book's directory.
            config: the configuration file (default ``root/_config.yml``).
            toc: the toc file (default ``root/_toc.yml``).
        """
        root = Path(root)
        return cls(
            root=root,
            config=read_config(root, config),
            toc=Path(toc) if toc is not None else root / "_toc.yml",
        )

    def pages(self) -> list[str]:
        """Every page of the toc (`toc_pages`)."""
        return toc_pages(self.root, self.toc)

    def source(self, docname: str) -> Path | None:
        """The page's source file (``.md`` or ``.ipynb``); ``None`` if missing."""
        for suffix in SOURCE_SUFFIXES:
            path = self.root / (docname + suffix)
            if path.is_file():
                return path
        return None

    def read(self, docname: str) -> tuple[Any, dict | None] | None:
        """The page read as MyST-NB reads it (`read_notebook`); ``None`` if no notebook."""
        path = self.source(docname)
        return read_notebook(path, self.config) if path is not None else None

    def notebooks(self) -> list[str]:
        """The toc's pages that are notebooks, in toc order."""
        return [name for name in self.pages() if self.read(name) is not None]

    def code_cells(self, docname: str) -> list[str]:
        """The page's code cells (`code_cells`), read with the book's configuration."""
        path = self.source(docname)
        if path is None:
            raise FileNotFoundError(f"no source for {docname!r} in {self.root}")
        return code_cells(path, self.config)
