"""Book build time: cold (empty execution cache) and warm (one prose edit).

Run with ``python benchmarks/book_build.py`` (about 7-12 minutes on two
cores); writes ``benchmarks/book_results.md`` and prints it. The book is
copied to a temporary directory first, so the working tree and its
``_build`` are never touched and a prose edit can be made safely.

Measured, each as wall time and CPU time (user + sys of every process the
step starts, kernels included) with the load average before and after,
because the machine may be shared:

1. cold, serial: ``jupyter-book build`` with an empty execution cache, as
   ``make book`` did: MyST-NB executes the chapters one at a time
   (skipped with ``--skip-serial``: it is the slow one);
2. cold, parallel: ``python -m explodebook.book.prebuild --jobs N`` (the
   chapters executed N at a time into the same cache), then
   ``jupyter-book build``, which must execute nothing;
3. warm: one sentence of prose changed in one chapter, then
   ``jupyter-book build`` again.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
# Not copied: environments (.envs holds `make test-envs`' virtualenvs, CUDA
# PyTorch included: copying them filled the disk), build outputs, caches.
SKIP = {".venv", ".envs", "_build", "build", ".git", ".pytest_cache", "__pycache__"}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path, log: Path) -> dict[str, float | str]:
    """Wall and CPU seconds of ``command`` and its children; output to ``log``.

    A build that ends with warnings (``-W``: exit status 1) is still timed;
    its status is reported next to the times.
    """
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="prebuild workers (default 2)")
    parser.add_argument("--skip-serial", action="store_true", help="do not time the serial cold build")
    parser.add_argument("--chapter", default="chapters/02_the_problem.md", help="the chapter whose prose is edited")
    parser.add_argument("--out", type=Path, default=HERE / "book_results.md")
    parser.add_argument("--logs", type=Path, default=None, help="keep the build logs here (default: a new temporary directory)")
    args = parser.parse_args()

    build = [str(BIN / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="book-bench-") as tmp:
        book = copy_book(Path(tmp) / "book")
        logs = args.logs or Path(tempfile.mkdtemp(prefix="book-bench-logs-"))
        logs.mkdir(parents=True, exist_ok=True)
        if not args.skip_serial:
            t = timed([*build, "--path-output", str(Path(tmp) / "serial")], book, logs / "serial.log")
            rows.append(("cold, serial (`jupyter-book build`)", t))
        out = ["--path-output", str(Path(tmp) / "parallel")]
        pre = timed([str(BIN / "python"), "-m", "explodebook.book.prebuild", ".", "--jobs", str(args.jobs), *out],
                    book, logs / "prebuild.log")  # fmt: skip
        post = timed([*build, *out], book, logs / "build.log")
        log = (logs / "build.log").read_text()
        executed = log.count("Executing notebook")
        if executed:  # a chapter prebuild could not execute, or a cache-key mismatch
            post["status"] = f"{post['status']}; executed {executed} notebook(s) itself"
        rows.append((f"prebuild --jobs {args.jobs}", pre))
        rows.append(("then `jupyter-book build` (all cached)", post))
        total = {"wall": pre["wall"] + post["wall"], "cpu": pre["cpu"] + post["cpu"], "load": "", "status": ""}
        rows.append((f"**cold, parallel (prebuild --jobs {args.jobs} + build)**", total))
        chapter = book / args.chapter
        text = chapter.read_text()
        marker = "\n\n"
        first = text.index(marker, text.index("\n# ")) + len(marker)  # first paragraph after the title
        chapter.write_text(text[:first] + "A sentence added for the benchmark.\n\n" + text[first:])
        rows.append(("warm: prose edit in one chapter, `jupyter-book build`", timed([*build, *out], book, logs / "warm.log")))

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
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
