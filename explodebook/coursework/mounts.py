"""What a runner sees of the file system: the paths it needs, the grader's it must not."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from explodebook.coursework.linux import (
    MS_BIND,
    MS_NODEV,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
)

__all__ = ["needed_paths", "private_ancestors", "hideable", "hide", "expose", "private_tmpfs"]


def needed_paths() -> list[Path]:
    """Paths the runner must keep seeing: Python, the environment, the package."""
    import site

    import explodebook

    paths = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent,
             Path(explodebook.__file__).parent]
    with contextlib.suppress(AttributeError):
        paths += [Path(p) for p in site.getsitepackages()]
    return [p.resolve() for p in paths]


def private_ancestors(paths: Iterable[Path]) -> dict[str, list[str]]:
    """For each needed path another user cannot reach, its first private ancestor.

    Returns:
        ``{ancestor: [needed paths under it]}``, for `expose`.
    """
    out: dict[str, list[str]] = {}
    for path in sorted(set(paths)):
        for ancestor in [*reversed(path.parents), path]:
            try:
                mode = ancestor.stat().st_mode
            except OSError:
                break
            if not mode & 0o001:  # others may not pass through
                if ancestor != path:
                    out.setdefault(str(ancestor), []).append(str(path))
                break
    for base, items in out.items():  # outermost needed paths only
        items.sort(key=len)
        out[base] = [p for i, p in enumerate(items)
                     if not any(p.startswith(q.rstrip("/") + "/") for q in items[:i])]
    return out


def hideable(paths: Iterable[str | Path]) -> tuple[list[str], list[str]]:
    """Split ``paths`` into those the sandbox can hide and those it cannot.

    A path holding Python, its environment or the book's package cannot be
    hidden (the runner would stop working); nested paths collapse into
    the outermost one.
    """
    needed = needed_paths()
    hide, keep = [], []
    for path in sorted({Path(p).resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not path.exists() or any(path == h or h in path.parents for h in map(Path, hide)):
            continue
        if any(path == n or path in n.parents for n in needed):
            keep.append(str(path))
        else:
            hide.append(str(path))
    return hide, keep

def hide(paths: Iterable[str]) -> None:
    """Cover each path with an empty mount (a directory) or an empty file."""
    empty = None
    for path in paths:
        try:
            if os.path.isdir(path):
                mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
            elif os.path.exists(path):
                if empty is None:
                    empty = "/dev/null"
                mount(empty, path, None, MS_BIND, None)
        except OSError:
            pass  # it vanished meanwhile; nothing to hide


def expose(bases: dict[str, list[str]]) -> None:
    """Make paths the runner needs reachable though an ancestor is private.

    Python may live under ``/root`` (``mode 700``): the runner's user could
    not import the rest of the standard library. For each such ancestor, an
    empty tmpfs replaces it (hiding the rest of it, ``/root/.ssh`` say) and
    each needed folder is bind-mounted back, read-only, at its own path.
    """
    for base, paths in bases.items():
        fds = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in paths]
        mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        for path, fd in fds:
            os.makedirs(path, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
            os.close(fd)
        mount(None, base, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def private_tmpfs(path: str, size: int, needed: list[Path]) -> None:
    """An empty, size-limited tmpfs over ``path``, keeping what the runner needs.

    Python's environment or the book's package may live under ``/tmp`` (a
    clone of the book there, as CI makes): they are bind-mounted back,
    read-only, at their own paths, or the runner could not start.
    """
    base = Path(path)
    inside = sorted({p for p in needed if base in p.parents}, key=lambda p: len(p.parts))
    inside = [p for i, p in enumerate(inside) if not any(q in p.parents for q in inside[:i])]
    fds = [(str(p), os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in inside if p.is_dir()]
    mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    for kept, fd in fds:
        os.makedirs(kept, mode=0o755, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", kept, None, MS_BIND | MS_REC, None)
        mount(None, kept, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        os.close(fd)
