"""CPU and memory of this process, and what this instance may use, from the standard library.

CPU is the share of the instance's CPU limit this process used since the
previous reading (0–100). Memory is the resident set size, in bytes and as a
share of the instance's memory limit. The limits are the container's (cgroup v2
``cpu.max`` / ``memory.max``, or v1 ``cpu.cfs_quota_us`` / ``memory.limit_in_bytes``)
when it has them, else the host's CPUs (those this process may run on) and RAM:
in a pod limited to 512 MiB, 460 MiB resident is 90 %, not 2 % of the node.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ProcessStats",
    "ResourceLimits",
    "instance_limits",
    "read_limits",
    "rss_bytes",
    "total_memory_bytes",
]

#: where the cgroup file systems are mounted, and this process's cgroup membership
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"
#: v1 reports "no limit" as LONG_MAX rounded down to a page; anything this large is none
_UNLIMITED = 1 << 62


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4096


_PAGE = _page_size()


def rss_bytes() -> int:
    """Resident set size of this process in bytes (0 if the platform does not say)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is bytes on macOS, kilobytes elsewhere; a peak, the best available.
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except (ImportError, OSError):
        return 0


def total_memory_bytes() -> int:
    """Physical memory of the machine in bytes (0 if unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * _PAGE
    except (ValueError, OSError, AttributeError):
        return 0


def host_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """What this instance may use, and where each figure came from.

    ``cpu_source`` and ``memory_source`` are ``"cgroup v2"``, ``"cgroup v1"``
    or ``"host"``.
    """

    cpu_cores: float
    memory_bytes: int
    cpu_source: str = "host"
    memory_source: str = "host"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _membership(cgroup_file: str | Path) -> dict[str, str]:
    """``{controller: path}`` from ``/proc/self/cgroup``; ``""`` is the v2 hierarchy."""
    text = _read(Path(cgroup_file)) or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


def _chain(mount: Path, rel: str) -> list[Path]:
    """This cgroup's directory and its ancestors up to the mount: each may set a limit.

    A path that is not under the mount (a container with its own cgroup namespace
    sees its cgroup as the mount's root) leaves the mount itself.
    """
    start = mount / rel.lstrip("/")
    if not start.is_dir():
        return [mount]
    dirs = [start]
    while dirs[-1] != mount and mount in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return dirs


def _v2_cpu(directory: Path) -> float | None:
    text = _read(directory / "cpu.max")
    if not text:
        return None
    quota, _, period = text.partition(" ")
    try:
        return None if quota == "max" else int(quota) / int(period or "100000")
    except (ValueError, ZeroDivisionError):
        return None


def _v1_cpu(directory: Path) -> float | None:
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    try:
        q, p = int(quota or "-1"), int(period or "100000")
        return q / p if q > 0 and p > 0 else None
    except ValueError:
        return None


def _bytes(directory: Path, name: str) -> int | None:
    text = _read(directory / name)
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < _UNLIMITED else None


def _smallest(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None and v > 0]
    return min(found) if found else None


def read_limits(
    root: str | Path = CGROUP_ROOT,
    *,
    cgroup_file: str | Path = PROC_SELF_CGROUP,
    cpus: float | None = None,
    memory: int | None = None,
) -> ResourceLimits:
    """The CPU cores and memory bytes this process's container may use.

    Reads cgroup v2 (``root/<cgroup>/cpu.max``, ``memory.max``) if ``root`` is a
    v2 hierarchy, else v1 (``root/cpu/.../cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us``, ``root/memory/.../memory.limit_in_bytes``), taking
    the tightest limit of the cgroup and its ancestors. Missing or unlimited
    figures fall back to the host's: ``cpus`` (default: the CPUs this process
    may run on) and ``memory`` (default: physical memory). A limit is never
    reported above the host's.

    Example::

        >>> read_limits("/nonexistent").cpu_source
        'host'
    """
    mount = Path(root)
    membership = _membership(cgroup_file)
    host_cpu = float(cpus if cpus is not None else host_cpus())
    host_mem = int(memory if memory is not None else total_memory_bytes())
    cpu: float | None
    mem: float | None
    if (mount / "cgroup.controllers").is_file():
        source = "cgroup v2"
        dirs = _chain(mount, membership.get("", "/"))
        cpu = _smallest([_v2_cpu(d) for d in dirs])
        mem = _smallest([_bytes(d, "memory.max") for d in dirs])
    else:
        source = "cgroup v1"
        cpu_mount = next(
            (mount / n for n in ("cpu", "cpu,cpuacct", "cpuacct,cpu") if (mount / n).is_dir()),
            None,
        )
        cpu = None
        if cpu_mount is not None:
            cpu = _smallest([_v1_cpu(d) for d in _chain(cpu_mount, membership.get("cpu", "/"))])
        mem_mount = mount / "memory"
        mem = None
        if mem_mount.is_dir():
            mem = _smallest(
                [
                    _bytes(d, "memory.limit_in_bytes")
                    for d in _chain(mem_mount, membership.get("memory", "/"))
                ]
            )
    use_cpu = cpu is not None and cpu < host_cpu
    use_mem = mem is not None and (host_mem <= 0 or mem < host_mem)
    return ResourceLimits(
        cpu_cores=cpu if use_cpu and cpu is not None else host_cpu,
        memory_bytes=int(mem) if use_mem and mem is not None else host_mem,
        cpu_source=source if use_cpu else "host",
        memory_source=source if use_mem else "host",
    )


_cache_lock = threading.Lock()
_cached: tuple[float, ResourceLimits] | None = None


def instance_limits(max_age: float = 60.0) -> ResourceLimits:
    """:func:`read_limits` of this process, read again once ``max_age`` seconds old.

    Re-reading lets a pod resized in place report its new limits.
    """
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    with _cache_lock:
        if _cached is None or now - _cached[0] >= max_age:
            _cached = (now, read_limits(CGROUP_ROOT, cgroup_file=PROC_SELF_CGROUP))
        return _cached[1]


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ProcessStats:
    """CPU share since the last call, and memory, of the current process.

    Both are shares of the instance's limits (:func:`instance_limits`), or of
    ``limits`` when given.
    """

    __slots__ = ("_clock", "_cpu_time", "_last_cpu", "_last_value", "_last_wall", "_limits")

    def __init__(
        self,
        limits: ResourceLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu_time: Callable[[], float] = _cpu_seconds,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._cpu_time = cpu_time
        self._last_wall = self._clock()
        self._last_cpu = self._cpu_time()
        self._last_value = 0.0

    @property
    def limits(self) -> ResourceLimits:
        """The CPU and memory the percentages are shares of."""
        return self._limits or instance_limits()

    def cpu_percent(self) -> float:
        """Share of the instance's CPU limit used since the previous call (0–100).

        Each figure covers at least one second: calls closer together return the
        previous figure, so several readers (dashboard, alert engine, scaler)
        share one measurement instead of each seeing a sliver.
        """
        wall = self._clock()
        elapsed = wall - self._last_wall
        if elapsed < 1.0:
            return self._last_value
        cpu = self._cpu_time()
        cores = self.limits.cpu_cores
        value = max(0.0, min(100.0, (cpu - self._last_cpu) / elapsed / cores * 100.0))
        self._last_wall, self._last_cpu, self._last_value = wall, cpu, value
        return value

    def memory(self) -> tuple[int, float]:
        """(resident bytes, percent of the instance's memory limit)."""
        rss = rss_bytes()
        total = self.limits.memory_bytes
        pct = rss / total * 100.0 if total > 0 else 0.0
        return rss, pct
