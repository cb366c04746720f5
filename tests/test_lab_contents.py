"""`explodebook.book.lab`: a chapter opens in JupyterLab with the kernel's language_info."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext

from explodebook.book.lab import ChapterContentsManager, fill_language_info, kernel_language_info

ROOT = Path(__file__).resolve().parents[1]


def test_text_notebooks_get_the_kernels_language_info_and_ipynb_keep_theirs() -> None:
    info = kernel_language_info()
    assert info["name"] == "python" and info["pygments_lexer"] == "ipython3"
    chapter = {"metadata": {"kernelspec": {"name": "python3", "language": "python"}}}
    assert fill_language_info(chapter, "chapters/01.md") and chapter["metadata"]["language_info"] == info
    saved = {"metadata": {"kernelspec": {"language": "python"}}}
    assert not fill_language_info(saved, "x.ipynb") and "language_info" not in saved["metadata"]
    other = {"metadata": {"kernelspec": {"language": "R"}}}
    assert not fill_language_info(other, "x.md")
    mine = {"metadata": {"kernelspec": {"language": "python"}, "language_info": {"name": "python"}}}
    assert not fill_language_info(mine, "x.md") and mine["metadata"]["language_info"] == {"name": "python"}


def test_the_contents_manager_opens_a_chapter_with_it_and_saves_it_unchanged(tmp_path: Path) -> None:
    chapter = next((ROOT / "chapters").glob("01_*.md"))
    shutil.copy(chapter, tmp_path / chapter.name)
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    manager = ChapterContentsManager(root_dir=str(tmp_path))

    async def round_trip() -> dict:
        model = await manager.get(chapter.name, content=True, type="notebook")
        await manager.save({"type": "notebook", "format": "json", "content": model["content"]}, chapter.name)
        return model

    # In a thread of its own: an event loop of the browser tests may be
    # running in this one.
    with ThreadPoolExecutor(1) as pool:
        model = pool.submit(asyncio.run, round_trip()).result()
    assert model["content"]["metadata"]["language_info"] == kernel_language_info()
    assert (tmp_path / chapter.name).read_text() == chapter.read_text()  # language_info not written
    assert jupytext.read(tmp_path / chapter.name).metadata.get("language_info") is None
