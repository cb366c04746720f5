"""JupyterLab's contents manager for the chapters: opening a chapter does not mark it modified.

JupyterLab opens a chapter (MyST Markdown) through jupytext. The Markdown
keeps no ``language_info`` (jupytext leaves it out of text notebooks: it
describes the kernel, not the chapter), so as soon as the kernel starts,
JupyterLab writes the kernel's ``language_info`` into the notebook, and the
untouched chapter shows as modified. `ChapterContentsManager` is jupytext's
contents manager that fills in, when it reads a Python text notebook
without one, the ``language_info`` the kernel will announce (ipykernel's,
for this interpreter, the one ``make lab`` runs): nothing changes when the
kernel starts. Saving writes no ``language_info`` back (jupytext filters it
out), so a save after Run All leaves the chapter's source unchanged.

The repository's ``jupyter_server_config.json`` selects it for
``jupyter lab`` started from the repository (``make lab`` and the tests).
"""

from __future__ import annotations

import copy
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

__all__ = ["ChapterContentsManager", "kernel_language_info", "fill_language_info"]

_Jupytext = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)


def kernel_language_info() -> dict[str, Any]:
    """The ``language_info`` ipykernel announces for this interpreter."""
    from ipykernel.ipkernel import IPythonKernel

    return copy.deepcopy(IPythonKernel.language_info)


def fill_language_info(notebook: dict[str, Any], path: str) -> bool:
    """Give a Python text notebook without ``language_info`` the kernel's; True if it did."""
    if path.lower().endswith(".ipynb"):
        return False  # an .ipynb keeps what it saved
    metadata = notebook.setdefault("metadata", {})
    kernelspec = metadata.get("kernelspec") or {}
    if kernelspec.get("language") != "python" or metadata.get("language_info"):
        return False
    metadata["language_info"] = kernel_language_info()
    return True


class ChapterContentsManager(_Jupytext):
    """jupytext's contents manager; text notebooks open with the kernel's ``language_info``."""

    async def get(self, path: str, content: bool = True, type: str | None = None, format: str | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: A002 (jupyter_server's names)
        """The model jupytext reads, with `fill_language_info` applied to a notebook."""
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if content and model.get("type") == "notebook" and isinstance(model.get("content"), dict):
            fill_language_info(model["content"], path)
        return model
