"""Instance limits from cgroup v2 / v1 trees (fake ones under tmp_path), and the shares of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventmon import MetricsCollector
from eventmon.core import process
from eventmon.core.process import ProcessStats, ResourceLimits, read_limits, rss_bytes
from eventmon.exporters.prometheus import render

GIB = 1 << 30
HOST = {"cpus": 8, "memory": 32 * GIB}


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def self_cgroup(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def test_cgroup_v2_takes_the_tightest_limit_of_the_cgroup_and_its_ancestors(
    tmp_path: Path,
) -> None:
    root = tree(
        tmp_path / "cg",
        {
            "cgroup.controllers": "cpuset cpu io memory pids",
            "kubepods/memory.max": str(GIB // 2),
            "kubepods/cpu.max": "max 100000",
            "kubepods/pod1/ctr/cpu.max": "50000 100000",
            "kubepods/pod1/ctr/memory.max": str(GIB),
        },
    )
    own = self_cgroup(tmp_path, "0::/kubepods/pod1/ctr\n")
    assert read_limits(root, cgroup_file=own, **HOST) == ResourceLimits(
        0.5, GIB // 2, "cgroup v2", "cgroup v2"
    )


def test_cgroup_v2_in_its_own_namespace_reads_the_mount_root(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "cg",
        {"cgroup.controllers": "cpu memory", "cpu.max": "250000 100000", "memory.max": "max"},
    )
    # A container with a private cgroup namespace sees "0::/", or a path not in its mount.
    for membership in ("0::/\n", "0::/system.slice/docker-1.scope\n"):
        limits = read_limits(root, cgroup_file=self_cgroup(tmp_path, membership), **HOST)
        assert limits == ResourceLimits(2.5, 32 * GIB, "cgroup v2", "host")


def test_cgroup_v1_quota_over_period_and_memory_limit(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "cg",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            "memory/docker/abc/memory.limit_in_bytes": str(3 * GIB),
            "memory/memory.limit_in_bytes": "9223372036854771712",  # the root: unlimited
            "unified/cgroup.controllers": "",  # hybrid: v2 beside, without controllers
        },
    )
    own = self_cgroup(
        tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n"
    )
    assert read_limits(root, cgroup_file=own, **HOST) == ResourceLimits(
        1.5, 3 * GIB, "cgroup v1", "cgroup v1"
    )


@pytest.mark.parametrize(
    "files",
    [
        {"cpu/cpu.cfs_quota_us": "-1", "memory/memory.limit_in_bytes": "9223372036854771712"},
        {"cpu/cpu.cfs_quota_us": "garbage", "memory/memory.limit_in_bytes": "-5"},
        {"cgroup.controllers": "cpu memory", "cpu.max": "max 100000", "memory.max": "max"},
        {"cgroup.controllers": "cpu memory", "cpu.max": "x y", "memory.max": "lots"},
        # Limits above what the host has mean nothing: the host's figures stand.
        {"cgroup.controllers": "cpu memory", "cpu.max": "1600000 100000", "memory.max": "1e99"},
        {"cgroup.controllers": "cpu memory", "memory.max": str(64 * GIB)},
        {},
    ],
)
def test_no_limit_falls_back_to_the_host(tmp_path: Path, files: dict[str, str]) -> None:
    root = tree(tmp_path / "cg", files)
    own = self_cgroup(tmp_path, "0::/\n3:cpu:/\n4:memory:/\n")
    assert read_limits(root, cgroup_file=own, **HOST) == ResourceLimits(8.0, 32 * GIB)


def test_missing_tree_and_membership_fall_back_to_this_host(tmp_path: Path) -> None:
    limits = read_limits(tmp_path / "none", cgroup_file=tmp_path / "none-either")
    assert limits.cpu_source == limits.memory_source == "host"
    assert limits.cpu_cores >= 1
    assert limits.memory_bytes == process.total_memory_bytes()


class Ticker:
    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0


def test_cpu_percent_is_a_share_of_the_cpu_limit() -> None:
    t = Ticker()
    half_core = ProcessStats(ResourceLimits(0.5, GIB), clock=lambda: t.wall, cpu_time=lambda: t.cpu)
    two_cores = ProcessStats(ResourceLimits(2.0, GIB), clock=lambda: t.wall, cpu_time=lambda: t.cpu)
    t.wall, t.cpu = 10.0, 4.0  # 0.4 of a core for 10 s
    assert half_core.cpu_percent() == pytest.approx(80.0)
    assert two_cores.cpu_percent() == pytest.approx(20.0)
    t.wall, t.cpu = 20.0, 14.0  # a full core: more than the quota allows is still 100 %
    assert half_core.cpu_percent() == 100.0


def test_memory_percent_is_a_share_of_the_memory_limit() -> None:
    limit = 4 * rss_bytes()
    rss, pct = ProcessStats(ResourceLimits(1.0, limit)).memory()
    assert pct == pytest.approx(100.0 * rss / limit)
    assert 20.0 < pct < 30.0


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """This process in a fake cgroup v2 pod: 0.5 cores, memory limit 3x its RSS."""
    limit = 3 * rss_bytes()
    root = tree(
        tmp_path / "cg",
        {"cgroup.controllers": "cpu memory", "cpu.max": "50000 100000", "memory.max": str(limit)},
    )
    monkeypatch.setattr(process, "CGROUP_ROOT", str(root))
    monkeypatch.setattr(process, "PROC_SELF_CGROUP", str(self_cgroup(tmp_path, "0::/\n")))
    monkeypatch.setattr(process, "_cached", None)
    return limit


def test_realtime_snapshot_uses_the_pod_limits(pod: int) -> None:
    c = MetricsCollector(slow_hooks=())
    try:
        snap = c.get_realtime_metrics()
    finally:
        c.shutdown()
    # A share of the pod's memory (about a third), not of the node's.
    assert snap.memory_usage == pytest.approx(100.0 * snap.memory_rss_bytes / pod, rel=0.05)
    assert 25.0 < snap.memory_usage < 40.0


def test_metrics_page_exports_the_pod_limits(pod: int) -> None:
    c = MetricsCollector(slow_hooks=())
    try:
        page = render(c).decode()
    finally:
        c.shutdown()
    assert "# TYPE eventmon_cpu_limit_cores gauge\neventmon_cpu_limit_cores 0.5\n" in page
    assert f"# TYPE eventmon_memory_limit_bytes gauge\neventmon_memory_limit_bytes {pod}\n" in page


def test_instance_limits_are_read_again_after_max_age(pod: int, tmp_path: Path) -> None:
    assert process.instance_limits().cpu_cores == 0.5
    (tmp_path / "cg" / "cpu.max").write_text("100000 100000\n")  # resized in place
    assert process.instance_limits().cpu_cores == 0.5  # cached
    assert process.instance_limits(max_age=0).cpu_cores == 1.0
