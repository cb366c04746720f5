"""Memory and process limits on each grading job, with Linux cgroups (v1 or v2)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from explodebook.coursework.limits import Limits

__all__ = ["Cgroups"]

#: Where the kernel's cgroup file systems are mounted.
ROOT = Path("/sys/fs/cgroup")
#: The controllers a job's limits need.
NEEDED = frozenset({"memory", "pids"})


def _controllers(path: Path) -> set[str]:
    """The controllers a ``cgroup.controllers`` or ``cgroup.subtree_control`` file lists."""
    return {word.lstrip("+") for word in path.read_text().split()}


class Cgroups:
    """A session cgroup with one child per job (v2, or v1 memory + pids)."""

    def __init__(self, version: str, roots: dict[str, Path]) -> None:
        self.version = version
        self.roots = roots  # controller ("memory", "pids", or "" for v2) -> session dir

    @staticmethod
    def sweep(prefix: str, base: Path = ROOT) -> None:
        """Remove the cgroups of grading sessions whose grader is gone (killed, say)."""
        parents = [base] if (base / "cgroup.controllers").exists() else [
            base / "memory", base / "pids"]
        for parent in parents:
            for session in parent.glob(f"{prefix}-*") if parent.is_dir() else []:
                pid = session.name[len(prefix) + 1:].split("-")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    Cgroups("v2", {"": session}).remove()

    @classmethod
    def create(cls, name: str, base: Path = ROOT) -> Cgroups | None:
        """A session cgroup ``name`` under ``base``, or ``None`` if this machine has none.

        Version 2 (one unified hierarchy, ``cgroup.controllers`` in
        ``base``): the memory and pids controllers must reach the session,
        that is be enabled in ``base``'s ``cgroup.subtree_control``; the
        session enables them for its jobs. Version 1: the memory and pids
        hierarchies, a session folder in each.
        """
        try:
            if (base / "cgroup.controllers").exists():  # unified hierarchy
                if not NEEDED <= _controllers(base / "cgroup.controllers"):
                    return None
                if not NEEDED <= _controllers(base / "cgroup.subtree_control"):
                    # not enabled for base's children yet: a delegated subtree
                    # without processes of its own allows it, the root always
                    (base / "cgroup.subtree_control").write_text("+memory +pids")
                    if not NEEDED <= _controllers(base / "cgroup.subtree_control"):
                        return None
                session = base / name
                session.mkdir()
                try:
                    (session / "cgroup.subtree_control").write_text("+memory +pids")
                except OSError:
                    session.rmdir()
                    raise
                return cls("v2", {"": session})
            roots = {}
            for controller in sorted(NEEDED):
                if not (base / controller / "tasks").exists():
                    return None
            for controller in sorted(NEEDED):
                session = base / controller / name
                session.mkdir()
                roots[controller] = session
            return cls("v1", roots)
        except OSError:
            return None

    def job(self, job: str, limits: Limits) -> list[Path]:
        """Make the job's cgroups with their limits; the directories to join."""
        dirs = []
        for controller, session in self.roots.items():
            path = session / job
            path.mkdir()
            dirs.append(path)
            if self.version == "v2":
                (path / "memory.max").write_text(str(limits.memory))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
                (path / "pids.max").write_text(str(limits.processes))
            elif controller == "memory":
                (path / "memory.limit_in_bytes").write_text(str(limits.memory))
                with contextlib.suppress(OSError):
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limits.memory))
            else:
                (path / "pids.max").write_text(str(limits.processes))
        return dirs

    @staticmethod
    def join(dirs: Iterable[Path]) -> None:
        """Move the calling process into the job's cgroups."""
        for path in dirs:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    @staticmethod
    def out_of_memory(dirs: Iterable[Path], limit: int) -> bool:
        """Whether the job met its memory limit.

        The kernel's OOM counters say so (``oom``, ``oom_kill``,
        ``oom_group_kill`` in ``memory.events``; ``oom_kill`` in v1's
        ``memory.oom_control``); the peak usage reaching the limit says so
        too, for a job killed before a counter was visible (seen under load
        on a busy machine: the job ended by SIGKILL with no counter set).
        """
        for path in dirs:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError, ValueError):
                    for line in (path / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key in ("oom", "oom_kill", "oom_group_kill") and int(value) > 0:
                            return True
            for name in ("memory.peak", "memory.max_usage_in_bytes"):
                with contextlib.suppress(OSError, ValueError):
                    if int((path / name).read_text().split()[0]) >= 0.95 * limit:
                        return True
        return False

    @staticmethod
    def empty(dirs: Iterable[Path]) -> None:
        """Kill what is left in the job's cgroups, then remove them."""
        for path in dirs:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)
            with contextlib.suppress(OSError):
                path.rmdir()

    def remove(self) -> None:
        """Empty and remove every job's cgroups, then the session's."""
        for session in self.roots.values():
            for job in [p for p in session.iterdir() if p.is_dir()] if session.exists() else []:
                self.empty([job])
            with contextlib.suppress(OSError):
                session.rmdir()
