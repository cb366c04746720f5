"""Book build time: cold (empty execution cache) and warm (one prose edit), before and after.

Run with ``python benchmarks/book_build.py`` (about 10-15 minutes on two
cores); writes ``benchmarks/book_results.md`` and prints it. The book is
copied to a temporary directory first, so the working tree and its
``_build`` are never touched and a prose edit can be made safely. Each
tree's kernels import the package from that tree (``PYTHONPATH``).

Measured, each as wall time and CPU time (user + sys of every process the
step starts, kernels included) with the load average before and after,
because the machine may be shared:

0. before: the same cold parallel build of ``--before REF`` (default
   ``HEAD``: the last commit; ``git archive`` of it), in the same run, so
   that the working tree's changes are judged side by side with what they
   change (``--before none`` skips it); ``--with PATH...`` makes the after
   tree that commit plus only those working-tree files;
1. cold, serial: ``jupyter-book build`` with an empty execution cache, as
   ``make book`` did: MyST-NB executes the chapters one at a time
   (skipped with ``--skip-serial``: it is the slow one);
2. cold, parallel: ``python -m explodebook.book.prebuild --jobs N`` (the
   chapters executed N at a time into the same cache), then
   ``jupyter-book build``, which must execute nothing;
3. warm: one sentence of prose changed in one chapter, then
   ``jupyter-book build`` again.

From the prebuilds' logs: the kernel CPU summed over the pages (with the
kept kernels' start-ups), the slowest page, and, page by page, whether the
working tree's outputs are those of the ``--before`` tree
(`explodebook.book.keptkernel.comparable`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
# Not copied: environments (.envs holds `make test-envs`' virtualenvs, CUDA
# PyTorch included: copying them filled the disk), build outputs, caches.
SKIP = {".venv", ".envs", "_build", "build", ".git", ".pytest_cache", "__pycache__"}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path, log: Path, pythonpath: bool = True) -> dict[str, Any]:
    """Wall and CPU seconds of ``command`` and its children; output to ``log``.

    A build that ends with warnings (``-W``: exit status 1) is still timed;
    its status is reported next to the times. ``command`` runs with the
    book's tree ``cwd`` first on ``PYTHONPATH``, so that its kernels import
    that tree's package, not the one installed in the environment
    (``pythonpath=False``: without this process's ``PYTHONPATH`` and
    ``VIRTUAL_ENV``, as in a reader's shell in a clone with its own
    virtualenv).
    """
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as the Makefile: no C++ log lines as stderr outputs
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), *filter(None, [os.environ.get("PYTHONPATH")])])
    else:
        env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    load_before = os.getloadavg()[0]
    cpu, start = children_cpu(), time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    status = "ok" if result.returncode == 0 else f"exit {result.returncode}, see {log}"
    return {"wall": wall, "cpu": cpu, "load": f"{load_before:.1f} → {os.getloadavg()[0]:.1f}", "status": status}


def copy_book(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=lambda d, names: [n for n in names if n in SKIP])
    return dest


def archive_book(ref: str, dest: Path) -> str:
    """The tree of commit ``ref`` in ``dest`` (``git archive``); returns its short hash."""
    short = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True)
    data = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return short.stdout.strip()


PAGE_LINE = re.compile(r"prebuild: (\S+) executed in ([0-9.]+) s \(kernel CPU ([0-9.]+) s")
STARTS_LINE = re.compile(r"kept kernels' start-ups \(importing the frameworks\): ([0-9.]+) s CPU")


def pages(log: Path) -> dict[str, Any]:
    """From a prebuild's log: each page's wall and kernel CPU seconds, and the kept kernels' start-ups."""
    text = log.read_text()
    found = {m[1]: (float(m[2]), float(m[3])) for m in PAGE_LINE.finditer(text)}
    starts = sum(float(m[1]) for m in STARTS_LINE.finditer(text))
    return {"pages": found, "starts": starts, "kernel_cpu": sum(c for _, c in found.values()) + starts}


def outputs(cache_dir: Path, book: Path) -> dict[str, Any]:
    """Each cached page's comparable outputs, by its path relative to the book (whose path is masked)."""
    from jupyter_cache import get_cache

    from explodebook.book.keptkernel import comparable

    cache = get_cache(str(cache_dir))
    found = {}
    for record in cache.list_cache_records():
        uri = Path(record.uri)
        name = uri.parent.name + "/" + uri.name if uri.parent.name == "chapters" else uri.name
        text = json.dumps(comparable(cache.get_cache_bundle(record.pk).nb))
        found[name] = json.loads(text.replace(str(book), "BOOK"))
    return found


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[int]]:
    """Pages whose outputs differ, with the indexes of the cells that do."""
    differ = {}
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None or b is None or len(a) != len(b):
            differ[name] = []
        elif a != b:
            differ[name] = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return differ


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def cold(book: Path, output: Path, jobs: int, logs: Path, tag: str) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Prebuild, then build, of ``book`` into ``output``: the table's rows and the prebuild's per-page figures."""
    build = [str(BIN / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going", "--path-output", str(output)]
    pre = timed([str(BIN / "python"), "-m", "explodebook.book.prebuild", ".", "--jobs", str(jobs),
                 "--path-output", str(output)], book, logs / f"prebuild-{tag}.log")  # fmt: skip
    post = timed(build, book, logs / f"build-{tag}.log")
    executed = (logs / f"build-{tag}.log").read_text().count("Executing notebook")
    if executed:  # a chapter prebuild could not execute, or a cache-key mismatch
        post["status"] = f"{post['status']}; executed {executed} notebook(s) itself"
    total = {"wall": pre["wall"] + post["wall"], "cpu": pre["cpu"] + post["cpu"], "load": "", "status": ""}
    rows = [(f"{tag}: prebuild --jobs {jobs}", pre), (f"{tag}: then `jupyter-book build` (all cached)", post),
            (f"**{tag}: cold, parallel (prebuild --jobs {jobs} + build)**", total)]  # fmt: skip
    return rows, {**pages(logs / f"prebuild-{tag}.log"), "prebuild_cpu": pre["cpu"], "cold": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="prebuild workers (default 2)")
    parser.add_argument("--skip-serial", action="store_true", help="do not time the serial cold build")
    parser.add_argument("--before", default="HEAD", help="commit to compare with, side by side (default HEAD; 'none': no comparison)")
    parser.add_argument("--with", dest="with_files", nargs="+", default=None, metavar="PATH",
                        help="the after tree is the --before commit with only these working-tree files "
                             "(others' unfinished work left out; default: a copy of the whole working tree)")  # fmt: skip
    parser.add_argument("--chapter", default="chapters/02_the_problem.md", help="the chapter whose prose is edited")
    parser.add_argument("--out", type=Path, default=HERE / "book_results.md")
    parser.add_argument("--logs", type=Path, default=None, help="keep the build logs here (default: a new temporary directory)")
    args = parser.parse_args()

    rows = []
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="book-bench-") as tmp:
        logs = args.logs or Path(tempfile.mkdtemp(prefix="book-bench-logs-"))
        logs.mkdir(parents=True, exist_ok=True)
        before_name = ""
        if args.before != "none":
            before_book = Path(tmp) / "before"
            before_name = f"before ({args.before}, {archive_book(args.before, before_book)})"
            (before_book / "_vendor").symlink_to(ROOT / "_vendor")  # the book's JavaScript, not in git
            found_rows, figures["before"] = cold(before_book, Path(tmp) / "before-out", args.jobs, logs, "before")
            rows += found_rows
            figures["before"]["outputs"] = outputs(Path(tmp) / "before-out" / "_build" / ".jupyter_cache", before_book)
        if args.with_files:  # the commit's tree, with these working-tree files on top
            book = Path(tmp) / "book"
            archive_book(args.before if args.before != "none" else "HEAD", book)
            (book / "_vendor").symlink_to(ROOT / "_vendor")
            for name in args.with_files:
                if (ROOT / name).exists():
                    (book / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / name, book / name)
                else:
                    (book / name).unlink(missing_ok=True)
        else:
            book = copy_book(Path(tmp) / "book")
        if not args.skip_serial:
            t = timed([str(BIN / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going", "--path-output",
                       str(Path(tmp) / "serial")], book, logs / "serial.log")  # fmt: skip
            rows.append(("cold, serial (`jupyter-book build`)", t))
        out = Path(tmp) / "parallel"
        found_rows, figures["after"] = cold(book, out, args.jobs, logs, "after")
        rows += found_rows
        figures["after"]["outputs"] = outputs(out / "_build" / ".jupyter_cache", book)
        if "before" in figures:  # the differing cells, both ways, to look at
            differ = differences(figures["before"]["outputs"], figures["after"]["outputs"])
            (logs / "differences.json").write_text(json.dumps(
                {name: {str(i): [figures[tree]["outputs"].get(name, [None] * (i + 1))[i] for tree in ("before", "after")]
                        for i in cells} for name, cells in differ.items()}, indent=1))  # fmt: skip
        chapter = book / args.chapter
        text = chapter.read_text()
        marker = "\n\n"
        first = text.index(marker, text.index("\n# ")) + len(marker)  # first paragraph after the title
        chapter.write_text(text[:first] + "A sentence added for the benchmark.\n\n" + text[first:])
        build = [str(BIN / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going", "--path-output", str(out)]
        rows.append(("after: warm, prose edit in one chapter, `jupyter-book build`", timed(build, book, logs / "warm.log")))

    from run import machine  # benchmarks/run.py: CPU, cores, versions, load

    lines = [
        "# Book build",
        "",
        f"Machine: {machine()}.",
        "",
        "| step | wall | CPU (user + sys) | load average before → after | status |",
        "|---|---|---|---|---|",
        *[f"| {name} | {minutes(t['wall'])} | {t['cpu']:.0f} s | {t['load']} | {t['status']} |" for name, t in rows],
        "",
        "CPU time counts every process a step starts (kernels included). The "
        "machine may be shared: wall times depend on its load, CPU times much less. "
        f"Logs: {logs}.",
        "",
    ]
    after_name = (f"after ({args.before if args.before != 'none' else 'HEAD'} + {len(args.with_files)} working-tree file(s))"
                  if args.with_files else "after (working tree)")  # fmt: skip
    lines += summary(figures, before_name, after_name)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


def summary(figures: dict[str, dict[str, Any]], before_name: str, after_name: str) -> list[str]:
    """The before/after table: kernel CPU over the pages, slowest page, identical outputs."""
    after = figures["after"]

    def slowest(f: dict[str, Any]) -> str:
        name, (wall, _) = max(f["pages"].items(), key=lambda item: item[1][0])
        over = sum(1 for wall, _ in f["pages"].values() if wall > 30)
        return f"{name} {wall:.0f} s; {over} over 30 s"

    def kernel(f: dict[str, Any]) -> str:
        return f"{f['kernel_cpu']:.1f} s ({len(f['pages'])} pages" + (
            f", start-ups {f['starts']:.1f} s)" if f["starts"] else ")")

    if "before" not in figures:
        return [f"Kernel CPU summed over the pages: {kernel(after)}; slowest page: {slowest(after)}.", ""]
    before = figures["before"]
    differ = differences(before["outputs"], after["outputs"])
    same = len(set(before["outputs"]) | set(after["outputs"])) - len(differ)
    # three digits: the target (at most 0.5) is judged on this one
    ratio = lambda key, digits=2: f"{after[key] / before[key]:.{digits}f}"  # noqa: E731
    return [
        "## Before and after, side by side in this run",
        "",
        f"| figure | {before_name} | {after_name} | after / before |",
        "|---|---|---|---|",
        f"| kernel CPU summed over the pages | {kernel(before)} | {kernel(after)} | {ratio('kernel_cpu', 3)} |",
        f"| prebuild CPU, every process | {before['prebuild_cpu']:.0f} s | {after['prebuild_cpu']:.0f} s | {ratio('prebuild_cpu')} |",
        f"| cold parallel build CPU (prebuild + build) | {before['cold']['cpu']:.0f} s | {after['cold']['cpu']:.0f} s | "
        f"{after['cold']['cpu'] / before['cold']['cpu']:.2f} |",
        f"| cold parallel build wall | {minutes(before['cold']['wall'])} | {minutes(after['cold']['wall'])} | "
        f"{after['cold']['wall'] / before['cold']['wall']:.2f} |",
        f"| slowest page (wall, in the prebuild) | {slowest(before)} | {slowest(after)} | |",
        "",
        f"Pages whose outputs are those of the before tree: {same} of {same + len(differ)}"
        + ("." if not differ else "; differing (page: cells): "
           + "; ".join(f"{name}: {cells or 'missing'}" for name, cells in differ.items()) + "."),
        "",
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
