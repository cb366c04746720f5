"""Execute the book's chapters in parallel into the build's execution cache.

Jupyter Book 1 (MyST-NB, ``execute_notebooks: cache``) executes the
chapters one after the other, each in its own kernel. Most of a chapter's
time is single-threaded Python (imports, Keras tracing, plotting), so on a
machine with two cores half of it sits idle. This module does the
execution step ahead of the build, with a pool of workers, and stores each
executed chapter in the jupyter-cache database that MyST-NB reads
(``<path-output>/_build/.jupyter_cache`` unless ``execute.cache`` says
otherwise). The ``jupyter-book build`` that follows finds every chapter in
the cache ("Using cached notebook") and executes nothing::

    python -m explodebook.book.prebuild . --jobs 2
    jupyter-book build . -W -n --keep-going

Each chapter is read exactly the way MyST-NB reads it (its MyST Markdown
reader with the book's ``myst_enable_extensions``, through
`explodebook.book.sources`), so the cache key, a hash
of the code cells and the kernelspec, is the one MyST-NB computes. Chapters
already in the cache are skipped.

Each worker keeps one kernel for all the pages it executes
(``explodebook.book.keptkernel``): PyTorch and TensorFlow are imported once
per worker instead of once per page, and the kernel is put back in a fresh
kernel's state before each page, so a page's outputs are those a kernel of
its own gives (``--fresh-kernels`` starts one per page instead). Each kernel runs its math libraries on
one thread when there is more than one worker (``OMP_NUM_THREADS``,
``TF_NUM_INTRAOP_THREADS``... default to 1; set them to override), so two
kernels do not fight over the same cores. ``MPLBACKEND`` is removed from
the kernels' environment, so that figures are drawn inline even when the
caller set it (``make test`` sets ``MPLBACKEND=agg``). The kernels share
their runs through a folder that lives as long as the prebuild
(`explodebook.cache.STORE_ENV`): a run that two pages in different kernels
do is done once (each run's arrays are the same, only its measured wall
time is that of the kernel that did it).

A chapter that fails to execute is reported and left out of the cache: the
build that follows executes it again and reports the error as it always
has. Per-cell times can be written with ``--timings`` (a JSON file), to see
where a chapter spends its time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from explodebook import cache as run_cache
from explodebook.book import expressions, figurecache, figuretext
from explodebook.book.sources import Book, read_notebook

__all__ = ["Chapter", "cache_path", "chapters", "main", "notebook_hash", "prebuild"]

#: Environment variables that pin a kernel's math libraries to one thread
#: when several kernels run side by side (only set where not already set).
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}


@dataclass
class Chapter:
    """One document of the toc that MyST-NB would execute."""

    docname: str
    path: Path
    notebook: Any = field(repr=False)  # nbformat.NotebookNode
    read_fmt: dict | None = None
    hashkey: str = ""
    cached: bool = False


def cache_path(book: Path, config: dict[str, Any], path_output: Path | None = None) -> Path:
    """The execution cache MyST-NB uses for this build.

    ``execute.cache`` if set, else ``<path_output>/_build/.jupyter_cache``
    (Jupyter Book's default: next to ``_build/html``).
    """
    explicit = (config.get("execute") or {}).get("cache")
    if explicit:
        return Path(explicit) if Path(explicit).is_absolute() else (book / explicit)
    return (path_output if path_output is not None else book) / "_build" / ".jupyter_cache"


def notebook_hash(notebook: Any, cache: Any) -> str:
    """jupyter-cache's key for ``notebook`` (code cells and kernelspec)."""
    return cache.create_hashed_notebook(notebook)[1]


def chapters(book: Book) -> list[Chapter]:
    """The toc's documents that MyST-NB executes, in toc order."""
    execute = book.config.get("execute") or {}
    excluded = list(execute.get("exclude_patterns") or [])
    found = []
    for docname in book.pages():
        path = book.source(docname)
        if path is None:
            continue
        rel = path.relative_to(book.root).as_posix()
        if any(fnmatch(rel, pattern) for pattern in excluded):
            continue
        read = read_notebook(path, book.config)
        if read is None:
            continue
        notebook, read_fmt = read
        mode = ((notebook.metadata.get("mystnb") or {}).get("execution_mode")) or execute.get(
            "execute_notebooks", "auto"
        )
        if mode != "cache":
            continue
        found.append(Chapter(docname, path, notebook, read_fmt))
    return found


#: The worker's kept kernel (``explodebook.book.keptkernel``), started by its first page.
_KEPT: Any = None


def _kept_kernel(kernel_name: str) -> Any:
    """The worker process's kept kernel, shut down when the worker exits."""
    global _KEPT
    if _KEPT is None or _KEPT.kernel_name != kernel_name:
        from multiprocessing import util

        from explodebook.book.keptkernel import KeptKernel

        if _KEPT is not None:
            _KEPT.shutdown()
        _KEPT = KeptKernel(kernel_name)
        # multiprocessing's workers skip atexit; its finalizers do run
        util.Finalize(_KEPT, _KEPT.shutdown, exitpriority=10)
    return _KEPT


def _execute(path: str, notebook: Any, timeout: int, allow_errors: bool, keep_kernel: bool = False) -> dict[str, Any]:
    """Worker: execute one notebook in its own directory, time every cell.

    Executes as jupyter-cache's ``single_nb_execution`` does, with
    `explodebook.book.expressions.ExpressionClient`, which also evaluates the
    Markdown cells' inline expressions (``{eval}``) where execution reaches them;
    in the worker's kept kernel if ``keep_kernel``, else in a kernel of its own.
    """
    import traceback

    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from explodebook.book.expressions import ExpressionClient

    execution = notebook.metadata.get("execution") or {}
    timeout = execution.get("timeout", timeout)
    allow_errors = execution.get("allow_errors", allow_errors)
    start = time.perf_counter()
    cpu = os.times()
    error = None
    kernel_cpu = None
    options = {"timeout": timeout, "allow_errors": allow_errors, "record_timing": True}
    try:
        if keep_kernel:
            kernel = _kept_kernel((notebook.metadata.get("kernelspec") or {}).get("name") or "python3")
            kernel_cpu = kernel.execute(ExpressionClient, notebook, path, **options)
        else:
            ExpressionClient(notebook, resources={"metadata": {"path": str(Path(path).parent)}},
                             extra_arguments=figuretext.KERNEL_ARGUMENTS, **options).execute()  # fmt: skip
    except (CellExecutionError, CellTimeoutError):
        error = traceback.format_exc()
    elapsed = time.perf_counter() - start
    cpu_after = os.times()
    cells = []
    for index, cell in enumerate(notebook.cells):
        timing = cell.metadata.pop("execution", None)
        if cell.cell_type != "code" or not timing:
            continue
        try:
            began = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            ended = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            seconds = (ended - began).total_seconds()
        except (KeyError, ValueError):
            continue
        first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        cells.append({"cell": index, "seconds": round(seconds, 3), "first_line": first[:100]})
    return {
        "notebook": notebook,
        "seconds": elapsed,
        "wall": time.perf_counter() - start,
        # a kernel of its own is a child of this worker: its CPU time is
        # counted once it has exited; a kept kernel's is read from it
        "cpu": kernel_cpu if kernel_cpu is not None else (
            (cpu_after.children_user - cpu.children_user) + (cpu_after.children_system - cpu.children_system)),
        "error": error,
        "cells": cells,
        "kernel_starts": _KEPT.start_cpu if keep_kernel and _KEPT is not None else None,
        "worker": os.getpid(),
    }


def prebuild(
    book: Path | str = ".",
    *,
    path_output: Path | str | None = None,
    config: Path | str | None = None,
    toc: Path | str | None = None,
    jobs: int = 2,
    single_thread: bool | None = None,
    keep_kernels: bool = True,
    dry_run: bool = False,
    log=print,
) -> dict[str, Any]:
    """Execute every uncached chapter of the book into its execution cache.

    Args:
        book: the book's directory (with ``_config.yml`` and ``_toc.yml``).
        path_output: ``jupyter-book build --path-output`` (default: ``book``).
        config: the configuration file (default ``book/_config.yml``).
        toc: the toc file (default ``book/_toc.yml``).
        jobs: worker processes (kernels running at the same time).
        single_thread: pin each kernel's math libraries to one thread
            (default: when ``jobs > 1``).
        keep_kernels: one kernel per worker, kept across the pages it
            executes (``explodebook.book.keptkernel``), instead of one per page.
        dry_run: only report which chapters are cached.
        log: where progress lines go.

    Returns:
        A report, with the keys ``cache`` (the path), ``cached`` (docnames
        found in the cache), ``executed`` and ``failed`` (docname to seconds
        or traceback), ``cells`` (docname to per-cell times) and ``wall``
        (seconds).
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    start = time.perf_counter()
    source = Book.load(Path(book).resolve(), config, toc)
    cfg = source.config
    path = cache_path(source.root, cfg, Path(path_output).resolve() if path_output is not None else None)
    cache = get_cache(str(path))
    store = figurecache.figure_store(path)
    execute = cfg.get("execute") or {}
    timeout = int(execute.get("timeout", 30))
    allow_errors = bool(execute.get("allow_errors", False))

    todo: list[Chapter] = []
    report: dict[str, Any] = {"cache": str(path), "cached": [], "executed": {}, "failed": {}, "cells": {}, "cpu": {}}
    starts: dict[int, float] = {}  # worker -> CPU of its kept kernels' start-ups
    for chapter in chapters(source):
        chapter.hashkey = notebook_hash(chapter.notebook, cache)
        try:
            record = cache.match_cache_notebook(chapter.notebook)
        except KeyError:
            todo.append(chapter)
            continue
        # The cache key hashes code cells only: a prose edit that adds an
        # inline expression finds the chapter cached without its value.
        known = (record.data or {}).get("expressions") or {}
        missing = [e for e in expressions.all_expressions(chapter.notebook.cells) if e not in known]
        if missing:
            log(f"prebuild: {chapter.docname}: {len(missing)} inline expression(s) new since it was cached "
                f"(first: {missing[0]!r}); executing it again")  # fmt: skip
            todo.append(chapter)
            continue
        # A page cached before the kernels recorded its figures cannot be
        # drawn in another language (explodebook.book.figurecache)
        unrecorded = figurecache.missing_figures(cache._get_notebook_path_cache(record.hashkey), store)
        if unrecorded:
            log(f"prebuild: {chapter.docname}: {len(unrecorded)} figure(s) not recorded; executing it again")
            todo.append(chapter)
            continue
        chapter.cached = True
        report["cached"].append(chapter.docname)
    log(f"prebuild: {len(report['cached'])} chapter(s) cached, {len(todo)} to execute with {jobs} worker(s) into {path}")
    if dry_run or not todo:
        report["wall"] = time.perf_counter() - start
        return report

    # Longest first (times of earlier executions of the same file, when the
    # cache has them), so that two workers finish close together.
    previous: dict[str, float] = {}
    for record in cache.list_cache_records():
        seconds = (record.data or {}).get("execution_seconds")
        if seconds is not None:
            previous[str(Path(record.uri).resolve())] = float(seconds)
    todo.sort(key=lambda c: -previous.get(str(c.path.resolve()), 0.0))

    if single_thread is None:
        single_thread = jobs > 1
    saved = dict(os.environ)
    if single_thread:
        for name, value in SINGLE_THREAD_ENV.items():
            os.environ.setdefault(name, value)
    # Kernels draw figures inline (ipykernel's backend); an MPLBACKEND such
    # as the test suite's "agg" would cache chapters without their figures.
    os.environ.pop("MPLBACKEND", None)
    os.environ[figuretext.ENV] = str(store)  # every PNG the kernels save is recorded there
    # The kernels share their runs for this prebuild (explodebook.cache): a
    # run one kernel did is read by the other, not run again. A new folder
    # each time, so no run outlives the package version that made it.
    runs = tempfile.TemporaryDirectory(prefix="explodebook-runs-")
    os.environ[run_cache.STORE_ENV] = runs.name
    try:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(_execute, str(c.path), c.notebook, timeout, allow_errors, keep_kernels): c for c in todo
            }  # fmt: skip
            for future in as_completed(futures):
                chapter = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # a worker died: leave it to the build
                    report["failed"][chapter.docname] = repr(error)
                    log(f"prebuild: {chapter.docname} could not be executed: {error!r}")
                    continue
                report["cells"][chapter.docname] = result["cells"]
                if result.get("kernel_starts") is not None:
                    starts[result["worker"]] = result["kernel_starts"]
                if result["error"]:
                    report["failed"][chapter.docname] = result["error"]
                    log(f"prebuild: {chapter.docname} FAILED after {result['seconds']:.1f} s "
                        "(left uncached; the build will execute it and report the error)")  # fmt: skip
                    log(result["error"])
                    continue
                executed = result["notebook"]
                problems = expressions.errors(executed)
                if problems:
                    report["failed"][chapter.docname] = "\n".join(problems)
                    log(f"prebuild: {chapter.docname}: inline expressions failed (left uncached):")
                    for line in problems:
                        log(f"  {line}")
                    continue
                if notebook_hash(executed, cache) != chapter.hashkey:
                    report["failed"][chapter.docname] = "hash changed by execution"
                    log(f"prebuild: {chapter.docname}: the executed notebook no longer matches its source; not cached")
                    continue
                record = cache.add_nb_to_project(str(chapter.path), read_data=chapter.read_fmt)
                cache.cache_notebook_bundle(
                    CacheBundleIn(
                        executed,
                        record.uri,
                        data={
                            "execution_seconds": result["seconds"],
                            # what the page's {eval} roles show (sphinxext)
                            "expressions": expressions.expression_outputs(executed),
                        },
                    ),
                    check_validity=False,
                    overwrite=True,
                )  # fmt: skip
                report["executed"][chapter.docname] = result["seconds"]
                report["cpu"][chapter.docname] = result["cpu"]
                log(f"prebuild: {chapter.docname} executed in {result['seconds']:.1f} s "
                    f"(kernel CPU {result['cpu']:.1f} s)")  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved)
        runs.cleanup()
    report["wall"] = time.perf_counter() - start
    report["kernel_starts"] = sum(starts.values())
    if starts:
        log(f"prebuild: kept kernels' start-ups (importing the frameworks): {report['kernel_starts']:.1f} s CPU "
            f"in {len(starts)} worker(s)")  # fmt: skip
    log(f"prebuild: kernel CPU summed over the pages executed: {sum(report['cpu'].values()):.1f} s"
        + (" + the start-ups above" if starts else ""))  # fmt: skip
    log(f"prebuild: done in {report['wall']:.1f} s; {len(report['executed'])} executed, {len(report['failed'])} failed")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m explodebook.book.prebuild [BOOK] [options]``."""
    parser = argparse.ArgumentParser(prog="python -m explodebook.book.prebuild", description=__doc__.splitlines()[0])
    parser.add_argument("book", nargs="?", default=".", help="the book's directory (default: .)")
    parser.add_argument("--path-output", default=None, help="as for jupyter-book build (default: the book)")
    parser.add_argument("--config", default=None, help="configuration file (default: BOOK/_config.yml)")
    parser.add_argument("--toc", default=None, help="toc file (default: BOOK/_toc.yml)")
    parser.add_argument("--jobs", "-j", type=int, default=min(2, os.cpu_count() or 1),
                        help="chapters executed at the same time (default: 2, or 1 on one core)")  # fmt: skip
    parser.add_argument("--timings", type=Path, default=None, help="write per-cell times to this JSON file")
    parser.add_argument("--fresh-kernels", action="store_true",
                        help="a new kernel for every page (default: one per worker, kept across its pages)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="only report what is cached")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if a chapter fails")
    args = parser.parse_args(argv)
    report = prebuild(
        args.book, path_output=args.path_output, config=args.config, toc=args.toc,
        jobs=max(1, args.jobs), keep_kernels=not args.fresh_kernels, dry_run=args.dry_run,
    )  # fmt: skip
    if args.timings is not None:
        args.timings.write_text(
            json.dumps({k: report[k] for k in ("executed", "cells", "wall")}, indent=1), encoding="utf-8"
        )
    return 1 if (args.strict and report["failed"]) else 0


if __name__ == "__main__":
    sys.exit(main())
