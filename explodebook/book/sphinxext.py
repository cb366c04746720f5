"""A small Sphinx extension for the book's own build (``extra_extensions``).

sphinx-thebe 0.3.1 registers its inline configuration script once more
after the HTML builder has copied the registered scripts, so every page
declared ``const THEBE_JS_URL`` twice, and browsers reported "Identifier
'THEBE_JS_URL' has already been declared" on every page. This extension
drops exact duplicates from each page's script list.

It also makes the Colab/Binder launch buttons open notebooks: for a MyST
Markdown page, sphinx-book-theme links ``<page>.md`` unless an ``.ipynb`` of
the same name lies next to it at build time, and Colab cannot open ``.md``.
The launch notebooks are generated (``python -m explodebook.book.publish``) and
pushed to the launch branch (``repository.branch``), never kept next to
the chapters, so the links are pointed at ``<page>.ipynb`` here.

And it gives the ``.ipynb`` download its outputs: the theme offers MyST-NB's
copy of the executed notebook (``jupyter_execute/<page>.ipynb``), but
MyST-NB 1.4 writes that copy without outputs when a page's outputs come from
the execution cache (it writes the notebook it read, not the merged one),
so the download of a chapter not executed in that build had none. They are
merged in from the same cache the page was rendered from.

And it renders MyST inline expressions (``{eval}`expr```) from the
execution cache: MyST-NB evaluates them only when it executes a chapter
inline, at every build; the prebuild evaluates them where execution
reaches their cell and stores the results in the cache record
(`explodebook.book.expressions`), and the ``eval`` role here shows them,
rendered as MyST-NB's own ``eval`` role renders a kernel's answer; a
translated paragraph (the Chinese edition) is answered from its page's,
and a value with words in it is shown translated by the ``values``
catalog (`explodebook.book.valuetext`; a value it lacks is a warning).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["setup"]

#: sphinx-book-theme's label of the launch buttons' group.
_LAUNCH_GROUP = "launch-buttons"

#: Where the eval role keeps the MyST-NB renderer of the page being read
#: (``env.temp_data``), for the page's translated paragraphs.
_PAGE = "explodebook_eval_page"


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        # Sphinx's _JavaScript: a file name (None or "" for an inline script:
        # the two copies differ there, which is why Sphinx keeps both) and
        # attributes, the inline body among them. Older Sphinx: plain str.
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), repr(sorted(attributes.items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def _launch_notebooks(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Point a MyST page's launch buttons at ``<page>.ipynb``."""
    suffix = context.get("page_source_suffix")
    if suffix != ".md":
        return
    # The page's path as the theme writes it in each URL (Colab: at the end;
    # Binder: the end of ``urlpath``; JupyterHub: before ``&branch=``).
    pattern = re.compile(re.escape(pagename + suffix) + r"(?=$|[&#?])")
    for group in context.get("header_buttons") or []:
        if isinstance(group, dict) and group.get("label") == _LAUNCH_GROUP:
            for button in group.get("buttons", []):
                if button.get("url"):
                    button["url"] = pattern.sub(pagename + ".ipynb", button["url"])


def _executed_download(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Merge the cached outputs into the page's ``.ipynb`` download if it has none."""
    source = context.get("ipynb_source")
    config = getattr(app.env, "mystnb_config", None)
    if not source or config is None or config.execution_mode != "cache":
        return
    path = Path(app.outdir, "_sources", source)
    if not path.is_file():
        return
    import nbformat
    from jupyter_cache import get_cache

    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if not code or any(cell.get("outputs") for cell in code):
        return
    try:
        _, merged = get_cache(config.execution_cache_path).merge_match_into_notebook(notebook)
    except KeyError:  # not in the cache (the page shows no outputs either)
        return
    nbformat.write(merged, path)


def _cached_expressions(element: Any) -> dict[str, Any] | str:
    """The page's expression results from the execution cache, or why there are none.

    ``element`` is the page's MyST-NB renderer (``document["nb_renderer"]``).
    """
    key = "explodebook_expressions"
    if hasattr(element, key):
        return getattr(element, key)
    from jupyter_cache import get_cache

    client = element.renderer.nb_client
    try:
        record = get_cache(client.nb_config.execution_cache_path).match_cache_notebook(client.notebook)
        found: dict[str, Any] | str = (record.data or {}).get("expressions") or {}
    except KeyError:
        found = "the chapter is not in the execution cache"
    setattr(element, key, found)
    return found


VALUES_HINT = "no translation in values.po; run `make catalogs` and translate it"


def _translated_value(result: dict[str, Any], env: Any) -> dict[str, Any] | str:
    """A result whose string has words, in the edition's language (`explodebook.book.valuetext`).

    Returns:
        the result to show, or the English string that has no translation.
    """
    from explodebook.book import valuetext
    from explodebook.book.i18n import LOCALES

    value = valuetext.shown_string(result)
    language = env.config.language
    if value is None or not language or language == "en":
        return result
    path = Path(env.srcdir) / LOCALES / language / "LC_MESSAGES" / f"{valuetext.DOMAIN}.po"
    shown = valuetext.translated(value, valuetext.catalog(str(path)).get)
    if shown is None:
        return value
    return {**result, "data": {**result["data"], "text/plain": repr(shown)}}


def _eval_role() -> type:
    """MyST-NB's ``eval`` role, answered from the execution cache in ``cache`` mode."""
    from myst_nb.core.variables import VariableOutput, create_warning, render_variable_outputs
    from myst_nb.ext.eval import EvalRoleAny

    class CachedEvalRole(EvalRoleAny):
        def run(self) -> tuple[list[Any], list[Any]]:
            env = getattr(self.document.settings, "env", None)
            if "nb_renderer" in self.document:
                element = self.document["nb_renderer"]
            elif env is not None and _PAGE in env.temp_data and self.document.current_source.endswith("<translated>"):
                # A translated paragraph (Sphinx i18n: the Chinese edition) is
                # parsed as a document of its own, after its page, without the
                # notebook: its expressions are the page's.
                element = env.temp_data[_PAGE]
            else:  # not a notebook page
                return super().run()
            if element.renderer.nb_client.nb_config.execution_mode != "cache":
                return super().run()  # inline mode: MyST-NB asks the kernel

            def warn(message: str) -> tuple[list[Any], list[Any]]:
                return [], [create_warning(message, self.document, self.line, subtype="eval")]

            if env is not None:
                env.temp_data[_PAGE] = element
            found = _cached_expressions(element)
            if isinstance(found, str):
                return warn(f"{{eval}}`{self.text}`: {found}; run `python -m explodebook.book.prebuild` "
                            "(make book does) before jupyter-book build")  # fmt: skip
            if self.text not in found:
                return warn(f"{{eval}}`{self.text}` has no value in the execution cache; "
                            "run `python -m explodebook.book.prebuild` (make book does)")  # fmt: skip
            result = found[self.text]
            if result.get("status") != "ok":
                return warn(f"{{eval}}`{self.text}` raised {result.get('ename')}: {result.get('evalue')}")
            if env is not None and self.document.current_source.endswith("<translated>"):
                result = _translated_value(result, env)
                if isinstance(result, str):
                    return warn(f"{{eval}}`{self.text}` shows {result!r}: {VALUES_HINT}")
            output = VariableOutput(
                data=result.get("data", {}),
                # strings are shown without their quotes, as MyST-NB and
                # jupyterlab-myst both do
                metadata={**(result.get("metadata") or {}), "strip_text_quotes": True},
                nb_renderer=element,
                vtype="eval",
                index=0,
            )
            return render_variable_outputs([output], self.document, self.line, self.source, inline=True), []

    return CachedEvalRole


def _adopt_translated_nodes(app: Any, doctree: Any) -> None:
    # Sphinx's i18n transform moves the nodes of each translated message in
    # from a document of its own, and the nodes keep pointing at it; its
    # settings hold the whole build environment, so every translated page's
    # pickled doctree carried a copy of it (12 MB instead of 1 MB), and each
    # {numref} to such a page unpickled it again.
    for node in doctree.findall():
        if getattr(node, "document", None) not in (None, doctree):
            node.document = doctree


def setup(app: Any) -> dict[str, Any]:
    """Register the page hooks (Sphinx calls this)."""
    # After the extensions that add scripts in html-page-context.
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    # After sphinx-book-theme builds the launch buttons (priority 501).
    app.connect("html-page-context", _launch_notebooks, priority=600)
    # After the theme copies the executed notebook to _sources (priority 501).
    app.connect("html-page-context", _executed_download, priority=600)
    # After myst_nb (an earlier extension) registered its own eval role.
    app.add_role("eval", _eval_role()(), override=True)
    app.connect("doctree-read", _adopt_translated_nodes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
