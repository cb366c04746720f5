"""Inline expressions (``{eval}`expr```): evaluated once, shown on the page and in JupyterLab.

A chapter writes a number about a run into its prose as a MyST inline
expression, ``the loss reaches {eval}`f"{loss:.2f}"```. Two renderers
read the same source:

- JupyterLab with ``jupyterlab-myst``: when a learner runs a Markdown cell
  (Run All does), the extension sends the cell's expressions to the kernel
  in an ``execute_request``'s ``user_expressions`` and shows the results
  inline (it stores them in the cell's ``user_expressions`` metadata).
- The book: MyST-NB evaluates ``{eval}`` only in its ``inline`` execution
  mode, which executes every chapter at every build, one after the other,
  bypassing the execution cache. The book keeps its cache: the prebuild
  (`explodebook.book.prebuild`) executes each chapter with
  `ExpressionClient`, which does what JupyterLab does, cell by cell, and
  stores the results beside the executed notebook in the cache record
  (``data["expressions"]``); the book's Sphinx extension renders
  ``{eval}`` from there (`expression_outputs`).

An expression has one value per chapter: the same text evaluated in two
cells to two different values is refused (`conflicts`), because the page
could not say which one a sentence means. Give each its own name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nbclient import NotebookClient

__all__ = [
    "EVAL_ROLE",
    "fill",
    "ExpressionClient",
    "all_expressions",
    "cached_outputs",
    "conflicts",
    "errors",
    "expression_outputs",
    "expressions_in",
    "metadata_entries",
    "plain_text",
    "substitute",
    "values",
]

#: Finds a MyST inline expression, ``{eval}`` followed by one backquoted
#: span (MyST's role syntax; the expression itself has no backquote).
#:
#: :meta hide-value:
EVAL_ROLE = re.compile(r"\{eval\}`([^`]+)`")

#: The key under which the cache record (and the notebook's Markdown cell
#: metadata, jupyterlab-myst's name) keeps the results.
METADATA_KEY = "user_expressions"


def expressions_in(markdown: str) -> list[str]:
    """The inline expressions of a Markdown cell's source, in order, each once."""
    seen: dict[str, None] = {}
    for match in EVAL_ROLE.finditer(markdown):
        seen.setdefault(match.group(1), None)
    return list(seen)


def metadata_entries(expressions: list[str], reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    """jupyterlab-myst's cell metadata for ``expressions`` from a kernel's reply.

    Args:
        expressions: the expressions sent, in order (sent under the keys
            ``"0"``, ``"1"``, ... as jupyterlab-myst does).
        reply: the ``user_expressions`` of the ``execute_reply``'s content.

    Returns:
        One dict per expression, with the keys ``expression`` and ``result``;
        a result has ``status`` ``"ok"`` and ``data`` and ``metadata``, or
        ``status`` ``"error"`` and ``ename``, ``evalue`` and ``traceback``.
    """
    return [{"expression": expr, "result": dict(reply.get(str(i), {}))} for i, expr in enumerate(expressions)]


def _outputs(notebook: Any) -> dict[str, list[dict[str, Any]]]:
    """Every result of every expression in ``notebook``'s Markdown cells, in cell order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for entry in cell.metadata.get(METADATA_KEY, []):
            found.setdefault(entry["expression"], []).append(dict(entry["result"]))
    return found


def _key(result: Mapping[str, Any]) -> Any:
    return (result.get("status"), repr(sorted((result.get("data") or {}).items())))


def conflicts(notebook: Any) -> dict[str, int]:
    """Expressions that evaluated to more than one value in ``notebook``: name -> how many values."""
    return {
        expr: n
        for expr, results in _outputs(notebook).items()
        if (n := len({_key(r) for r in results})) > 1
    }


def expression_outputs(notebook: Any) -> dict[str, dict[str, Any]]:
    """Expression -> its result (one per expression; see `conflicts`).

    The result is a kernel's ``user_expressions`` entry: ``{"status": "ok",
    "data": {mime type: value}, "metadata": {...}}`` or an error entry.
    """
    return {expr: results[0] for expr, results in _outputs(notebook).items()}


class ExpressionClient(NotebookClient):
    """nbclient's ``NotebookClient`` that also evaluates each Markdown cell's inline expressions.

    A Markdown cell is evaluated when execution reaches it, after the code
    cells above it, as Run All in JupyterLab does; the results land in the
    cell's ``user_expressions`` metadata (jupyterlab-myst's format).
    """

    async def async_execute_cell(
        self, cell: Any, cell_index: int, execution_count: int | None = None, store_history: bool = True
    ) -> Any:
        """Execute a code cell as nbclient does; evaluate a Markdown cell's expressions."""
        if cell.cell_type != "markdown":
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        expressions = expressions_in(cell.source)
        if not expressions:
            cell.metadata.pop(METADATA_KEY, None)
            return cell
        assert self.kc is not None
        # An empty execution carrying the expressions, as jupyterlab-myst
        # sends: the kernel evaluates them in the notebook's namespace.
        msg_id = self.kc.execute(
            "",
            silent=True,
            store_history=False,
            user_expressions={str(i): expr for i, expr in enumerate(expressions)},
        )
        reply = await self.async_wait_for_reply(msg_id, cell)
        content = (reply or {}).get("content", {})
        cell.metadata[METADATA_KEY] = metadata_entries(expressions, content.get("user_expressions", {}))
        return cell


def errors(notebook: Any) -> list[str]:
    """One line per expression of ``notebook`` that raised, or evaluated differently in two cells."""
    lines = []
    for expr, result in expression_outputs(notebook).items():
        if result.get("status") != "ok":
            lines.append(f"{{eval}}`{expr}` raised {result.get('ename', '?')}: {result.get('evalue', '')}")
    for expr, n in conflicts(notebook).items():
        lines.append(
            f"{{eval}}`{expr}` has {n} different values in different cells; the page would show "
            "one of them: give each its own name"
        )
    return lines


def plain_text(result: Mapping[str, Any]) -> str | None:
    """The text an ``ok`` result shows, quotes of a string removed (as both renderers do)."""
    if result.get("status") != "ok":
        return None
    text = (result.get("data") or {}).get("text/plain")
    if text is None:
        return None
    match = re.fullmatch(r"(['\"])(.*)\1", text, flags=re.S)
    return match.group(2) if match else text


def substitute(markdown: str, outputs: Mapping[str, Mapping[str, Any]]) -> str:
    """``markdown`` with every ``{eval}`` whose result is known replaced by its text.

    For renderers that know no MyST (Colab, a plain Markdown viewer): the
    values are the book's, from the same seeded run.
    """
    return fill(markdown, values(outputs))


def fill(markdown: str, texts: Mapping[str, str]) -> str:
    """``markdown`` with every ``{eval}`` found in ``texts`` (expression -> text) replaced by its text."""
    return EVAL_ROLE.sub(lambda match: texts.get(match.group(1), match.group(0)), markdown)


def all_expressions(cells: Iterable[Any]) -> list[str]:
    """Every inline expression of the Markdown cells in ``cells``, in order, each once."""
    seen: dict[str, None] = {}
    for cell in cells:
        if cell.cell_type == "markdown":
            for expr in expressions_in(cell.source):
                seen.setdefault(expr, None)
    return list(seen)



def cached_outputs(chapter: str | Path, book: str | Path = ".", path_output: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The expression results the prebuild stored for ``chapter`` (empty if it never ran).

    Args:
        chapter: the chapter's source file.
        book: the book's directory (its ``_config.yml`` says where the cache is).
        path_output: ``jupyter-book build --path-output``, if one was used.
    """
    from explodebook.book.prebuild import cache_path
    from explodebook.book.sources import read_config, read_notebook

    config = read_config(Path(book))
    path = cache_path(Path(book), config, Path(path_output) if path_output is not None else None)
    if not (path / "global.db").exists():  # never built: nothing to read (and nothing to create)
        return {}
    from jupyter_cache import get_cache

    read = read_notebook(Path(chapter), config)
    if read is None:
        return {}
    try:
        record = get_cache(str(path)).match_cache_notebook(read[0])
    except KeyError:
        return {}
    return dict((record.data or {}).get("expressions") or {})


def values(outputs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Expression -> the text both renderers show, for the ``ok`` results of ``outputs``."""
    return {expr: text for expr, result in outputs.items() if (text := plain_text(result)) is not None}
