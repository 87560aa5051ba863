"""Where the autoscaler reads load from.

A :class:`MetricsSource` returns a mapping of metric names to numbers; the
policies read ``cpu_percent`` by default. Two sources ship:

* :class:`LocalWorkersSource` — CPU of a gunicorn or uvicorn master's worker
  processes on this machine (psutil).
* :class:`PrometheusSource` — one PromQL instant query over Prometheus's HTTP
  API, for a fleet (standard library only).

A source that cannot read raises; the autoscaler logs it and holds the count.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from eventmon._exceptions import ConfigurationError, EventmonError
from eventmon._validate import seconds
from eventmon.core.process import CGROUP_ROOT, read_limits

__all__ = [
    "LocalWorkersSource",
    "MetricsSource",
    "MetricsUnavailable",
    "PrometheusSource",
    "worker_processes",
]


class MetricsUnavailable(EventmonError):
    """A metrics source could not produce a reading this time."""


@runtime_checkable
class MetricsSource(Protocol):
    """Anything with ``read() -> {"cpu_percent": 73.0, ...}``; may raise."""

    def read(self) -> Mapping[str, float]: ...


def _is_helper(cmdline: list[str]) -> bool:
    # multiprocessing's resource tracker (uvicorn's spawn workers start one) is
    # a child of the supervisor but serves no requests.
    return any("resource_tracker" in part or "semaphore_tracker" in part for part in cmdline)


def worker_processes(master_pid: int) -> list[Any]:
    """The master's serving children as psutil processes, oldest first."""
    import psutil

    out = []
    for child in psutil.Process(master_pid).children(recursive=False):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or _is_helper(child.cmdline()):
                continue
            out.append((child.create_time(), child.pid, child))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    out.sort(key=lambda t: (t[0], t[1]))
    return [p for _, _, p in out]


def _usable_cpus(cgroup_root: str | Path) -> int:
    """Whole CPUs the workers can keep busy at once: the CPUs this process may run on,
    capped by the container's cgroup CPU quota (1.5 CPUs of quota run 2 at once), at least 1.
    """
    return max(1, math.ceil(read_limits(cgroup_root).cpu_cores))


class LocalWorkersSource:
    """CPU of the worker processes of a pre-fork master (gunicorn, uvicorn ``--workers``).

    ``cpu_percent`` is the mean over workers of each worker's CPU share since
    the previous read (100 = one core fully busy), the analogue of a pod's CPU
    utilization in the HPA. Also returned: ``cpu_percent_total`` (sum over
    workers), ``cpu_percent_max`` and ``workers``. Workers seen for the first
    time are measured from that read on, so the first read after a new worker
    appears counts only the others. ``cpu_count`` is the whole CPUs the workers
    may use: those this process may run on (its affinity), capped by the
    container's cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``),
    read once when the source is made.

    Args:
        master_pid: pid of the gunicorn master or uvicorn supervisor (an int,
            or a callable returning one, e.g. reading a pidfile).
        exclude: pids to leave out (e.g. workers being drained).
        cgroup_root: where the cgroup file system is mounted.
    """

    def __init__(
        self,
        master_pid: int | Callable[[], int],
        *,
        exclude: Callable[[], set[int]] | None = None,
        cgroup_root: str | Path = CGROUP_ROOT,
    ) -> None:
        if not callable(master_pid) and (
            not isinstance(master_pid, int) or isinstance(master_pid, bool) or master_pid <= 0
        ):
            raise ConfigurationError(f"master_pid must be a positive pid, got {master_pid!r}")
        try:
            import psutil  # noqa: F401 - optional dependency
        except ImportError as e:  # pragma: no cover - psutil is in the extras
            raise ConfigurationError(
                "LocalWorkersSource needs psutil: pip install 'eventmon[all]' or psutil"
            ) from e
        self._master = master_pid
        self._exclude = exclude
        self._known: dict[int, Any] = {}
        # os.cpu_count() is the host's: in a container with a CPU quota it overstates.
        self.cpu_count = _usable_cpus(cgroup_root)

    @property
    def master_pid(self) -> int:
        return int(self._master() if callable(self._master) else self._master)

    def read(self) -> Mapping[str, float]:
        """Mean, total and max CPU % of the workers since the previous read."""
        import psutil

        try:
            workers = worker_processes(self.master_pid)
        except psutil.NoSuchProcess as e:
            raise MetricsUnavailable(f"master process {self.master_pid} is gone") from e
        skip = self._exclude() if self._exclude else set()
        seen: dict[int, Any] = {}
        values: list[float] = []
        for proc in workers:
            if proc.pid in skip:
                continue
            known = self._known.get(proc.pid)
            try:
                if known is None:
                    proc.cpu_percent(None)  # prime: psutil measures from here
                    seen[proc.pid] = proc
                    continue
                values.append(float(known.cpu_percent(None)))
                seen[proc.pid] = known
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        self._known = seen
        if not values:
            if seen:
                raise MetricsUnavailable("workers seen for the first time; next read measures")
            raise MetricsUnavailable(f"process {self.master_pid} has no worker processes")
        return {
            "cpu_percent": sum(values) / len(values),
            "cpu_percent_total": sum(values),
            "cpu_percent_max": max(values),
            "workers": float(len(seen)),
            "cpu_count": float(self.cpu_count),
        }


class PrometheusSource:
    """A PromQL instant query over Prometheus's HTTP API (``/api/v1/query``).

    The result must be a scalar or a vector; several series are combined with
    ``combine`` (``"avg"``, ``"sum"``, ``"max"``, ``"min"``). The value is
    returned under ``metric`` (default ``cpu_percent``). Example query for the
    CPU of a fleet, in percent of one core per pod::

        100 * avg(rate(container_cpu_usage_seconds_total{pod=~"web-.*"}[1m]))
    """

    def __init__(
        self,
        url: str,
        query: str,
        *,
        metric: str = "cpu_percent",
        combine: str = "avg",
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigurationError(
                f"url must be Prometheus's base URL like http://prometheus:9090, got {url!r}"
            )
        if not query or not isinstance(query, str):
            raise ConfigurationError("query must be a non-empty PromQL expression")
        if combine not in _COMBINE:
            raise ConfigurationError(f"combine must be one of {sorted(_COMBINE)}, got {combine!r}")
        timeout = seconds("timeout", timeout)
        self.url = url.rstrip("/")
        self.query = query
        self.metric = metric
        self.combine = combine
        self.timeout = float(timeout)
        self.headers = dict(headers or {})

    def read(self) -> Mapping[str, float]:
        """Run the query; raise :class:`MetricsUnavailable` on any failure or empty result."""
        target = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": self.query})
        req = urllib.request.Request(target, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:300]
            raise MetricsUnavailable(f"Prometheus answered {e.code}: {detail}") from e
        except (OSError, ValueError) as e:
            raise MetricsUnavailable(f"Prometheus query failed: {e!r}") from e
        if not isinstance(body, dict) or body.get("status") != "success":
            raise MetricsUnavailable(f"Prometheus query failed: {str(body)[:300]}")
        data = body.get("data") or {}
        kind = data.get("resultType")
        result: Any = data.get("result")
        values: list[float] = []
        try:
            if kind == "scalar":
                values.append(float(result[1]))
            elif kind == "vector":
                values.extend(float(sample["value"][1]) for sample in result)
            else:
                raise MetricsUnavailable(f"query returned a {kind}, not a scalar or vector")
        except (TypeError, KeyError, IndexError, ValueError) as e:
            raise MetricsUnavailable(f"unexpected Prometheus answer: {str(data)[:300]}") from e
        values = [v for v in values if not math.isnan(v)]
        if not values:
            raise MetricsUnavailable(f"query {self.query!r} returned no samples")
        return {self.metric: _COMBINE[self.combine](values), "series": float(len(values))}


_COMBINE: dict[str, Callable[[list[float]], float]] = {
    "avg": lambda v: sum(v) / len(v),
    "sum": sum,
    "max": max,
    "min": min,
}
