"""Prometheus exposition: text format 0.0.4, and OpenMetrics 1.0 when asked for.

Written here rather than through ``prometheus_client`` so that ``import eventmon``
pulls in no exporter library and a scrape costs only string formatting: each
series carries its escaped label string, computed once when the series is born.
The output is checked by ``prometheus_client``'s parser, ``promtool check metrics``
and a real Prometheus server in the test suite.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector

__all__ = ["CONTENT_TYPE_OPENMETRICS", "CONTENT_TYPE_TEXT", "choose_format", "render"]

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def choose_format(accept: str | None) -> tuple[bool, str]:
    """(openmetrics?, content type) for a scraper's Accept header."""
    if accept and "application/openmetrics-text" in accept:
        return True, CONTENT_TYPE_OPENMETRICS
    return False, CONTENT_TYPE_TEXT


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    from eventmon.core.registry import escape_label_value

    return ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True))


def render(collector: MetricsCollector, *, openmetrics: bool = False, unit: str = "s") -> bytes:
    """The collector's metrics in the Prometheus text format (or OpenMetrics).

    ``unit="ms"`` names the histogram ``http_request_duration_ms`` with
    millisecond bounds and sums, like the product's original specification;
    the default is seconds, Prometheus's base unit.
    """
    if unit not in ("s", "ms"):
        raise ValueError(f"unit must be 's' or 'ms', got {unit!r}")
    scale = 1000.0 if unit == "ms" else 1.0
    hist_name = "http_request_duration_ms" if unit == "ms" else "http_request_duration_seconds"
    out: list[str] = []
    add = out.append

    def family(name: str, kind: str, help_text: str) -> str:
        """Write HELP/TYPE; return the sample name of a counter."""
        fam = name[:-6] if openmetrics and kind == "counter" and name.endswith("_total") else name
        add(f"# HELP {fam} {help_text}\n# TYPE {fam} {kind}\n")
        return fam + "_total" if openmetrics and kind == "counter" else name

    series = collector.series()

    sample = family(
        "http_requests_total", "counter", "HTTP requests by method, route template and status code."
    )
    for s in series:
        add(f"{sample}{{{s.labels}}} {s.count}\n")

    family(hist_name, "histogram", "HTTP request duration, until the last body byte was sent.")
    les = [repr(b * scale) for b in collector.bounds] + ["+Inf"]
    for s in series:
        cumulative = 0
        for le, c in zip(les, s.buckets, strict=True):
            cumulative += c
            add(f'{hist_name}_bucket{{{s.labels},le="{le}"}} {cumulative}\n')
        add(f"{hist_name}_sum{{{s.labels}}} {_num(s.sum * scale)}\n")
        add(f"{hist_name}_count{{{s.labels}}} {s.count}\n")

    qname = "http_request_duration_quantile_ms" if unit == "ms" else (
        "http_request_duration_quantile_seconds"
    )
    family(qname, "gauge", "Latency percentiles per endpoint from HDR histograms, since start.")
    from eventmon.core.registry import escape_label_value

    qlabels = [repr(q) for q in collector.quantiles]
    for endpoint, values in collector.endpoint_percentiles().items():
        ep = escape_label_value(endpoint)
        for q, v in zip(qlabels, values, strict=True):
            add(f'{qname}{{endpoint="{ep}",quantile="{q}"}} {_num(v * scale)}\n')

    family("http_requests_in_progress", "gauge", "HTTP requests being served right now.")
    add(f"http_requests_in_progress {collector.in_progress()}\n")

    sample = family(
        "http_slow_requests_total", "counter", "HTTP requests slower than the slow threshold."
    )
    for (method, endpoint), n in sorted(collector.slow_requests().items()):
        labels = _labels(("method", "endpoint"), (method, endpoint))
        add(f"{sample}{{{labels}}} {n}\n")

    sample = family(
        "eventmon_internal_errors_total", "counter", "Faults inside eventmon; requests went on."
    )
    for where, n in sorted(collector.internal_errors().items()):
        add(f'{sample}{{where="{escape_label_value(where)}"}} {n}\n')

    times = os.times()
    sample = family("process_cpu_seconds_total", "counter", "CPU time of this process.")
    add(f"{sample} {_num(times.user + times.system)}\n")
    from eventmon.core.process import rss_bytes

    family("process_resident_memory_bytes", "gauge", "Resident memory of this process.")
    add(f"process_resident_memory_bytes {rss_bytes()}\n")

    for name, per in sorted(collector.counters().items()):
        names = collector.counter_labels(name)
        sample = family(name + "_total", "counter", f"Counter {name}.")
        for values, v in sorted(per.items()):
            lbl = _labels(names, values)
            add(f"{sample}{{{lbl}}} {_num(v)}\n" if lbl else f"{sample} {_num(v)}\n")

    for name, per_g in sorted(collector.gauges().items()):
        names = collector.gauge_labels(name)
        family(name, "gauge", f"Gauge {name}.")
        for values, v in sorted(per_g.items()):
            lbl = _labels(names, values)
            add(f"{name}{{{lbl}}} {_num(v)}\n" if lbl else f"{name} {_num(v)}\n")

    if openmetrics:
        add("# EOF\n")
    return "".join(out).encode("utf-8")
