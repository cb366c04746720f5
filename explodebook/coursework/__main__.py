"""Coursework commands for instructors.

``python -m explodebook.coursework student-config [--output PATH]``
    the student edition's Jupyter Book configuration (``make book-student``);
``python -m explodebook.coursework assign CHAPTER [--out DIR]``
    turn a chapter into an otter-grader assignment (``make assignment``);
``python -m explodebook.coursework grade AUTOGRADER SUBMISSION... [--csv PATH]``
    grade notebooks (folders of them, or a platform's zip of them) into a
    CSV, each in a sandbox, several at once, without Docker.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m explodebook.coursework", description="Coursework tools for instructors."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser(
        "student-config", help="write the student edition's Jupyter Book configuration"
    )
    student.add_argument("--book", default=".", help="the book's directory (default: .)")
    student.add_argument(
        "--output", default="_build/student_config.yml", help="where to write it"
    )
    assign = commands.add_parser("assign", help="turn chapters into otter-grader assignments")
    assign.add_argument("chapters", nargs="+", help="chapter files (chapters/NN_name.md)")
    assign.add_argument("--book", default=".", help="the book's directory (default: .)")
    assign.add_argument(
        "--out", default="_build/assignments", help="one folder per chapter is made in it"
    )
    grade = commands.add_parser("grade", help="grade submitted notebooks into a CSV")
    grade.add_argument("autograder", help="the assignment's autograder.zip")
    grade.add_argument("submissions", nargs="+", help="notebooks or folders of notebooks")
    grade.add_argument("--csv", default="grades.csv", help="where to write the scores")
    grade.add_argument(
        "--feedback", default=None, help="a folder for each submission's feedback file"
    )
    grade.add_argument(
        "--jobs", type=int, default=None,
        help="notebooks graded at once (default: one per core, as memory allows)",
    )
    grade.add_argument(
        "--timeout", type=float, default=300.0, help="seconds each notebook may run (default 300)"
    )
    grade.add_argument(
        "--memory", type=float, default=4.0, help="GB of memory each notebook may use (default 4)"
    )
    grade.add_argument(
        "--no-resume", dest="resume", action="store_false",
        help="grade everything again, even notebooks the CSV already has",
    )
    args = parser.parse_args(argv)

    if args.command == "student-config":
        from explodebook.coursework.edition import write_student_config

        print(write_student_config(args.book, args.output))
    elif args.command == "assign":
        from explodebook.coursework.assignment import assign as make_assignment

        for chapter in map(Path, args.chapters):
            files = make_assignment(chapter, Path(args.out) / chapter.stem, book=args.book)
            graded = ", ".join(files.questions) or "none (every exercise is graded by hand)"
            print(f"{chapter.name}:\n  student notebook  {files.student}\n"
                  f"  solutions         {files.solution}\n  autograder        {files.autograder}\n"
                  f"  autograded        {graded}")
    elif args.command == "grade":
        from explodebook.coursework.grading import grade as grade_all
        from explodebook.coursework.sandbox import Limits

        def progress(result, done, total):
            print(f"[{done}/{total}] {result.student}: {result.total:g}/{result.total_possible:g}"
                  f" ({result.status}, {result.seconds:.0f} s)", file=sys.stderr, flush=True)

        table = grade_all(
            args.submissions, args.autograder, args.csv, args.feedback,
            jobs=args.jobs, limits=Limits(seconds=args.timeout, memory=int(args.memory * 2**30)),
            resume=args.resume, progress=progress,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        shown = table.drop(columns=["error", "notes", "sha256"])
        print(shown.to_string())
        print(f"\nscores written to {args.csv}")
        problems = table[table["status"] != "graded"]
        for path, row in problems.iterrows():
            print(f"{row['status']}: {path}: {row['error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
