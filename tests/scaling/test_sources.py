"""LocalWorkersSource's CPU count: the CPUs the workers may use, not the host's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventmon.scaling.sources import LocalWorkersSource, MetricsUnavailable

pytest.importorskip("psutil")


@pytest.fixture
def host_of_64_cpus_running_on_4(monkeypatch: pytest.MonkeyPatch) -> None:
    """A big host (os.cpu_count() == 64) whose affinity lets this process use 4 CPUs."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def cgroup_v2(root: Path, cpu_max: str) -> Path:
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root: Path, quota: int, period: int = 100_000) -> Path:
    cpu = root / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (cpu / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.usefixtures("host_of_64_cpus_running_on_4")
@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000", 4),  # no quota: the CPUs this process may run on
        ("150000 100000", 2),  # 1.5 CPUs of quota keep 2 busy at once
        ("200000 100000", 2),
        ("50000 100000", 1),  # at least one
        ("800000 100000", 4),  # a quota above the CPUs it may use changes nothing
    ],
)
def test_cgroup_v2_quota_caps_the_cpu_count(tmp_path: Path, cpu_max: str, expected: int) -> None:
    source = LocalWorkersSource(os.getpid(), cgroup_root=cgroup_v2(tmp_path, cpu_max))
    assert source.cpu_count == expected


@pytest.mark.usefixtures("host_of_64_cpus_running_on_4")
@pytest.mark.parametrize(("quota", "expected"), [(-1, 4), (250_000, 3), (10_000, 1)])
def test_cgroup_v1_quota_caps_the_cpu_count(tmp_path: Path, quota: int, expected: int) -> None:
    source = LocalWorkersSource(os.getpid(), cgroup_root=cgroup_v1(tmp_path, quota))
    assert source.cpu_count == expected


@pytest.mark.usefixtures("host_of_64_cpus_running_on_4")
def test_without_cgroup_files_it_is_the_affinity(tmp_path: Path) -> None:
    assert LocalWorkersSource(os.getpid(), cgroup_root=tmp_path / "none").cpu_count == 4


@pytest.mark.usefixtures("host_of_64_cpus_running_on_4")
def test_the_quota_is_read_once(tmp_path: Path) -> None:
    root = cgroup_v2(tmp_path, "100000 100000")
    source = LocalWorkersSource(os.getpid(), cgroup_root=root)
    (root / "cpu.max").write_text("max 100000\n")
    assert source.cpu_count == 1


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two idle child processes of this one, standing in for a master's workers."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(2)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def read_twice(source: LocalWorkersSource) -> dict[str, float]:
    with pytest.raises(MetricsUnavailable):
        source.read()  # first sight of the workers: nothing measured yet
    return dict(source.read())


@pytest.mark.usefixtures("host_of_64_cpus_running_on_4")
def test_a_reading_reports_the_quota_not_the_hosts_cpus(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    root = cgroup_v2(tmp_path, "150000 100000")
    reading = read_twice(LocalWorkersSource(os.getpid(), cgroup_root=root))
    assert reading["cpu_count"] == 2.0
    assert reading["workers"] >= len(children)


def test_a_process_pinned_to_one_cpu_of_many_reads_one(
    monkeypatch: pytest.MonkeyPatch, children: list[subprocess.Popen[bytes]]
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    # The machine's own cgroup files: a quota can only lower one CPU, and never below one.
    assert read_twice(LocalWorkersSource(os.getpid()))["cpu_count"] == 1.0
