"""What one sandboxed submission may use, how it was isolated, and what running it gave."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STATUSES", "Limits", "Isolation", "RunResult"]

#: What ``RunResult.status`` may be.
STATUSES = {
    "finished": "ran to the end",
    "timeout": "stopped at the time limit",
    "memory": "stopped at the memory limit",
    "crashed": "the Python process running it died",
    "failed": "the sandbox could not run it",
}


@dataclass(frozen=True)
class Limits:
    """What one submission may use.

    Attributes:
        seconds: wall-clock time to run every graded cell.
        memory: bytes of memory (a cgroup's limit on the job's processes
            together; without cgroups, each process's address space).
        processes: processes and threads of the job (with separate users).
        file_size: the largest file it may write (its printed output too).
        disk: size of its private ``/tmp``, working folder included
            (with namespaces).
    """

    seconds: float = 300.0
    memory: int = 4 * 2**30
    processes: int = 512
    file_size: int = 64 * 2**20
    disk: int = 512 * 2**20

    def __post_init__(self) -> None:
        if not self.seconds > 0 or not self.memory > 0:
            raise ValueError(f"limits must be positive: {self}")


@dataclass(frozen=True)
class Isolation:
    """What the sandbox could set up on this machine, as this user.

    Attributes:
        separate_users: each concurrent runner has its own user id (the
            grader runs as root).
        namespaces: private mounts (hidden grader paths, private /tmp) and
            no network.
        cgroup: ``"v1"`` or ``"v2"`` when a memory and process cgroup
            limits each job; ``None`` means per-process ``RLIMIT_AS``.
        uids: the user ids of the runners, one per job slot.
    """

    separate_users: bool = False
    namespaces: bool = False
    cgroup: str | None = None
    uids: tuple[int, ...] = ()

    def describe(self) -> str:
        """One line for the grader's report."""
        parts = [
            f"separate users ({', '.join(map(str, self.uids))})"
            if self.separate_users
            else "the grader's own user (not root: a notebook can read your files)",
            "private /tmp, hidden grader files, no network"
            if self.namespaces
            else "shared /tmp and network",
            f"memory and process cgroup ({self.cgroup})"
            if self.cgroup
            else "per-process address-space limit",
        ]
        return "; ".join(parts)


@dataclass
class RunResult:
    """What running one submission gave.

    Attributes:
        status: one of `STATUSES`.
        seconds: wall-clock seconds from the runner's start to its end.
        snapshot: the runner's last answer snapshot, raw JSON text (the
            grader decodes it; the student may have written anything).
        output: the end of what the cells printed.
        message: what went wrong, for ``failed`` and ``crashed``.
        exit: the runner's exit code, or minus the signal that ended it.
    """

    status: str
    seconds: float = 0.0
    snapshot: str | None = None
    output: str = ""
    message: str = ""
    exit: int | None = None

