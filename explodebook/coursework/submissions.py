"""Finding the submissions in what a learning platform hands an instructor.

`discover` takes notebooks, folders and ``.zip`` downloads and returns one
`Submission` per notebook found, plus one per student who handed in no
notebook at all, so that every student gets a row in the grades. It knows
the layouts of the usual platforms' "download all submissions":

``files``
    a folder of notebooks (any names): the student is the file's name;
``folders``
    a folder of folders, one per student (``alice/hw.ipynb``);
``canvas``
    ``doejane_12345_678901_hw07.ipynb`` (``doejane_LATE_12345_...`` when
    late): the student is ``doejane`` (Canvas user 12345);
``moodle``
    folders ``Jane Doe_123456_assignsubmission_file_/hw07.ipynb``;
``blackboard``
    ``Homework 7_jdoe_attempt_2024-03-05-14-22-10_hw07.ipynb`` (and a
    ``.txt`` receipt per attempt, skipped);
``gradescope``
    an export with ``submission_metadata.yml`` and one
    ``submission_<id>/`` folder per submission: the student is the
    submitters' names from the metadata.

Zip files are extracted first (into a folder the caller gives; members
that would land outside it, links, and archives that expand beyond a
size limit are refused), as downloaded.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Submission", "discover", "extract_zip", "MAX_NOTEBOOK_BYTES"]

#: The largest notebook graded (larger ones get a row saying so).
MAX_NOTEBOOK_BYTES = 20 * 2**20
#: The most bytes a submissions zip may expand to.
MAX_ZIP_BYTES = 4 * 2**30

_CANVAS = re.compile(r"^(?P<name>[^_]+)_(?:LATE_)?(?P<user>\d+)_(?P<sub>\d+)_(?P<file>.+)$")
_MOODLE = re.compile(r"^(?P<name>.+)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_?$")
_BLACKBOARD = re.compile(
    r"^(?P<assignment>.+)_(?P<user>[^_]+)_attempt_"
    r"(?P<time>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?:_(?P<file>.+))?$"
)
_RECEIPT = re.compile(r"^.+_[^_]+_attempt_\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.txt$")
_SKIP_DIRS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}


@dataclass(frozen=True)
class Submission:
    """One row of the grades.

    Attributes:
        path: the notebook to grade; for a student without a notebook,
            what they handed in (a file or their folder).
        student: who handed it in, as the layout says.
        layout: the layout it was found in (see the module's docstring).
        notebook: whether ``path`` is a notebook to grade.
        note: what to tell the instructor about it (several notebooks,
            none, ...).
    """

    path: Path
    student: str
    layout: str
    notebook: bool = True
    note: str = ""


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in _SKIP_DIRS


def _is_notebook(path: Path) -> bool:
    return path.suffix.lower() == ".ipynb"


def _files_under(folder: Path) -> list[Path]:
    out = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") or part in _SKIP_DIRS for part in relative):
            continue
        if path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def _rows(student: str, layout: str, files: list[Path], place: Path) -> list[Submission]:
    """A student's rows: one per notebook, or one saying there is none."""
    notebooks = [f for f in files if _is_notebook(f)]
    if not notebooks:
        if files:
            names = ", ".join(f.name for f in files[:5]) + (" ..." if len(files) > 5 else "")
            note = f"no notebook (.ipynb) handed in; found {names}"
            return [Submission(files[0] if len(files) == 1 else place, student, layout, False, note)]
        return [Submission(place, student, layout, False, "no file handed in")]
    note = ""
    rows = []
    for notebook in notebooks:
        if len(notebooks) > 1:
            note = f"one of {len(notebooks)} notebooks of this student"
        rows.append(Submission(notebook, student, layout, True, note))
    return rows


def _gradescope(folder: Path) -> list[Submission]:
    import yaml

    metadata = yaml.safe_load((folder / "submission_metadata.yml").read_text(errors="replace"))
    metadata = metadata if isinstance(metadata, dict) else {}
    rows = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p)):
        entry = metadata.get(sub.name) or {}
        submitters = entry.get(":submitters") or entry.get("submitters") or []
        names = [
            str(s.get(":name") or s.get("name") or s.get(":email") or s.get("email") or "")
            for s in submitters if isinstance(s, dict)
        ]
        student = " & ".join(n for n in names if n) or sub.name
        rows += _rows(student, "gradescope", _files_under(sub), sub)
    return rows


def _folder(folder: Path) -> list[Submission]:
    if (folder / "submission_metadata.yml").is_file():
        return _gradescope(folder)
    rows: list[Submission] = []
    loose: dict[tuple[str, str], list[Path]] = {}
    for entry in sorted(p for p in folder.iterdir() if _visible(p)):
        if entry.is_symlink():
            continue
        if entry.is_dir():
            moodle = _MOODLE.match(entry.name)
            if moodle:
                rows += _rows(moodle["name"], "moodle", _files_under(entry), entry)
            else:
                rows += _rows(entry.name, "folders", _files_under(entry), entry)
            continue
        if not entry.is_file():
            continue
        if _RECEIPT.match(entry.name):
            continue  # Blackboard's receipt of an attempt
        blackboard = _BLACKBOARD.match(entry.name)
        canvas = _CANVAS.match(entry.name)
        if blackboard and blackboard["file"]:
            loose.setdefault((blackboard["user"], "blackboard"), []).append(entry)
        elif canvas:
            loose.setdefault((canvas["name"], "canvas"), []).append(entry)
        else:
            loose.setdefault((entry.stem if _is_notebook(entry) else entry.name, "files"), []).append(
                entry
            )
    for (student, layout), files in loose.items():
        rows += _rows(student, layout, files, files[0])
    return rows


def extract_zip(archive: Path, into: Path) -> Path:
    """Extract a downloaded zip of submissions into a new folder of ``into``.

    Raises:
        ValueError: a member would land outside the folder, is a link, or
            the archive expands beyond ``MAX_ZIP_BYTES``.
    """
    target = into / archive.stem
    n = 1
    while target.exists():
        n += 1
        target = into / f"{archive.stem}-{n}"
    target.mkdir(parents=True)
    root = target.resolve()
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
            raise ValueError(f"{archive} expands to more than {MAX_ZIP_BYTES // 2**30} GB")
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ValueError(f"{archive} holds a link ({info.filename}): refused")
            destination = (root / info.filename).resolve()
            if root != destination and root not in destination.parents:
                raise ValueError(f"{archive} holds a path outside itself ({info.filename}): refused")
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(destination, "wb") as out:
                left = info.file_size + 1
                while chunk := source.read(min(1 << 20, left)):
                    left -= len(chunk)
                    if left <= 0:
                        raise ValueError(f"{archive}: {info.filename} is larger than it says")
                    out.write(chunk)
    return target


def discover(paths: Iterable[str | Path], unpack_into: Path | None = None) -> list[Submission]:
    """Every submission in ``paths``: notebooks, folders, zips of either.

    Args:
        paths: what the instructor passed.
        unpack_into: where to extract zip files (required if there are any).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: nothing was found.
    """
    rows: list[Submission] = []
    for item in map(Path, paths):
        if not item.exists():
            raise FileNotFoundError(f"no submissions at {item}")
        if item.is_file() and item.suffix.lower() == ".zip":
            if unpack_into is None:
                raise ValueError(f"{item} is a zip: give a folder to extract it into")
            folder = extract_zip(item, unpack_into)
            inside = [p for p in folder.iterdir() if _visible(p)]
            if len(inside) == 1 and inside[0].is_dir() and not _MOODLE.match(inside[0].name):
                folder = inside[0]  # the platform's export wraps everything in one folder
            rows += _folder(folder)
        elif item.is_dir():
            rows += _folder(item)
        else:
            canvas, blackboard = _CANVAS.match(item.name), _BLACKBOARD.match(item.name)
            if blackboard and blackboard["file"]:
                student, layout = blackboard["user"], "blackboard"
            elif canvas:
                student, layout = canvas["name"], "canvas"
            else:
                student, layout = item.stem, "files"
            rows += _rows(student, layout, [item], item)
    if not rows:
        raise ValueError("no submissions: pass notebooks, folders or zips holding *.ipynb files")
    return rows
