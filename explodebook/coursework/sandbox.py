"""Running untrusted notebooks: one sandboxed process per submission.

Grading runs every submission's code, and that code is the student's: it
may try to change its own grade, read the checks or a classmate's notebook,
or stop the others from being graded. So the grader never runs it in its
own process. Three kinds of processes take part:

``grader``
    the caller (`explodebook.coursework.grading`): holds the checks, the
    scores and the CSV; it only ever receives answer *values*, as JSON.
``zygote``
    started once per grading session, as a fresh Python with a clean
    environment; it imports PyTorch, TensorFlow and the book's package
    (several seconds, once), then forks a guardian per submission. It never
    reads a submission, an answer or a check, so a fork of it carries
    nothing of anyone's.
``guardian`` (root, when the grader is root)
    one per submission, forked from the zygote. It reads the submission's
    code cells from a file only root can read, makes the runner's world,
    forks the runner, enforces the wall-clock limit, kills every process
    the submission left, and copies the runner's answer snapshot (bounded,
    a regular file only) to the grader.
``runner``
    forked by the guardian; runs the cells (``explodebook.coursework.runner``)
    with the limits below and writes its answers as JSON.

What the runner gets, depending on what the machine allows
(`Isolation`, detected at start and reported):

- always: a fresh, empty working folder (``HOME`` and ``TMPDIR`` too), a
  clean environment, none of the grader's open files, a wall-clock limit,
  resource limits (file size, open files, no core dumps), and the guardian
  as "subreaper" so that processes it starts, even ones that detach, are
  found and killed when it ends;
- when the grader runs as root: its own user id per concurrent job (not a
  user of the system), without groups or any way to regain privileges
  (``no_new_privs``), so it can neither read the grader's private files nor
  signal another student's runner or the grader;
- when Linux namespaces are available (root): no network at all, a private
  ``/tmp``, ``/var/tmp`` and ``/dev/shm`` (size-limited; the working folder
  lives there), and the grader's paths (the autograder and its solutions,
  the submissions, the CSV and the feedback, the book's chapters and
  build) hidden under empty mounts;
- with cgroups (root): a memory limit the kernel enforces on the job as a
  whole (else ``RLIMIT_AS``, address space, per process) and a limit on its
  number of processes and threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import queue
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Limits", "Isolation", "RunResult", "Sandbox", "STATUSES"]

#: What ``RunResult.status`` may be.
STATUSES = {
    "finished": "ran to the end",
    "timeout": "stopped at the time limit",
    "memory": "stopped at the memory limit",
    "crashed": "the Python process running it died",
    "failed": "the sandbox could not run it",
}

# Linux constants (sched.h, mount.h, prctl.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38

#: Modules the zygote imports once, so that no submission pays for them.
PRELOAD = (
    "numpy",
    "pandas",
    "matplotlib.pyplot",
    "IPython.core.interactiveshell",
    "explodebook",
    "explodebook.notebook",
    "explodebook.backends.torch",
    "explodebook.backends.keras",
    "explodebook.sweep",
    "explodebook.plots",
    "explodebook.diagnose",
    "explodebook.theory",
    "explodebook.data",
    "explodebook.outcome",
    "explodebook.timesteps",
    "explodebook.widgets",
    "explodebook.monitor",
    "explodebook.coursework.answers",
    "explodebook.coursework.runner",
    "ipywidgets",
)

#: The working folder's path inside a private /tmp.
PRIVATE_WORKDIR = "/tmp/submission"
#: The most bytes of the answer snapshot the guardian copies to the grader.
MAX_SNAPSHOT = 32 * 2**20
#: The most bytes of the submission's printed output kept (its end).
OUTPUT_TAIL = 4096
#: Seconds the grader allows the guardian beyond the time limit.
GRACE = 30.0


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


# -- small Linux helpers ----------------------------------------------------

_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _unshare(flags: int) -> None:
    _check(_c().unshare(ctypes.c_int(flags)), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(
        _c().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def _prctl(option: int, value: int) -> None:
    _check(
        _c().prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                   ctypes.c_ulong(0), ctypes.c_ulong(0)),
        "prctl",
    )


def _proc_uids() -> dict[int, int]:
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


def _children(pid: int) -> list[int]:
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
        if uid not in _proc_uids().values():
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


def _free_uids(count: int) -> tuple[tuple[int, ...], list[int]]:
    """``count`` user ids no account has, no process runs as, no other grader holds.

    Returns:
        the ids, and the open lock files that reserve them for this session
        (another grading session running at the same time skips them).
    """
    import fcntl
    import pwd

    taken = {p.pw_uid for p in pwd.getpwall()} | set(_proc_uids().values())
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


# -- cgroups ------------------------------------------------------------------


class _Cgroups:
    """A session cgroup with one child per job (v2, or v1 memory + pids)."""

    def __init__(self, version: str, roots: dict[str, Path]) -> None:
        self.version = version
        self.roots = roots  # controller ("memory", "pids", or "" for v2) -> session dir

    @staticmethod
    def sweep(prefix: str) -> None:
        """Remove the cgroups of grading sessions whose grader is gone (killed, say)."""
        base = Path("/sys/fs/cgroup")
        parents = [base] if (base / "cgroup.controllers").exists() else [
            base / "memory", base / "pids"]
        for parent in parents:
            for session in parent.glob(f"{prefix}-*") if parent.is_dir() else []:
                pid = session.name[len(prefix) + 1:].split("-")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    _Cgroups("v2", {"": session}).remove()

    @classmethod
    def create(cls, name: str) -> _Cgroups | None:
        base = Path("/sys/fs/cgroup")
        try:
            if (base / "cgroup.controllers").exists():  # unified hierarchy
                if not {"memory", "pids"} <= set((base / "cgroup.controllers").read_text().split()):
                    return None
                session = base / name
                session.mkdir()
                (session / "cgroup.subtree_control").write_text("+memory +pids")
                return cls("v2", {"": session})
            roots = {}
            for controller in ("memory", "pids"):
                if not (base / controller / "tasks").exists():
                    return None
            for controller in ("memory", "pids"):
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
        for session in self.roots.values():
            for job in [p for p in session.iterdir() if p.is_dir()] if session.exists() else []:
                self.empty([job])
            with contextlib.suppress(OSError):
                session.rmdir()


# -- the runner and its guardian (in forked children of the zygote) ------------


def _close_fds(keep: Sequence[int]) -> None:
    keep = sorted(set(keep))
    low = 3
    for fd in keep + [resource.getrlimit(resource.RLIMIT_NOFILE)[0]]:
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1


def _runner_env(workdir: str) -> dict[str, str]:
    env = {
        "HOME": workdir,
        "TMPDIR": os.path.join(workdir, "tmp"),
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "agg",
        "MPLCONFIGDIR": os.path.join(workdir, ".config", "matplotlib"),
        "KERAS_HOME": os.path.join(workdir, ".keras"),
        "PYTHONNOUSERSITE": "1",
    }
    for name in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _runner(job: dict, workdir: str, uid: int | None, limits: Limits,
            cgroup_dirs: list[Path], output_fd: int, guardian: int) -> None:
    """The runner process: drop everything, then run the cells. Never returns."""
    code = 0
    try:
        os.setsid()
        if cgroup_dirs:
            _Cgroups.join(cgroup_dirs)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        _close_fds([])
        os.environ.clear()
        os.environ.update(_runner_env(workdir))
        rlimits = [
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_FSIZE, limits.file_size),
            (resource.RLIMIT_NOFILE, 1024),
            (resource.RLIMIT_CPU, int(limits.seconds * 4 + 60)),
        ]
        if not cgroup_dirs:
            rlimits.append((resource.RLIMIT_AS, limits.memory))
        if uid is not None:
            rlimits.append((resource.RLIMIT_NPROC, limits.processes))
        for which, value in rlimits:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(which, (value, value))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full file is an error, not death
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        with contextlib.suppress(OSError):
            _prctl(PR_SET_NO_NEW_PRIVS, 1)
        with contextlib.suppress(OSError):
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != guardian:
            os._exit(0)  # the guardian died before the death signal was armed
        with contextlib.suppress(OSError):  # its own /proc/self, for libraries that read it
            _prctl(PR_SET_DUMPABLE, 1)
        os.chdir(workdir)
        os.makedirs("tmp", exist_ok=True)
        tempfile.tempdir = None
        sys.argv = ["notebook"]
        if sys.path:
            sys.path[0] = ""  # the working folder, as in a Jupyter kernel
        from explodebook.coursework.runner import BoundedOutput, run_cells

        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = BoundedOutput(1)
        sys.stderr = sys.stdout

        run_cells(job["cells"], job["names"], workdir)
    except BaseException as error:  # noqa: BLE001
        with contextlib.suppress(Exception):
            os.write(2, f"\n[runner] {type(error).__name__}: {error}\n".encode())
        code = 70
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _hide(paths: Iterable[str]) -> None:
    """Cover each path with an empty mount (a directory) or an empty file."""
    empty = None
    for path in paths:
        try:
            if os.path.isdir(path):
                _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
            elif os.path.exists(path):
                if empty is None:
                    empty = "/dev/null"
                _mount(empty, path, None, MS_BIND, None)
        except OSError:
            pass  # it vanished meanwhile; nothing to hide


def _expose(bases: dict[str, list[str]]) -> None:
    """Make paths the runner needs reachable though an ancestor is private.

    Python may live under ``/root`` (``mode 700``): the runner's user could
    not import the rest of the standard library. For each such ancestor, an
    empty tmpfs replaces it (hiding the rest of it, ``/root/.ssh`` say) and
    each needed folder is bind-mounted back, read-only, at its own path.
    """
    for base, paths in bases.items():
        fds = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in paths]
        _mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        for path, fd in fds:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
            os.close(fd)
        _mount(None, base, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def _private_tmpfs(path: str, size: int, needed: list[Path]) -> None:
    """An empty, size-limited tmpfs over ``path``, keeping what the runner needs.

    Python's environment or the book's package may live under ``/tmp`` (a
    clone of the book there, as CI makes): they are bind-mounted back,
    read-only, at their own paths, or the runner could not start.
    """
    base = Path(path)
    inside = sorted({p for p in needed if base in p.parents}, key=lambda p: len(p.parts))
    inside = [p for i, p in enumerate(inside) if not any(q in p.parents for q in inside[:i])]
    fds = [(str(p), os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in inside if p.is_dir()]
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    for kept, fd in fds:
        os.makedirs(kept, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", kept, None, MS_BIND | MS_REC, None)
        _mount(None, kept, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        os.close(fd)


def _read_bounded(dir_fd: int, name: str, limit: int, tail: bool = False) -> tuple[bytes | None, bool]:
    """A regular file's bytes (at most ``limit``; its end if ``tail``), no symlinks."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None, False
    try:
        stat = os.fstat(fd)
        if not (stat.st_mode & 0o170000) == 0o100000:  # S_ISREG
            return None, False
        size = stat.st_size
        if size > limit and not tail:
            return None, True
        if tail and size > limit:
            os.lseek(fd, size - limit, os.SEEK_SET)
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), False
    finally:
        os.close(fd)


def _guardian(request: dict) -> None:
    """One submission's guardian (see the module's docstring). Never returns."""
    result: dict[str, Any] = {"status": "failed", "message": "", "seconds": 0.0}
    job_fd = -1
    try:
        # nothing of the zygote's: its pipes to the grader least of all
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _close_fds([])
        os.setsid()
        with contextlib.suppress(OSError):
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != request["zygote"]:
            os._exit(0)  # the zygote died before the death signal was armed
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        job_fd = os.open(request["job_dir"], os.O_RDONLY | os.O_DIRECTORY)
        with os.fdopen(os.open("input.json", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=job_fd)) as f:
            job = json.load(f)
        limits = Limits(**request["limits"])
        uid = request.get("uid")
        namespaces = bool(request.get("namespaces"))
        if namespaces:
            _unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            _expose(request.get("expose", {}))
            _hide(request.get("hide", []))
            needed = _needed_paths()
            for path, size in (("/tmp", limits.disk), ("/var/tmp", 16 * 2**20), ("/dev/shm", 64 * 2**20)):
                if os.path.isdir(path):
                    _private_tmpfs(path, size, needed)
            workdir = PRIVATE_WORKDIR
            os.mkdir(workdir, 0o700)
        else:
            workdir = request["workdir"]
            os.mkdir(workdir, 0o700)
        if uid is not None:
            os.chown(workdir, uid, uid)
        output_fd = os.open(os.path.join(workdir, ".output"),
                            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        cgroups = None
        cgroup_dirs: list[Path] = []
        if request.get("cgroup"):
            cgroups = _Cgroups(request["cgroup"]["version"],
                               {k: Path(v) for k, v in request["cgroup"]["roots"].items()})
            cgroup_dirs = cgroups.job(request["job"], limits)
        start = time.monotonic()
        guardian = os.getpid()
        pid = os.fork()
        if pid == 0:
            _runner(job, workdir, uid, limits, cgroup_dirs, output_fd, guardian)
        os.close(output_fd)
        deadline = start + limits.seconds
        status = None
        wait_status = 0
        while status is None:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = "finished"
                break
            if time.monotonic() >= deadline:
                status = "timeout"
                break
            time.sleep(0.02)
        seconds = time.monotonic() - start
        # Everything the submission started goes, detached or not.
        if status == "timeout":
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if uid is not None:
            kill_user(uid)
        for _ in range(100):
            children = _children(os.getpid())
            if not children:
                break
            for child in children:
                with contextlib.suppress(OSError):
                    os.kill(child, signal.SIGKILL)
            while True:
                try:
                    reaped, reaped_status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if reaped == 0:
                    break
                if reaped == pid and status == "timeout":
                    wait_status = reaped_status
            time.sleep(0.01)
        memory = bool(cgroup_dirs) and _Cgroups.out_of_memory(cgroup_dirs, limits.memory)
        if cgroup_dirs:
            _Cgroups.empty(cgroup_dirs)
        exit_code = (
            os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status)
            else -os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        )
        if status == "finished" and memory:
            status = "memory"
        elif status == "finished" and exit_code != 0:
            status = "crashed"
        result.update(status=status, seconds=round(seconds, 3), exit=exit_code)
        work_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            from explodebook.coursework.runner import SNAPSHOT

            data, too_large = _read_bounded(work_fd, SNAPSHOT, MAX_SNAPSHOT)
            result["snapshot"] = None if data is None else data.decode("utf-8", "replace")
            if too_large:
                result["message"] = f"its answers are larger than {MAX_SNAPSHOT // 2**20} MB"
            output, _ = _read_bounded(work_fd, ".output", OUTPUT_TAIL, tail=True)
            result["output"] = (output or b"").decode("utf-8", "replace")
        finally:
            os.close(work_fd)
        if not namespaces:
            shutil.rmtree(workdir, ignore_errors=True)
    except BaseException as error:  # noqa: BLE001
        result["status"] = "failed"
        result["message"] = f"{type(error).__name__}: {error}"
    finally:
        try:
            if job_fd >= 0:
                fd = os.open("result.json.partial", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600,
                             dir_fd=job_fd)
                with os.fdopen(fd, "w") as f:
                    json.dump(result, f)
                os.replace("result.json.partial", "result.json", src_dir_fd=job_fd, dst_dir_fd=job_fd)
        finally:
            os._exit(0)


# -- the zygote ------------------------------------------------------------------


def _probe_namespaces() -> bool:
    """Whether a child can make private mount and network namespaces here."""
    if not sys.platform.startswith("linux"):
        return False
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            target = tempfile.mkdtemp()
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k")
            code = 0
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _send(message: dict) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def zygote(preload: Sequence[str] = PRELOAD) -> None:
    """The zygote's main loop (``python -m explodebook.coursework.sandbox``).

    Reads one JSON request per line on stdin, answers on stdout:
    ``{"op": "run", ...}`` forks a guardian and answers ``started``; each
    guardian's end is answered ``exited``; ``{"op": "kill", "job": ...}``
    kills a guardian and its user's processes. Stdin closing ends it all.
    """
    with contextlib.suppress(OSError):
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # nobody may read this process's memory or files through /proc, nor
    # trace it (a runner of the same user, when the grader is not root)
    with contextlib.suppress(OSError):
        _prctl(PR_SET_DUMPABLE, 0)
    start = time.perf_counter()
    namespaces = (
        os.geteuid() == 0
        and not os.environ.pop("EXPLODEBOOK_SANDBOX_NO_NAMESPACES", "")
        and _probe_namespaces()
    )
    failed = []
    for name in preload:
        try:
            __import__(name)
        except Exception as error:  # noqa: BLE001 - preloading is an optimisation
            failed.append(f"{name}: {type(error).__name__}")
    try:
        from explodebook.notebook import setup

        setup()
    except Exception as error:  # noqa: BLE001
        failed.append(f"setup(): {type(error).__name__}")
    _send({"op": "ready", "seconds": round(time.perf_counter() - start, 2),
           "namespaces": namespaces, "preload_failed": failed})
    guardians: dict[int, tuple[str, int | None]] = {}
    buffer = b""
    closing = False
    while not closing or guardians:
        readable = []
        if not closing:
            readable, _, _ = select.select([0], [], [], 0.05)
        else:
            time.sleep(0.05)
        if readable:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                closing = True
                for pid in guardians:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                if request["op"] == "run":
                    request["zygote"] = os.getpid()
                    pid = os.fork()
                    if pid == 0:
                        _guardian(request)
                    guardians[pid] = (request["job"], request.get("uid"))
                    _send({"op": "started", "job": request["job"], "pid": pid})
                elif request["op"] == "kill":
                    for pid, (job, uid) in guardians.items():
                        if job == request["job"]:
                            with contextlib.suppress(OSError):
                                os.kill(pid, signal.SIGKILL)
                            if uid is not None:
                                kill_user(uid)
        while guardians:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in guardians:
                job, uid = guardians.pop(pid)
                if closing and uid is not None:
                    kill_user(uid)
                _send({"op": "exited", "job": job, "status": status})


# -- the grader's side ----------------------------------------------------------


def _clean_env(home: str) -> dict[str, str]:
    env = {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "agg",
        "MPLCONFIGDIR": os.path.join(home, ".config", "matplotlib"),
        "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return env


def _needed_paths() -> list[Path]:
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
        ``{ancestor: [needed paths under it]}``, for `_expose`.
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
    needed = _needed_paths()
    hide, keep = [], []
    for path in sorted({Path(p).resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not path.exists() or any(path == h or h in path.parents for h in map(Path, hide)):
            continue
        if any(path == n or path in n.parents for n in needed):
            keep.append(str(path))
        else:
            hide.append(str(path))
    return hide, keep


class Sandbox:
    """A grading session's sandbox: a zygote and up to ``jobs`` runners at once.

    Use as a context manager::

        with Sandbox(jobs=2, hide=[submissions_dir]) as sandbox:
            sandbox.submit("a", cells, names)
            for job, result in sandbox.results():
                ...

    Args:
        jobs: submissions run at the same time.
        limits: each submission's `Limits`.
        hide: the grader's paths to hide from the runners (see ``hideable``).
        preload: modules the zygote imports once.
        ready_timeout: seconds to wait for the zygote's imports.
        minimal: use none of root's means (separate users, namespaces,
            cgroups) even when root: what a grader run by an ordinary user
            gets (for tests, and to compare).
    """

    def __init__(
        self,
        jobs: int = 1,
        limits: Limits | None = None,
        hide: Iterable[str | Path] = (),
        preload: Sequence[str] = PRELOAD,
        ready_timeout: float = 600.0,
        minimal: bool = False,
    ) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self.limits = limits or Limits()
        self.hide, self.not_hidden = hideable(hide)
        self.preload = tuple(preload)
        self.ready_timeout = ready_timeout
        self.minimal = minimal
        self.isolation = Isolation()
        self.startup_seconds = 0.0
        self.preload_failed: list[str] = []
        self._zygote: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._root: Path | None = None
        self._cgroups: _Cgroups | None = None
        self._free_slots: list[int] = list(range(jobs))
        self._running: dict[str, dict[str, Any]] = {}
        self._counter = 0
        self._uid_locks: list[int] = []

    # context management

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the zygote and wait until it has imported the frameworks."""
        root = os.geteuid() == 0 and not self.minimal
        self._root = Path(tempfile.mkdtemp(prefix="explodebook-grading-"))
        # the runners' folders live here when there is no private /tmp:
        # others may pass through (to their own folder) but not list it
        os.chmod(self._root, 0o711)
        (self._root / "jobs").mkdir(mode=0o700)
        (self._root / "work").mkdir(mode=0o711)
        home = self._root / "home"
        home.mkdir(mode=0o700)
        uids: tuple[int, ...] = ()
        if root:
            uids, self._uid_locks = _free_uids(self.jobs)
            for uid in uids:
                kill_user(uid)
            _Cgroups.sweep("explodebook-grading")
            self._cgroups = _Cgroups.create(
                f"explodebook-grading-{os.getpid()}-{os.urandom(4).hex()}")
        stderr = os.fdopen(  # noqa: SIM115
            os.open(self._root / "zygote.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"
        )
        env = _clean_env(str(home))
        if not root:
            env["EXPLODEBOOK_SANDBOX_NO_NAMESPACES"] = "1"
        self._zygote = subprocess.Popen(
            [sys.executable, "-m", "explodebook.coursework.sandbox", *self.preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=str(home),
            close_fds=True,
        )
        stderr.close()
        threading.Thread(target=self._read_events, daemon=True).start()
        try:
            ready = self._events.get(timeout=self.ready_timeout)
        except queue.Empty:
            self.close()
            raise RuntimeError(
                f"the grading sandbox did not start within {self.ready_timeout:.0f} s"
            ) from None
        if ready.get("op") != "ready":
            log = (self._root / "zygote.log").read_text(errors="replace")[-2000:]
            self.close()
            raise RuntimeError(f"the grading sandbox failed to start:\n{log}")
        self.startup_seconds = ready["seconds"]
        self.preload_failed = ready["preload_failed"]
        unreachable = private_ancestors(_needed_paths()) if root else {}
        if unreachable and not ready["namespaces"]:
            self.close()
            raise RuntimeError(
                "the runners' user could not read Python or the package here ("
                + ", ".join(f"{base} is private" for base in unreachable)
                + ") and this machine allows no mount namespace to expose them: install "
                "Python and the environment where other users may read them (e.g. /opt, "
                "/usr/local), or grade in a container"
            )
        self.isolation = Isolation(
            separate_users=root,
            namespaces=bool(ready["namespaces"]),
            cgroup=self._cgroups.version if self._cgroups else None,
            uids=uids,
        )

    def _read_events(self) -> None:
        assert self._zygote is not None and self._zygote.stdout is not None
        for line in self._zygote.stdout:
            with contextlib.suppress(ValueError):
                self._events.put(json.loads(line))
        self._events.put({"op": "gone"})

    def close(self) -> None:
        """Stop every runner and the zygote; remove the session's files."""
        if self._zygote is not None:
            with contextlib.suppress(OSError):
                if self._zygote.stdin:
                    self._zygote.stdin.close()
            try:
                self._zygote.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
            self._zygote = None
        for uid in self.isolation.uids:
            kill_user(uid)
        for fd in self._uid_locks:
            os.close(fd)  # the ids are free again
        self._uid_locks = []
        if self._cgroups is not None:
            self._cgroups.remove()
            self._cgroups = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    # running

    @property
    def alive(self) -> bool:
        """Whether the zygote still runs (it may have been killed, by the OOM killer say)."""
        return self._zygote is not None and self._zygote.poll() is None

    @property
    def idle(self) -> int:
        """How many more submissions may start now."""
        return len(self._free_slots)

    @property
    def busy(self) -> int:
        """How many submissions are running."""
        return len(self._running)

    def submit(self, cells: Sequence[dict], names: Sequence[str], tag: Any = None,
               hide: Iterable[str | Path] = ()) -> str:
        """Start running ``cells`` in a free slot; returns the job's id.

        ``hide``: more of the grader's paths to hide from this runner (see
        ``hideable``), besides the sandbox's own.

        Raises:
            RuntimeError: no slot is free, or the sandbox is not started.
        """
        if self._zygote is None or self._root is None:
            raise RuntimeError("the sandbox is not started")
        if not self._free_slots:
            raise RuntimeError("every slot is busy: collect results first")
        slot = self._free_slots.pop(0)
        self._counter += 1
        job = f"job{self._counter}"
        job_dir = self._root / "jobs" / job
        job_dir.mkdir(mode=0o700)
        payload = json.dumps({"cells": list(cells), "names": list(names)})
        fd = os.open(job_dir / "input.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(payload)
        request = {
            "op": "run",
            "job": job,
            "job_dir": str(job_dir),
            "workdir": str(self._root / "work" / job),
            "uid": self.isolation.uids[slot] if self.isolation.separate_users else None,
            "limits": asdict(self.limits),
            "namespaces": self.isolation.namespaces,
            "hide": hideable([*self.hide, *hide])[0] + [str(self._root / "jobs")],
            "expose": private_ancestors(_needed_paths()) if self.isolation.separate_users else {},
            "cgroup": None if self._cgroups is None else {
                "version": self._cgroups.version,
                "roots": {k: str(v) for k, v in self._cgroups.roots.items()},
            },
        }
        self._running[job] = {"slot": slot, "tag": tag, "started": time.monotonic(),
                              "dir": job_dir, "killed": False}
        self._send(request)
        return job

    def _send(self, request: dict) -> None:
        assert self._zygote is not None and self._zygote.stdin is not None
        try:
            self._zygote.stdin.write((json.dumps(request) + "\n").encode())
            self._zygote.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the zygote is gone: results() reports its jobs as failed

    def _finish(self, job: str, status: int | None) -> tuple[str, Any, RunResult]:
        info = self._running.pop(job)
        self._free_slots.append(info["slot"])
        self._free_slots.sort()
        path = info["dir"] / "result.json"
        try:
            data = json.loads(path.read_text())
            result = RunResult(
                status=data.get("status", "failed"),
                seconds=float(data.get("seconds", 0.0)),
                snapshot=data.get("snapshot"),
                output=data.get("output", ""),
                message=data.get("message", ""),
                exit=data.get("exit"),
            )
        except (OSError, ValueError):
            result = RunResult(
                status="timeout" if info["killed"] else "failed",
                seconds=time.monotonic() - info["started"],
                message="the sandbox ended without a result"
                + (f" (status {status})" if status is not None else ""),
            )
        shutil.rmtree(info["dir"], ignore_errors=True)
        with contextlib.suppress(OSError):
            shutil.rmtree(Path(self._root or "/nonexistent") / "work" / job, ignore_errors=True)
        return job, info["tag"], result

    def results(self, timeout: float | None = None) -> list[tuple[str, Any, RunResult]]:
        """Wait for at least one running submission to end (or ``timeout``).

        Returns:
            ``(job, tag, RunResult)`` for each submission that ended.
        """
        if not self._running:
            return []
        finished = []
        limit = None if timeout is None else time.monotonic() + timeout
        while not finished:
            now = time.monotonic()
            for job, info in self._running.items():
                if not info["killed"] and now - info["started"] > self.limits.seconds + GRACE:
                    info["killed"] = True  # the guardian itself is stuck
                    self._send({"op": "kill", "job": job})
            wait = 0.5 if limit is None else max(0.0, min(0.5, limit - now))
            try:
                event = self._events.get(timeout=wait)
            except queue.Empty:
                if limit is not None and time.monotonic() >= limit:
                    break
                continue
            if event.get("op") == "exited" and event.get("job") in self._running:
                finished.append(self._finish(event["job"], event.get("status")))
            elif event.get("op") == "gone":
                for job in list(self._running):
                    finished.append(self._finish(job, None))
                break
            # drain whatever else ended meanwhile
            while True:
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    break
                if event.get("op") == "exited" and event.get("job") in self._running:
                    finished.append(self._finish(event["job"], event.get("status")))
        return finished

    def run(self, cells: Sequence[dict], names: Sequence[str]) -> RunResult:
        """Run one submission and wait for it (no other may be running)."""
        job = self.submit(cells, names)
        while True:
            for done, _, result in self.results():
                if done == job:
                    return result


if __name__ == "__main__":
    zygote(tuple(sys.argv[1:]) or PRELOAD)
