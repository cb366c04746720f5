"""The student edition's configuration, derived from the book's ``_config.yml``.

One source of truth: the student edition is the book's own configuration
with three changes, so a setting changed for the book changes both editions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from explodebook.book.sources import read_config

__all__ = ["student_config", "write_student_config", "STUDENT_SUFFIX"]

#: Appended to the book's title in the student edition.
STUDENT_SUFFIX = " (student edition)"


def student_config(config: dict[str, Any], cache_dir: str | Path) -> dict[str, Any]:
    """The student edition of a Jupyter Book 1 configuration.

    Args:
        config: the parsed ``_config.yml`` of the full book (not modified).
        cache_dir: the execution cache of the full book (``_build/.jupyter_cache``
            of its output directory); the student edition reads and writes
            the same cache, so a chapter executed for one edition is not
            executed again for the other.

    Returns:
        A new configuration, the same except that

        - sphinx-exercise's ``hide_solutions`` is on: every ``solution``
          directive is dropped from the output, its text included;
        - nothing links to or ships the chapters' sources, which hold the
          solutions: no ``_sources`` copies (``html_copy_source``), no
          download, repository, issues or launch (Colab, Binder) buttons;
        - the title says it is the student edition;
        - ``execute.cache`` is ``cache_dir`` (absolute).
    """
    out = copy.deepcopy(config)
    out["title"] = str(out.get("title", "")) + STUDENT_SUFFIX
    sphinx = out.setdefault("sphinx", {})
    extensions = sphinx.get("extra_extensions") or []
    if "sphinx_exercise" not in extensions:
        raise ValueError(
            "the book's configuration does not load sphinx_exercise "
            "(sphinx.extra_extensions), so solutions cannot be hidden"
        )
    sphinx_config = sphinx.setdefault("config", {})
    sphinx_config["hide_solutions"] = True
    sphinx_config["html_copy_source"] = False
    # Jupyter Book 1.0.4 does not pass html.use_download_button on to the
    # theme: switch the download menu off in the theme's own options.
    sphinx_config.setdefault("html_theme_options", {})["use_download_button"] = False
    html = out.setdefault("html", {})
    for button in ("use_download_button", "use_repository_button", "use_issues_button"):
        html[button] = False
    # Launch buttons open the full edition's notebooks, solutions included.
    out["launch_buttons"] = {"notebook_interface": "classic"}
    out.setdefault("execute", {})["cache"] = str(Path(cache_dir).resolve())
    return out


def write_student_config(
    book_dir: str | Path = ".",
    output: str | Path = "_build/student_config.yml",
    cache_dir: str | Path = "_build/.jupyter_cache",
) -> Path:
    """Write the student edition's configuration next to the build outputs.

    Args:
        book_dir: the book's source directory (holds ``_config.yml``).
        output: where to write the configuration, relative to ``book_dir``
            unless absolute.
        cache_dir: the full edition's execution cache, relative to
            ``book_dir`` unless absolute.

    Returns:
        the path written.
    """
    book = Path(book_dir)
    source = book / "_config.yml"
    if not source.is_file():
        raise FileNotFoundError(f"no _config.yml in {book.resolve()}: is this the book's directory?")
    config = read_config(book)  # the one reader of the book's configuration
    target = Path(output) if Path(output).is_absolute() else book / output
    cache = Path(cache_dir) if Path(cache_dir).is_absolute() else book / cache_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated from _config.yml by explodebook.coursework: edit that file instead.\n"
    target.write_text(
        header + yaml.safe_dump(student_config(config, cache), sort_keys=False), encoding="utf-8"
    )
    return target
