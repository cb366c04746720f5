"""Linux system calls (through libc) and process look-ups the grading sandbox uses."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["kill_user", "free_uids"]

# Linux constants (sched.h, mount.h, prctl.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38

_libc: Any = None


def libc() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def unshare(flags: int) -> None:
    _check(libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(
        libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def prctl(option: int, value: int) -> None:
    _check(
        libc().prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                   ctypes.c_ulong(0), ctypes.c_ulong(0)),
        "prctl",
    )


def proc_uids() -> dict[int, int]:
    """Real user id of every process, by pid."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        out[int(entry)] = int(line.split()[1])
                        break
        except OSError:
            continue
    return out


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def kill_user(uid: int, rounds: int = 50) -> None:
    """Kill every process of ``uid`` (root only): as that user, ``kill(-1)``.

    Repeated until none is left, so that processes forked meanwhile go too.
    """
    for _ in range(rounds):
        if uid not in proc_uids().values():
            return
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.01)


def free_uids(count: int) -> tuple[tuple[int, ...], list[int]]:
    """``count`` user ids no account has, no process runs as, no other grader holds.

    Returns:
        the ids, and the open lock files that reserve them for this session
        (another grading session running at the same time skips them).
    """
    import fcntl
    import pwd

    taken = {p.pw_uid for p in pwd.getpwall()} | set(proc_uids().values())
    try:
        import grp

        taken |= {g.gr_gid for g in grp.getgrall()}
    except ImportError:
        pass
    locks_dir = Path("/run/lock") if os.path.isdir("/run/lock") else Path(tempfile.gettempdir())
    uids: list[int] = []
    locks: list[int] = []
    candidate = 61000
    while len(uids) < count and candidate < 65000:
        candidate += 1
        if candidate in taken:
            continue
        fd = os.open(locks_dir / f"explodebook-grading-uid-{candidate}.lock",
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # another grading session runs as this id
            continue
        uids.append(candidate)
        locks.append(fd)
    if len(uids) < count:
        raise RuntimeError("no free user ids for the runners between 61001 and 65000")
    return tuple(uids), locks


def close_fds(keep: Sequence[int]) -> None:
    keep = sorted(set(keep))
    low = 3
    for fd in keep + [resource.getrlimit(resource.RLIMIT_NOFILE)[0]]:
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1

