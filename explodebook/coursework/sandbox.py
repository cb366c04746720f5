"""Running untrusted notebooks: one sandboxed process per submission.

Grading runs every submission's code, and that code is the student's: it
may try to change its own grade, read the checks or a classmate's notebook,
or stop the others from being graded. So the grader never runs it in its
own process. Three kinds of processes take part:

``grader``
    the caller (`explodebook.coursework.grading`): holds the checks, the
    scores and the CSV; it only ever receives answer *values*, as JSON.
``zygote`` (`explodebook.coursework.zygote`)
    started once per grading session, as a fresh Python with a clean
    environment; it imports PyTorch, TensorFlow and the book's package
    (several seconds, once), then forks a guardian per submission. It never
    reads a submission, an answer or a check, so a fork of it carries
    nothing of anyone's.
``guardian`` (`explodebook.coursework.guardian`; root, when the grader is root)
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
  number of processes and threads (`explodebook.coursework.cgroups`).

What a submission may use is `Limits`; the paths a runner needs and those
hidden from it, `explodebook.coursework.mounts`; the system calls,
`explodebook.coursework.linux`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from explodebook.coursework.cgroups import Cgroups
from explodebook.coursework.limits import STATUSES, Isolation, Limits, RunResult  # noqa: F401
from explodebook.coursework.linux import free_uids, kill_user
from explodebook.coursework.mounts import hideable, needed_paths, private_ancestors
from explodebook.coursework.zygote import PRELOAD, clean_env

# Limits, Isolation, RunResult and STATUSES (explodebook.coursework.limits)
# are importable from here too, as are kill_user, hideable and private_ancestors.
__all__ = ["Sandbox"]

#: Seconds the grader allows the guardian beyond the time limit.
GRACE = 30.0


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
        self._cgroups: Cgroups | None = None
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
            uids, self._uid_locks = free_uids(self.jobs)
            for uid in uids:
                kill_user(uid)
            Cgroups.sweep("explodebook-grading")
            self._cgroups = Cgroups.create(
                f"explodebook-grading-{os.getpid()}-{os.urandom(4).hex()}")
        stderr = os.fdopen(  # noqa: SIM115
            os.open(self._root / "zygote.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"
        )
        env = clean_env(str(home))
        if not root:
            env["EXPLODEBOOK_SANDBOX_NO_NAMESPACES"] = "1"
        self._zygote = subprocess.Popen(
            [sys.executable, "-m", "explodebook.coursework.zygote", *self.preload],
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
        unreachable = private_ancestors(needed_paths()) if root else {}
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
            "expose": private_ancestors(needed_paths()) if self.isolation.separate_users else {},
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


if __name__ == "__main__":  # the zygote's former entry point
    from explodebook.coursework.zygote import main

    main(tuple(sys.argv[1:]) or PRELOAD)
