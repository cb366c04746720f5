"""The student edition's configuration is the book's, minus the solutions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from explodebook.coursework import student_config, write_student_config
from explodebook.coursework.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_student_config_hides_solutions_and_every_route_to_the_sources(tmp_path):
    full = book_config()
    student = student_config(full, tmp_path / "cache")
    assert student["sphinx"]["config"]["hide_solutions"] is True
    assert student["sphinx"]["config"]["html_copy_source"] is False
    for button in ("use_download_button", "use_repository_button", "use_issues_button"):
        assert student["html"][button] is False
    assert not any(key.endswith("_url") and value
                   for key, value in student["launch_buttons"].items())
    assert student["title"].endswith("(student edition)")
    assert student["execute"]["cache"] == str((tmp_path / "cache").resolve())
    # Everything else is the book's own setting, and the input is untouched.
    assert student["bibtex_bibfiles"] == full["bibtex_bibfiles"]
    assert student["sphinx"]["extra_extensions"] == full["sphinx"]["extra_extensions"]
    assert "hide_solutions" not in full["sphinx"]["config"]


def test_a_book_without_sphinx_exercise_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sphinx_exercise"):
        student_config({"title": "x", "sphinx": {"extra_extensions": []}}, tmp_path)


def test_write_student_config_writes_a_loadable_file(tmp_path, capsys):
    target = write_student_config(ROOT, tmp_path / "student.yml", tmp_path / "cache")
    written = yaml.safe_load(target.read_text())
    assert written["sphinx"]["config"]["hide_solutions"] is True
    assert main(["student-config", "--book", str(ROOT), "--output", str(tmp_path / "b.yml")]) == 0
    assert str(tmp_path / "b.yml") in capsys.readouterr().out


def test_a_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="_config.yml"):
        write_student_config(tmp_path)
