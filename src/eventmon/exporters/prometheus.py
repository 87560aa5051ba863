"""Prometheus exposition: text format 0.0.4, and OpenMetrics 1.0 when asked for.

Written here rather than through ``prometheus_client`` so that ``import eventmon``
pulls in no exporter library and a scrape costs only string formatting: each
series carries its escaped label string, computed once when the series is born.
The output is checked by ``prometheus_client``'s parser, ``promtool check metrics``
and a real Prometheus server in the test suite. The page on a port of its own
(:func:`start_metrics_server`, :class:`MetricsServer`) is served from ``_server.py`` and
re-exported here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Protocol

from eventmon.core._native import ACCELERATOR
from eventmon.core.aggregates import SeriesSnapshot
from eventmon.core.exemplars import exemplars_per_shown_bucket
from eventmon.core.histogram import DEFAULT_BUCKETS, DEFAULT_BUCKETS_MS
from eventmon.core.process import instance_limits, rss_bytes
from eventmon.core.registry import (
    counter_help_text,
    escape_label_value,
    extra_label_pairs,
    request_labels,
)
from eventmon.exporters._server import MetricsServer, start_metrics_server

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.core.user_histograms import HistogramSnapshot

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "RESERVED_LABELS",
    "MetricsServer",
    "MetricsView",
    "ProcessSample",
    "choose_format",
    "render",
    "render_families",
    "start_metrics_server",
]

#: (escaped label pairs or "", CPU seconds, resident bytes or None) of one process.
ProcessSample = tuple[str, float, "int | None"]


class MetricsView(Protocol):
    """What :func:`render_families` reads; a collector and the merged workers both are one."""

    @property
    def bounds(self) -> tuple[float, ...]: ...
    @property
    def quantiles(self) -> tuple[float, ...]: ...
    def series(self) -> Sequence[SeriesSnapshot]: ...
    def endpoint_percentiles(self) -> Mapping[str, Sequence[float]]: ...
    def in_progress(self) -> int: ...
    def slow_requests(self) -> Mapping[tuple[str, ...], int]: ...
    def internal_errors(self) -> Mapping[str, int]: ...
    def counters(self) -> Mapping[str, Mapping[tuple[str, ...], float]]: ...
    def counter_labels(self, name: str) -> tuple[str, ...]: ...
    def gauges(self) -> Mapping[str, Mapping[tuple[str, ...], float]]: ...
    def gauge_labels(self, name: str) -> tuple[str, ...]: ...
    def histograms(self) -> Mapping[str, HistogramSnapshot]: ...


_BUILD_HELP = "eventmon's version and request path: accelerator c (compiled) or python."

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def choose_format(accept: str | None) -> tuple[bool, str]:
    """(openmetrics?, content type) for a scraper's Accept header."""
    if accept and "application/openmetrics-text" in accept:
        return True, CONTENT_TYPE_OPENMETRICS
    return False, CONTENT_TYPE_TEXT


def _num(v: float) -> str:
    """A sample value as both formats spell it: ``NaN``, ``+Inf`` and ``-Inf`` included."""
    if v != v:  # noqa: PLR0124 - NaN is the one value unequal to itself
        return "NaN"
    if abs(v) < 1e15:
        if v == int(v):
            return str(int(v))
    elif v == math.inf:
        return "+Inf"
    elif v == -math.inf:
        return "-Inf"
    return repr(float(v))


def _escape_help(text: str, openmetrics: bool) -> str:
    """HELP text as the format spells it: backslash and newline escaped, and in OpenMetrics
    the double quote too."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True))


#: Label names eventmon's own series use: ``const_labels`` may not take them.
RESERVED_LABELS = frozenset(
    {"method", "endpoint", "status_code", "le", "quantile", "where", "version", "accelerator"}
    | {"worker"}
)


def render(
    collector: MetricsCollector,
    *,
    openmetrics: bool = False,
    unit: str = "s",
    also: Any = None,
    namespace: str = "",
    const_labels: Sequence[tuple[str, str]] = (),
    group_status_codes: bool = False,
) -> bytes:
    """The collector's metrics in the Prometheus text format (or OpenMetrics).

    ``unit="ms"`` names the histogram ``http_request_duration_ms`` with
    millisecond bounds and sums, like the product's original specification
    (with the default buckets, exactly its 0.1 … 500 ms bounds: slower requests
    count in +Inf only); the default is seconds, Prometheus's base unit. With worker aggregation on
    (``EVENTMON_MULTIPROC_DIR``, :mod:`eventmon.exporters.multiprocess`) the
    output is that of every worker of the server merged.

    ``also``: a ``prometheus_client`` registry whose families follow eventmon's
    (default: the one given to :func:`eventmon.exporters.promclient.serve_alongside`);
    eventmon leaves out its own copy of any family the registry also exports.
    If the registry fails, eventmon's families are served and the fault counted.

    Chosen per page, at no cost per request: ``namespace`` prefixes the request
    families (``tickets`` gives ``tickets_http_requests_total``), ``const_labels``
    are added to every series, and ``group_status_codes`` shows ``2xx``, ``4xx``...
    in ``status_code`` instead of the codes.
    """
    registry = also if also is not None else getattr(collector, "extra_registry", None)
    collected = None
    if registry is not None:
        # Collected first, so that a failure shows on this very page.
        try:
            collected = list(registry.collect())
        except Exception:
            collector.internal_error("prometheus_client.registry")
    mp = getattr(collector, "multiprocess", None)
    view: Any = collector
    processes = None
    if mp is not None:
        view, processes = mp.scrape()
    if group_status_codes:
        view = _GroupedStatus(view)
    body = render_families(view, openmetrics=openmetrics, unit=unit, processes=processes)
    if namespace or const_labels:
        # eventmon's own series only: an app registry served beside them keeps its own.
        body = _decorate(body, namespace, const_labels)
    if collected is None:
        return body
    from eventmon.exporters.promclient import combine

    return combine(body, registry, openmetrics=openmetrics, collected=collected)


def _size_families(
    add: Any,
    family: Any,
    sizes: Mapping[int, Mapping[tuple[str, ...], tuple[list[int], float]]],
    extra_names: tuple[str, ...],
) -> None:
    from eventmon.core.sizes import SIZE_BUCKETS, SIZE_HELP

    les = [repr(b) for b in SIZE_BUCKETS] + ["+Inf"]
    for kind, (name, help_text) in enumerate(SIZE_HELP):
        family(name, "histogram", help_text)
        for values, (counts, total) in sorted(sizes[kind].items()):
            lbl = request_labels(*values[:3]) + extra_label_pairs(extra_names, values[3:])
            for le, c in zip(les, accumulate(counts), strict=True):
                add(f'{name}_bucket{{{lbl},le="{le}"}} {c}\n')
            add(f"{name}_sum{{{lbl}}} {_num(total)}\n")
            add(f"{name}_count{{{lbl}}} {sum(counts)}\n")


def _status_class(status: str) -> str:
    return status[0] + "xx" if len(status) == 3 and status.isdigit() else status


def _extra_names(view: object) -> tuple[str, ...]:
    """The view's extra request label names (``header_labels``, ``label_callbacks``)."""
    return tuple(getattr(view, "extra_label_names", ()))


class _GroupedStatus:
    """A view whose request series are merged by status class (``2xx``, ``4xx``...)."""

    def __init__(self, view: MetricsView) -> None:
        self._view = view

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)

    def series(self) -> list[SeriesSnapshot]:
        names = _extra_names(self._view)
        merged: dict[tuple[str, ...], SeriesSnapshot] = {}
        for s in self._view.series():
            status = _status_class(s.status_code)
            key = (s.method, s.endpoint, status, *s.extra)
            had = merged.get(key)
            if had is None:
                labels = request_labels(s.method, s.endpoint, status)
                labels += extra_label_pairs(names, s.extra)
                merged[key] = SeriesSnapshot(
                    s.method, s.endpoint, status, labels, s.count, s.sum, s.buckets, s.extra
                )
            else:
                buckets = tuple(a + b for a, b in zip(had.buckets, s.buckets, strict=True))
                merged[key] = SeriesSnapshot(
                    s.method,
                    s.endpoint,
                    status,
                    had.labels,
                    had.count + s.count,
                    had.sum + s.sum,
                    buckets,
                    s.extra,
                )
        return list(merged.values())

    def exemplars_by_series(self) -> dict[tuple[Any, str, str], dict[int, _Exemplar]]:
        """The view's exemplars by status class: the newest per bucket of the class."""
        out: dict[tuple[Any, str, str], dict[int, _Exemplar]] = {}
        for (method, endpoint, status), per in (_exemplars(self._view) or {}).items():
            mine = out.setdefault((method, endpoint, _status_class(status)), {})
            for bucket, ex in per.items():
                had = mine.get(bucket)
                if had is None or ex[2] > had[2]:
                    mine[bucket] = ex
        return out

    def size_histograms(self) -> dict[int, dict[tuple[str, ...], tuple[list[int], float]]]:
        sizes_of = getattr(self._view, "size_histograms", None)
        out: dict[int, dict[tuple[str, ...], tuple[list[int], float]]] = {0: {}, 1: {}}
        if sizes_of is None:
            return out
        for kind, per in sizes_of().items():
            for (method, endpoint, status, *extra), (counts, total) in per.items():
                key = (method, endpoint, _status_class(status), *extra)
                had = out[kind].get(key)
                if had is None:
                    out[kind][key] = (list(counts), total)
                else:
                    out[kind][key] = (
                        [a + b for a, b in zip(had[0], counts, strict=True)],
                        had[1] + total,
                    )
        return out


def _decorate(text: bytes, namespace: str, const_labels: Sequence[tuple[str, str]]) -> bytes:
    """Prefix the request families with ``namespace`` and add ``const_labels`` to every sample.

    Worked on the rendered page, so every family (built-in, user, per worker) gets them
    the same way. A series that has a label of the same name already keeps its own.
    """
    prefix = namespace + "_" if namespace else ""
    pairs = [(f'{n}="', f'{n}="{escape_label_value(v)}"') for n, v in const_labels]
    lines = text.decode("utf-8").split("\n")
    return "\n".join(_decorate_line(line, prefix, pairs) for line in lines).encode("utf-8")


def _decorate_line(line: str, prefix: str, pairs: Sequence[tuple[str, str]]) -> str:
    if not line or line.startswith("#"):
        if prefix and line.startswith(("# HELP http_", "# TYPE http_")):
            return line[:7] + prefix + line[7:]
        return line
    if prefix and line.startswith("http_"):
        line = prefix + line
    if not pairs:
        return line
    brace = line.find("{")
    space = line.find(" ")
    if brace == -1 or brace > space:
        return line[:space] + "{" + ",".join(p for _, p in pairs) + "}" + line[space:]
    # An escaped value holds no unescaped '"', so name=" can only start a label.
    head, rest = line[: brace + 1], line[brace + 1 :]
    extra = "".join(
        p + "," for key, p in pairs if not rest.startswith(key) and f",{key}" not in rest
    )
    return head + extra + rest


def render_families(
    view: MetricsView,
    *,
    openmetrics: bool = False,
    unit: str = "s",
    processes: Sequence[ProcessSample] | None = None,
) -> bytes:
    """Render any :class:`MetricsView`; ``processes`` defaults to this process, unlabelled."""
    collector = view
    if unit not in ("s", "ms"):
        raise ValueError(f"unit must be 's' or 'ms', got {unit!r}")
    scale = 1000.0 if unit == "ms" else 1.0
    hist_name = "http_request_duration_ms" if unit == "ms" else "http_request_duration_seconds"
    out: list[str] = []
    add = out.append

    def family(name: str, kind: str, help_text: str) -> str:
        """Write HELP/TYPE; return the sample name of a counter."""
        fam = name[:-6] if openmetrics and kind == "counter" and name.endswith("_total") else name
        add(f"# HELP {fam} {_escape_help(help_text, openmetrics)}\n# TYPE {fam} {kind}\n")
        return fam + "_total" if openmetrics and kind == "counter" else name

    series = collector.series()

    sample = family(
        "http_requests_total", "counter", "HTTP requests by method, route template and status code."
    )
    for s in series:
        add(f"{sample}{{{s.labels}}} {s.count}\n")

    family(hist_name, "histogram", "HTTP request duration, until the last body byte was sent.")
    bounds = tuple(collector.bounds)
    shown = len(bounds)
    if unit == "ms" and bounds == DEFAULT_BUCKETS:
        # The original specification's histogram: its six bounds, none past 500 ms.
        shown = len(DEFAULT_BUCKETS_MS)
    les = [repr(b * scale) for b in bounds[:shown]]
    exemplars = _exemplars(collector) if openmetrics else None
    for s in series:
        cumulative = list(accumulate(s.buckets))
        if exemplars:
            # Keyed by the endpoint as recorded: (template, *values) with extra labels.
            recorded: Any = (s.endpoint, *s.extra) if s.extra else s.endpoint
            held = exemplars.get((s.method, recorded, s.status_code))
            if held:
                _buckets_with_exemplars(add, hist_name, s.labels, les, cumulative, held, scale)
                add(f"{hist_name}_sum{{{s.labels}}} {_num(s.sum * scale)}\n")
                add(f"{hist_name}_count{{{s.labels}}} {s.count}\n")
                continue
        for le, c in zip(les, cumulative, strict=False):
            add(f'{hist_name}_bucket{{{s.labels},le="{le}"}} {c}\n')
        add(f'{hist_name}_bucket{{{s.labels},le="+Inf"}} {cumulative[-1]}\n')
        add(f"{hist_name}_sum{{{s.labels}}} {_num(s.sum * scale)}\n")
        add(f"{hist_name}_count{{{s.labels}}} {s.count}\n")

    extra_names = _extra_names(collector)
    sizes_of = getattr(collector, "size_histograms", None)
    sizes = sizes_of() if sizes_of is not None else None
    if sizes is not None and (sizes[0] or sizes[1]):
        _size_families(add, family, sizes, extra_names)

    # HDR percentiles per endpoint, as a summary: precomputed quantiles are what the
    # summary type is for, and promtool rejects a "quantile" label on a gauge.
    qname = "http_request_duration_hdr_ms" if unit == "ms" else "http_request_duration_hdr_seconds"
    family(qname, "summary", "Latency percentiles per endpoint from HDR histograms, since start.")
    per_endpoint: dict[str, list[float]] = {}
    for s in series:
        acc = per_endpoint.setdefault(s.endpoint, [0, 0.0])
        acc[0] += s.count
        acc[1] += s.sum
    qlabels = [repr(q) for q in collector.quantiles]
    for endpoint, quantile_values in collector.endpoint_percentiles().items():
        ep = escape_label_value(endpoint)
        for q, v in zip(qlabels, quantile_values, strict=True):
            add(f'{qname}{{endpoint="{ep}",quantile="{q}"}} {_num(v * scale)}\n')
        count, total = per_endpoint.get(endpoint, (0, 0.0))
        add(f'{qname}_sum{{endpoint="{ep}"}} {_num(total * scale)}\n')
        add(f'{qname}_count{{endpoint="{ep}"}} {_num(count)}\n')

    family("http_requests_in_progress", "gauge", "HTTP requests being served right now.")
    add(f"http_requests_in_progress {collector.in_progress()}\n")

    sample = family(
        "http_slow_requests_total", "counter", "HTTP requests slower than the slow threshold."
    )
    for (method, endpoint, *extra), n in sorted(collector.slow_requests().items()):
        labels = _labels(("method", "endpoint"), (method, endpoint))
        add(f"{sample}{{{labels}{extra_label_pairs(extra_names, extra)}}} {n}\n")

    sample = family(
        "eventmon_internal_errors_total", "counter", "Faults inside eventmon; requests went on."
    )
    for where, n in sorted(collector.internal_errors().items()):
        add(f'{sample}{{where="{escape_label_value(where)}"}} {n}\n')

    # Which eventmon answers, and whether its C accelerator runs (a pure-Python
    # install is slower; this makes it visible where the numbers are read).
    from eventmon import __version__

    if openmetrics:
        add(f"# HELP eventmon_build {_BUILD_HELP}\n# TYPE eventmon_build info\n")
    else:
        family("eventmon_build_info", "gauge", _BUILD_HELP)
    build = _labels(("version", "accelerator"), (__version__, ACCELERATOR))
    add(f"eventmon_build_info{{{build}}} 1\n")

    if processes is None:
        times = os.times()
        processes = [("", times.user + times.system, rss_bytes())]
    sample = family("process_cpu_seconds_total", "counter", "CPU time of this process.")
    for lbl, cpu, _ in processes:
        add(f"{sample}{{{lbl}}} {_num(cpu)}\n" if lbl else f"{sample} {_num(cpu)}\n")
    family("process_resident_memory_bytes", "gauge", "Resident memory of this process.")
    for lbl, _, rss in processes:
        if rss is None:
            continue  # exited workers: CPU time is kept, memory is not
        if lbl:
            add(f"process_resident_memory_bytes{{{lbl}}} {rss}\n")
        else:
            add(f"process_resident_memory_bytes {rss}\n")

    # What the instance may use (its cgroup's limits, else the host's), so that rules
    # divide CPU and memory by each target's own figure instead of a baked-in number.
    limits = instance_limits()
    family(
        "eventmon_cpu_limit_cores",
        "gauge",
        "CPU cores this instance may use (cgroup quota, else the host's CPUs).",
    )
    add(f"eventmon_cpu_limit_cores {_num(limits.cpu_cores)}\n")
    family(
        "eventmon_memory_limit_bytes",
        "gauge",
        "Memory this instance may use (cgroup limit, else the host's RAM).",
    )
    add(f"eventmon_memory_limit_bytes {limits.memory_bytes}\n")

    for name, per in sorted(collector.counters().items()):
        names = collector.counter_labels(name)
        sample = family(name + "_total", "counter", counter_help_text(collector, name))
        for values, v in sorted(per.items()):
            lbl = _labels(names, values)
            add(f"{sample}{{{lbl}}} {_num(v)}\n" if lbl else f"{sample} {_num(v)}\n")

    for name, per_g in sorted(collector.gauges().items()):
        names = collector.gauge_labels(name)
        family(name, "gauge", f"Gauge {name}.")
        for values, v in sorted(per_g.items()):
            lbl = _labels(names, values)
            add(f"{name}{{{lbl}}} {_num(v)}\n" if lbl else f"{name} {_num(v)}\n")

    for name, h in sorted(view.histograms().items()):
        family(name, "histogram", h.help or f"Histogram {name}.")
        bucket_les = [*(f'le="{b!r}"' for b in h.bounds), 'le="+Inf"']
        for values, (counts, total) in sorted(h.samples.items()):
            lbl = _labels(h.label_names, values)
            sep = "," if lbl else ""
            for le, c in zip(bucket_les, accumulate(counts), strict=True):
                add(f"{name}_bucket{{{lbl}{sep}{le}}} {c}\n")
            braces = f"{{{lbl}}}" if lbl else ""
            add(f"{name}_sum{braces} {_num(total)}\n")
            add(f"{name}_count{braces} {sum(counts)}\n")

    if openmetrics:
        add("# EOF\n")
    return "".join(out).encode("utf-8")


_Exemplar = tuple[str, float, float]


def _exemplars(view: object) -> dict[tuple[str, str, str], dict[int, _Exemplar]] | None:
    """The view's exemplars by series, if it keeps any (a collector with exemplars on)."""
    read = getattr(view, "exemplars_by_series", None)
    return read() if read is not None else None


def _buckets_with_exemplars(  # noqa: PLR0917 - a private helper of render_families
    add: Any,
    name: str,
    labels: str,
    les: list[str],
    cumulative: list[int],
    per: Mapping[int, _Exemplar],
    scale: float,
) -> None:
    """One series' ``_bucket`` samples, each followed by its bucket's exemplar if any.

    OpenMetrics: ``sample # {trace_id="..."} value timestamp``; the exemplar's value
    lies in its bucket, and its label set (40 characters here) is within the 128 allowed.
    """
    shown = len(les)
    held = exemplars_per_shown_bucket(per, shown)
    for k, le in enumerate([*les, "+Inf"]):
        c = cumulative[k] if k < shown else cumulative[-1]
        ex = held[k]
        if ex is None:
            add(f'{name}_bucket{{{labels},le="{le}"}} {c}\n')
        else:
            trace_id, value, at = ex
            add(
                f'{name}_bucket{{{labels},le="{le}"}} {c}'
                f' # {{trace_id="{trace_id}"}} {_num(value * scale)} {at:.3f}\n'
            )
