"""A small Sphinx extension for the book's own build (``extra_extensions``).

sphinx-thebe 0.3.1 registers its inline configuration script once more
after the HTML builder has copied the registered scripts, so every page
declared ``const THEBE_JS_URL`` twice, and browsers reported "Identifier
'THEBE_JS_URL' has already been declared" on every page. This extension
drops exact duplicates from each page's script list.
"""

from __future__ import annotations

from typing import Any

__all__ = ["setup"]


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


def setup(app: Any) -> dict[str, Any]:
    """Register the page hook (Sphinx calls this)."""
    # After the extensions that add scripts in html-page-context.
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
