"""One submission's guardian and runner: the runner's world and limits, what comes back."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from explodebook.coursework.cgroups import Cgroups
from explodebook.coursework.limits import Limits
from explodebook.coursework.linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    MS_PRIVATE,
    MS_REC,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    children,
    close_fds,
    kill_user,
    mount,
    prctl,
    unshare,
)
from explodebook.coursework.mounts import expose, hide, needed_paths, private_tmpfs

__all__ = ["guard", "run_submission", "read_bounded", "PRIVATE_WORKDIR", "MAX_SNAPSHOT",
           "OUTPUT_TAIL"]

#: The working folder's path inside a private /tmp.
PRIVATE_WORKDIR = "/tmp/submission"
#: The most bytes of the answer snapshot the guardian copies to the grader.
MAX_SNAPSHOT = 32 * 2**20
#: The most bytes of the submission's printed output kept (its end).
OUTPUT_TAIL = 4096


def runner_env(workdir: str) -> dict[str, str]:
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


def run_submission(job: dict, workdir: str, uid: int | None, limits: Limits,
                   cgroup_dirs: list[Path], output_fd: int, guardian: int) -> None:
    """The runner process: drop everything, then run the cells. Never returns."""
    code = 0
    try:
        os.setsid()
        if cgroup_dirs:
            Cgroups.join(cgroup_dirs)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        close_fds([])
        os.environ.clear()
        os.environ.update(runner_env(workdir))
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
            prctl(PR_SET_NO_NEW_PRIVS, 1)
        with contextlib.suppress(OSError):
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != guardian:
            os._exit(0)  # the guardian died before the death signal was armed
        with contextlib.suppress(OSError):  # its own /proc/self, for libraries that read it
            prctl(PR_SET_DUMPABLE, 1)
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


def read_bounded(dir_fd: int, name: str, limit: int, tail: bool = False) -> tuple[bytes | None, bool]:
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


def guard(request: dict) -> None:
    """One submission's guardian, forked by the zygote. Never returns.

    It reads the submission's code cells from a file only root can read,
    makes the runner's world (private mounts, working folder, cgroups),
    forks the runner, enforces the wall-clock limit, kills every process
    the submission left, and writes the runner's answer snapshot (bounded,
    a regular file only) into ``result.json`` for the grader.
    """
    result: dict[str, Any] = {"status": "failed", "message": "", "seconds": 0.0}
    job_fd = -1
    try:
        # nothing of the zygote's: its pipes to the grader least of all
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        close_fds([])
        os.setsid()
        with contextlib.suppress(OSError):
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != request["zygote"]:
            os._exit(0)  # the zygote died before the death signal was armed
        prctl(PR_SET_CHILD_SUBREAPER, 1)
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
            unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
            mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            expose(request.get("expose", {}))
            hide(request.get("hide", []))
            needed = needed_paths()
            for path, size in (("/tmp", limits.disk), ("/var/tmp", 16 * 2**20), ("/dev/shm", 64 * 2**20)):
                if os.path.isdir(path):
                    private_tmpfs(path, size, needed)
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
            cgroups = Cgroups(request["cgroup"]["version"],
                               {k: Path(v) for k, v in request["cgroup"]["roots"].items()})
            cgroup_dirs = cgroups.job(request["job"], limits)
        start = time.monotonic()
        guardian = os.getpid()
        pid = os.fork()
        if pid == 0:
            run_submission(job, workdir, uid, limits, cgroup_dirs, output_fd, guardian)
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
            left = children(os.getpid())
            if not left:
                break
            for child in left:
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
        memory = bool(cgroup_dirs) and Cgroups.out_of_memory(cgroup_dirs, limits.memory)
        if cgroup_dirs:
            Cgroups.empty(cgroup_dirs)
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

            data, too_large = read_bounded(work_fd, SNAPSHOT, MAX_SNAPSHOT)
            result["snapshot"] = None if data is None else data.decode("utf-8", "replace")
            if too_large:
                result["message"] = f"its answers are larger than {MAX_SNAPSHOT // 2**20} MB"
            output, _ = read_bounded(work_fd, ".output", OUTPUT_TAIL, tail=True)
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
