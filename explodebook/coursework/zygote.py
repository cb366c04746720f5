"""The sandbox's zygote: imports the frameworks once, then forks a guardian per submission."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import explodebook
from explodebook.coursework.guardian import guard
from explodebook.coursework.linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    MS_NODEV,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    PR_SET_DUMPABLE,
    PR_SET_PDEATHSIG,
    kill_user,
    mount,
    prctl,
    unshare,
)

__all__ = ["PRELOAD", "main", "probe_namespaces", "clean_env"]

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


def probe_namespaces() -> bool:
    """Whether a child can make private mount and network namespaces here."""
    if not sys.platform.startswith("linux"):
        return False
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
            mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            target = tempfile.mkdtemp()
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k")
            code = 0
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _send(message: dict) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def main(preload: Sequence[str] = PRELOAD) -> None:
    """The zygote's main loop (``python -m explodebook.coursework.zygote``).

    Reads one JSON request per line on stdin, answers on stdout:
    ``{"op": "run", ...}`` forks a guardian and answers ``started``; each
    guardian's end is answered ``exited``; ``{"op": "kill", "job": ...}``
    kills a guardian and its user's processes. Stdin closing ends it all.
    """
    with contextlib.suppress(OSError):
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # nobody may read this process's memory or files through /proc, nor
    # trace it (a runner of the same user, when the grader is not root)
    with contextlib.suppress(OSError):
        prctl(PR_SET_DUMPABLE, 0)
    start = time.perf_counter()
    namespaces = (
        os.geteuid() == 0
        and not os.environ.pop("EXPLODEBOOK_SANDBOX_NO_NAMESPACES", "")
        and probe_namespaces()
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
                        guard(request)
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


def clean_env(home: str) -> dict[str, str]:
    """The environment the zygote starts with: the frameworks' settings, nothing of the grader's."""
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
        # The grader's own copy of the package, whichever way the grader
        # found it (a checkout on PYTHONPATH, an editable install of another
        # checkout, a wheel): sandbox and grader must run the same code.
        "PYTHONPATH": str(Path(explodebook.__file__).resolve().parents[1]),
    }
    return env


if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or PRELOAD)
