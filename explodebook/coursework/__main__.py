"""``python -m explodebook.coursework student-config [--output PATH]``."""

from __future__ import annotations

import argparse
import sys

from explodebook.coursework.edition import write_student_config


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
    args = parser.parse_args(argv)
    if args.command == "student-config":
        print(write_student_config(args.book, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
