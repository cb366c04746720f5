"""The Chinese edition's cost: what it adds to the English build, and its own render, side by side.

Run from the repository root after ``make book`` (the English execution cache
and its figure store must be there) with ``.venv/bin/python benchmarks/zh_build.py``
(``--out FILE`` also writes the Markdown table; ``make bench-zh`` writes
``benchmarks/zh_results.md``). Not part of the tests.

Issue 20's target: the English build grows by less than the Chinese
edition's render time, and no page is executed twice. Measured in one run:

* **recording** (what the English build gains): every figure of the current
  pages is recorded again into a scratch store with
  `explodebook.book.figuretext.record`, the function the book's kernels
  call on each PNG they save (pickling the figure, writing it);
* **English render**: ``jupyter-book build`` of the English book from its
  execution cache (nothing executed), into a scratch folder;
* **Chinese render**: the figures redrawn in Chinese from a cold redraw
  folder (`explodebook.book.figurecache.translate_cache`), then
  ``jupyter-book build`` of the Chinese edition from that cache.

The two renders alternate over ``--repeats``; medians are compared. The
builds' logs are checked for "Executing" (a page executed again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explodebook.book import figurecache, figuretext  # noqa: E402
from explodebook.book.i18n import write_edition_config, write_edition_toc  # noqa: E402
from explodebook.book.prebuild import cache_path  # noqa: E402
from explodebook.book.sources import Book  # noqa: E402

LANGUAGE = "zh_CN"


def recording_seconds(cache: Path, scratch: Path) -> tuple[float, int]:
    """CPU seconds `figuretext.record` takes for every figure of the current pages, and their count."""
    store = figurecache.figure_store(cache)
    pngs: dict[str, bytes] = {}
    for _, path in figurecache.page_notebooks(ROOT, cache):
        for png in figurecache.pngs(json.loads(path.read_text(encoding="utf-8"))):
            pngs.setdefault(figuretext.png_key(png), png)
    total = 0.0
    count = 0
    for key, png in sorted(pngs.items()):
        pickled = store / f"{key}.pickle"
        if not pickled.exists():
            continue
        stored = figuretext.load(pickled)
        start = time.process_time()
        figuretext.record(scratch, stored["figure"], png, stored["args"], stored["kwargs"])
        total += time.process_time() - start
        count += 1
    return total, count


def children_cpu() -> float:
    """CPU seconds of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build(config: Path, toc: Path | None, out: Path) -> tuple[float, str, float]:
    """Wall seconds of one ``jupyter-book build`` into ``out`` (removed first), its log, and its CPU seconds."""
    shutil.rmtree(out, ignore_errors=True)
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "-W", "-n",
               "--keep-going", "--config", str(config), "--path-output", str(out)]  # fmt: skip
    if toc is not None:
        command += ["--toc", str(toc)]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    start, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"build failed ({config.name}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr, children_cpu() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    book = Book.load(ROOT)
    cache = cache_path(book.root, book.config)
    catalog = ROOT / "locales" / LANGUAGE / "LC_MESSAGES" / f"{figurecache.DOMAIN}.po"
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="zh-bench-") as tmp:
        scratch = Path(tmp)
        record_cpu, figures = recording_seconds(cache, scratch / "store")
        english_config = write_edition_config(ROOT, None, scratch / "en_config.yml")
        zh_config = write_edition_config(ROOT, LANGUAGE, scratch / "zh_config.yml")
        zh_toc = write_edition_toc(ROOT, LANGUAGE, scratch / "zh_toc.yml")
        target = figurecache.edition_cache(cache, LANGUAGE)
        english, redraw, chinese = [], [], []
        cpu: dict[str, list[float]] = {"english": [], "redraw": [], "chinese": []}
        executed = []
        for repeat in range(args.repeats):
            seconds, log, used = build(english_config, None, scratch / "en")
            english.append(seconds)
            cpu["english"].append(used)
            executed += ["English"] * log.count("Executing")
            kept = f"bench-{os.getpid()}-{repeat}"  # a new folder of redraws: all drawn again
            start, used = time.perf_counter(), time.process_time()
            report = figurecache.translate_cache(ROOT, cache, target, catalog, kept)
            redraw.append(time.perf_counter() - start)
            cpu["redraw"].append(time.process_time() - used)
            shutil.rmtree(figurecache.figure_store(cache) / kept, ignore_errors=True)
            seconds, log, used = build(zh_config, zh_toc, scratch / "zh")
            chinese.append(seconds)
            cpu["chinese"].append(used)
            executed += ["Chinese"] * log.count("Executing")
    growth = record_cpu
    med = {name: statistics.median(values) for name, values in cpu.items()}
    zh_render = med["redraw"] + med["chinese"]
    lines = [
        "# The Chinese edition's cost (issue 20)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at the end; "
        f"medians of {args.repeats} alternating repeat(s). Command: `python benchmarks/zh_build.py`. "
        "CPU: user + system seconds (of the build's processes for a render).",
        "",
        "| step | CPU (s) | wall (s) | note |",
        "|---|---:|---:|---|",
        f"| English build: recording its {figures} figures | {record_cpu:.1f} | | what the English build gains |",
        f"| English render (jupyter-book, from the cache) | {med['english']:.1f} | "
        f"{statistics.median(english):.1f} | |",
        f"| Chinese figures redrawn, cold | {med['redraw']:.1f} | {statistics.median(redraw):.1f} | "
        f"{report.redrawn} PNGs |",
        f"| Chinese render (jupyter-book, from the edition's cache) | {med['chinese']:.1f} | "
        f"{statistics.median(chinese):.1f} | |",
        f"| Chinese edition in all | {zh_render:.1f} | "
        f"{statistics.median(redraw) + statistics.median(chinese):.1f} | redraw + render |",
        "",
        f"- English build growth {growth:.1f} s CPU < Chinese render {zh_render:.1f} s CPU: "
        f"{'met' if growth < zh_render else 'not met'} (ratio {growth / zh_render:.3f}).",
        f"- Pages executed by either render: {len(executed)} "
        f"({'met' if not executed else 'not met'}: no page executed twice).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
