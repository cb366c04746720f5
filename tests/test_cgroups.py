"""The grading sandbox's cgroup code on both kernels' layouts, without either.

A machine has either cgroup v1 (this one, and many CI runners) or v2
(systemd's unified hierarchy, most current distributions), so a real
grading exercises only one of the two code paths. These tests point
``explodebook.coursework.cgroups.Cgroups`` at a fake tree in a temporary
folder, laid out as the kernel lays out ``/sys/fs/cgroup``, and check the
files it reads and writes: when it uses cgroups at all, the limits it sets,
how it joins a job, how it tells a job stopped at its memory limit, and how
it empties and removes what a killed grader left.

What a fake tree cannot show is the kernel enforcing those limits: that is
tested on this machine's real cgroups by tests/test_hostile.py (the memory
bomb is stopped, as root).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from explodebook.coursework.cgroups import Cgroups
from explodebook.coursework.limits import Limits

LIMITS = Limits(seconds=10, memory=3 * 2**30, processes=77)


def _v2(base: Path, controllers: str = "cpuset cpu io memory hugetlb pids rdma misc",
        enabled: str = "cpu memory pids") -> Path:
    """A unified hierarchy's root as the kernel shows it."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "cgroup.controllers").write_text(controllers + "\n")
    (base / "cgroup.subtree_control").write_text(enabled + "\n")
    (base / "cgroup.procs").write_text("1\n")
    return base


def _v1(base: Path) -> Path:
    for controller in ("memory", "pids", "cpu"):
        (base / controller).mkdir(parents=True)
        (base / controller / "tasks").write_text("1\n")
    return base


def test_v2_session_and_job_limits(tmp_path) -> None:
    base = _v2(tmp_path / "cgroup")
    cgroups = Cgroups.create("explodebook-grading-1-ab", base=base)
    assert cgroups is not None and cgroups.version == "v2"
    session = base / "explodebook-grading-1-ab"
    assert cgroups.roots == {"": session}
    # the session hands memory and pids down to its jobs
    assert (session / "cgroup.subtree_control").read_text().split() == ["+memory", "+pids"]
    dirs = cgroups.job("job1", LIMITS)
    assert dirs == [session / "job1"]
    job = dirs[0]
    assert (job / "memory.max").read_text() == str(3 * 2**30)
    assert (job / "memory.swap.max").read_text() == "0"  # no swapping past the limit
    assert (job / "pids.max").read_text() == "77"
    # v1's files are not written on v2
    assert not (job / "memory.limit_in_bytes").exists()


def test_v2_enables_the_controllers_for_its_children_or_goes_without(tmp_path) -> None:
    # not yet enabled below the root: the grader enables them (allowed at the root)
    base = _v2(tmp_path / "enable", enabled="cpu")
    assert Cgroups.create("s", base=base) is not None
    assert {"+memory", "+pids"} <= set((base / "cgroup.subtree_control").read_text().split())
    # no memory controller at all (a delegated subtree without it): no cgroups,
    # so the runners get RLIMIT_AS instead; nothing is left behind
    base = _v2(tmp_path / "none", controllers="cpu io pids", enabled="cpu pids")
    assert Cgroups.create("s", base=base) is None
    assert not (base / "s").exists()


def test_v2_enabling_refused_means_no_cgroups(tmp_path, monkeypatch) -> None:
    """A delegated subtree whose root holds processes cannot enable controllers below it."""
    base = _v2(tmp_path / "busy", enabled="")
    real_write = Path.write_text

    def refuse(self, data, *args, **kwargs):
        if self == base / "cgroup.subtree_control":
            raise OSError(16, "Device or resource busy")
        return real_write(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refuse)
    assert Cgroups.create("s", base=base) is None
    assert not (base / "s").exists()


@pytest.mark.parametrize("events, peak, stopped", [
    ("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n", None, True),
    ("low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\noom_group_kill 1\n", None, True),
    ("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n", str(2 * 2**30), False),
    # SIGKILLed before any counter showed it: the peak at the limit says so
    ("low 0\nhigh 0\nmax 9\noom 0\noom_kill 0\noom_group_kill 0\n", str(3 * 2**30 - 4096), True),
    ("", None, False),  # a kernel without memory.events: nothing to say
])
def test_v2_out_of_memory_reads_the_kernels_counters(tmp_path, events, peak, stopped) -> None:
    job = tmp_path / "job"
    job.mkdir()
    if events:
        (job / "memory.events").write_text(events)
    if peak is not None:
        (job / "memory.peak").write_text(peak + "\n")
    assert Cgroups.out_of_memory([job], LIMITS.memory) is stopped


def test_v1_session_and_job_limits(tmp_path) -> None:
    base = _v1(tmp_path / "cgroup")
    cgroups = Cgroups.create("s", base=base)
    assert cgroups is not None and cgroups.version == "v1"
    assert cgroups.roots == {"memory": base / "memory" / "s", "pids": base / "pids" / "s"}
    memory, pids = cgroups.job("job1", LIMITS)
    assert (memory / "memory.limit_in_bytes").read_text() == str(3 * 2**30)
    assert (pids / "pids.max").read_text() == "77"
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert Cgroups.out_of_memory([memory, pids], LIMITS.memory)


def test_neither_layout_means_no_cgroups(tmp_path) -> None:
    assert Cgroups.create("s", base=tmp_path) is None
    assert Cgroups.create("s", base=tmp_path / "missing") is None


def test_joining_and_emptying_a_job(tmp_path) -> None:
    cgroups = Cgroups.create("s", base=_v2(tmp_path / "cgroup"))
    assert cgroups is not None
    (job,) = cgroups.job("job1", LIMITS)
    # a process joins by writing its pid (here: a child that joins, then sleeps)
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; "
        "from explodebook.coursework.cgroups import Cgroups; "
        f"Cgroups.join([Path({str(job)!r})]); print('joined', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "joined"
        assert (job / "cgroup.procs").read_text() == str(child.pid)
        # emptying kills what the job's cgroup lists (the kernel would then
        # drop it from cgroup.procs and let the folder go)
        Cgroups.empty([job])
        assert child.wait(timeout=10) == -9
    finally:
        child.kill()
        child.wait()


def test_sweep_removes_the_sessions_of_graders_that_are_gone(tmp_path, monkeypatch) -> None:
    base = _v2(tmp_path / "cgroup")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    assert not Path(f"/proc/{dead_pid}").exists()
    for name in (f"explodebook-grading-{dead_pid}-aa", f"explodebook-grading-{os.getpid()}-bb",
                 "someone-else"):
        (base / name / "job3").mkdir(parents=True)
    removed: list[Path] = []
    real_rmdir = Path.rmdir
    monkeypatch.setattr(Path, "rmdir", lambda self: (removed.append(self), real_rmdir(self)))
    Cgroups.sweep("explodebook-grading", base=base)
    # the dead grader's session and its job go; a live grader's and others' stay
    assert removed == [base / f"explodebook-grading-{dead_pid}-aa" / "job3",
                       base / f"explodebook-grading-{dead_pid}-aa"]
    assert not (base / f"explodebook-grading-{dead_pid}-aa").exists()
    assert (base / f"explodebook-grading-{os.getpid()}-bb" / "job3").is_dir()
    assert (base / "someone-else").is_dir()
