"""CPU and memory of this process, from the standard library only.

CPU is the share of the whole machine this process used since the previous
reading (0–100, all cores together). Memory is the resident set size, in bytes
and as a share of physical memory.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["ProcessStats", "rss_bytes", "total_memory_bytes"]


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


class ProcessStats:
    """CPU share since the last call, and memory, of the current process."""

    __slots__ = ("_clock", "_cpus", "_last_cpu", "_last_value", "_last_wall", "_total_mem")

    def __init__(self) -> None:
        self._cpus = os.cpu_count() or 1
        self._total_mem = total_memory_bytes()
        self._clock = time.monotonic
        self._last_wall = self._clock()
        self._last_cpu = self._cpu_seconds()
        self._last_value = 0.0

    @staticmethod
    def _cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system

    def cpu_percent(self) -> float:
        """Share of the machine's CPU used since the previous call (0–100).

        Each figure covers at least one second: calls closer together return the
        previous figure, so several readers (dashboard, alert engine, scaler)
        share one measurement instead of each seeing a sliver.
        """
        wall = self._clock()
        elapsed = wall - self._last_wall
        if elapsed < 1.0:
            return self._last_value
        cpu = self._cpu_seconds()
        value = max(0.0, min(100.0, (cpu - self._last_cpu) / elapsed / self._cpus * 100.0))
        self._last_wall, self._last_cpu, self._last_value = wall, cpu, value
        return value

    def memory(self) -> tuple[int, float]:
        """(resident bytes, percent of physical memory)."""
        rss = rss_bytes()
        pct = rss / self._total_mem * 100.0 if self._total_mem else 0.0
        return rss, pct
