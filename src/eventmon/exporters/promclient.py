"""Living next to ``prometheus_client``: both registries on one metrics page, either way round.

* :class:`EventmonCollector` puts eventmon's metrics in a ``prometheus_client``
  registry, for apps whose metrics page is ``prometheus_client``'s::

      from prometheus_client import REGISTRY
      from eventmon.exporters.promclient import EventmonCollector

      REGISTRY.register(EventmonCollector())

* :func:`serve_alongside` (or ``render(..., also=registry)``) adds an app's
  registry to eventmon's own ``/metrics``::

      serve_alongside(REGISTRY)

**No family twice.** ``prometheus_client``'s default registry exports
``process_cpu_seconds_total`` and ``process_resident_memory_bytes`` (with more
process figures), as eventmon does. The rule, the same both ways round: *the
app's registry keeps its families; eventmon drops its own copy.* So
:class:`EventmonCollector` leaves out eventmon's ``process_*`` families (pass
``process_metrics=True`` for a registry without a ``ProcessCollector``), and
eventmon's page with a registry beside it leaves out each of its families the
registry also exports (a clash other than ``process_*`` is logged once).

This module imports ``prometheus_client`` (``pip install eventmon[prometheus]``);
``import eventmon`` does not import it.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import generate_latest as _generate_text
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as _generate_openmetrics
from prometheus_client.samples import Exemplar

from eventmon._exceptions import ConfigurationError
from eventmon.core.exemplars import exemplars_per_shown_bucket
from eventmon.core.histogram import DEFAULT_BUCKETS, DEFAULT_BUCKETS_MS
from eventmon.core.registry import counter_help_text, family_names
from eventmon.core.sizes import SIZE_BUCKETS, SIZE_HELP

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.exporters.prometheus import MetricsView, ProcessSample

__all__ = ["EventmonCollector", "combine", "serve_alongside"]

logger = logging.getLogger("eventmon")

_PROCESS_FAMILIES = ("process_cpu_seconds_total", "process_resident_memory_bytes")
_ONE_LABEL = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)="(.*)"$')


class EventmonCollector:
    """eventmon's metrics as a ``prometheus_client`` custom collector.

    Args:
        collector: whose metrics (default: the process-wide collector); with worker
            aggregation on, every worker's, merged, as eventmon's own page shows.
        unit: ``"s"`` (default) or ``"ms"``, as for eventmon's page.
        process_metrics: also export eventmon's ``process_*`` families. Off by
            default: ``prometheus_client``'s default registry has its own.

    Example::

        REGISTRY.register(EventmonCollector())
    """

    def __init__(
        self,
        collector: MetricsCollector | None = None,
        *,
        unit: str = "s",
        process_metrics: bool = False,
    ) -> None:
        from eventmon._adapter import resolve_collector

        if unit not in ("s", "ms"):
            raise ConfigurationError(f"unit must be 's' or 'ms', got {unit!r}")
        if not isinstance(process_metrics, bool):
            raise ConfigurationError(
                f"process_metrics must be True or False, got {process_metrics!r}"
            )
        self.collector = resolve_collector(collector)
        self.unit = unit
        self.process_metrics = process_metrics

    def describe(self) -> list[Metric]:
        # What the registry checks for duplicates at register(), whatever its auto_describe.
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        """The families of eventmon's page, as ``prometheus_client`` metric families.

        If reading them fails, none are yielded and the fault is counted (shown at the
        next scrape): the registry's other metrics are still served.
        """
        try:
            found = list(self._families())
        except Exception:
            self.collector.internal_error("promclient.collect")
            found = []
        return iter(found)

    def _families(self) -> Iterator[Metric]:
        mp = self.collector.multiprocess
        processes: list[ProcessSample] | None = None
        view: MetricsView
        if mp is not None:
            view, processes = mp.scrape()
        else:
            view = self.collector
        yield from families(view, unit=self.unit)
        if self.process_metrics:
            yield from _process_families(processes)


def _pad(values: tuple[str, ...], width: int) -> tuple[str, ...]:
    return values if len(values) == width else (*values, *("",) * width)[:width]


def families(view: MetricsView, *, unit: str = "s") -> Iterator[Metric]:
    """Every family of :func:`~eventmon.exporters.prometheus.render_families` but ``process_*``."""
    from eventmon import __version__
    from eventmon.core._native import ACCELERATOR
    from eventmon.core.process import instance_limits

    scale = 1000.0 if unit == "ms" else 1.0
    series = view.series()
    # Extra request labels (header_labels, label_callbacks): every series has them all,
    # "" where a series was recorded without a value.
    extra = tuple(getattr(view, "extra_label_names", ()))
    width = len(extra)
    requests = CounterMetricFamily(
        "http_requests_total",
        "HTTP requests by method, route template and status code.",
        labels=("method", "endpoint", "status_code", *extra),
    )
    for s in series:
        requests.add_metric((s.method, s.endpoint, s.status_code, *_pad(s.extra, width)), s.count)
    yield requests

    hist_name = "http_request_duration_ms" if unit == "ms" else "http_request_duration_seconds"
    durations = HistogramMetricFamily(
        hist_name,
        "HTTP request duration, until the last body byte was sent.",
        labels=("method", "endpoint", "status_code", *extra),
    )
    bounds = tuple(view.bounds)
    shown = len(DEFAULT_BUCKETS_MS) if unit == "ms" and bounds == DEFAULT_BUCKETS else len(bounds)
    les = [repr(b * scale) for b in bounds[:shown]]
    read_exemplars = getattr(view, "exemplars_by_series", None)
    exemplars = read_exemplars() if read_exemplars is not None else {}
    for s in series:
        cumulative = list(accumulate(s.buckets))
        buckets: list[Any] = [*zip(les, cumulative, strict=False), ("+Inf", cumulative[-1])]
        # Keyed by the endpoint as recorded: (template, *values) with extra labels.
        held = exemplars.get(
            (s.method, (s.endpoint, *s.extra) if s.extra else s.endpoint, s.status_code)
        )
        if held:
            # The OpenMetrics exposition shows them; the text format leaves them out.
            for k, ex in enumerate(exemplars_per_shown_bucket(held, shown)):
                if ex is not None:
                    trace_id, value, at = ex
                    buckets[k] = (*buckets[k], Exemplar({"trace_id": trace_id}, value * scale, at))
        labelled = (s.method, s.endpoint, s.status_code, *_pad(s.extra, width))
        durations.add_metric(labelled, buckets, s.sum * scale)
    yield durations
    yield from _size_families(view, extra)

    # Precomputed quantiles: a summary, as on eventmon's page. SummaryMetricFamily
    # takes no quantiles, so the samples are added one by one.
    qname = "http_request_duration_hdr_ms" if unit == "ms" else "http_request_duration_hdr_seconds"
    hdr = Metric(
        qname, "Latency percentiles per endpoint from HDR histograms, since start.", "summary"
    )
    per_endpoint: dict[str, list[float]] = {}
    for s in series:
        acc = per_endpoint.setdefault(s.endpoint, [0, 0.0])
        acc[0] += s.count
        acc[1] += s.sum
    qlabels = [repr(q) for q in view.quantiles]
    for endpoint, quantile_values in view.endpoint_percentiles().items():
        for q, v in zip(qlabels, quantile_values, strict=True):
            hdr.add_sample(qname, {"endpoint": endpoint, "quantile": q}, v * scale)
        count, total = per_endpoint.get(endpoint, (0, 0.0))
        hdr.add_sample(qname + "_sum", {"endpoint": endpoint}, total * scale)
        hdr.add_sample(qname + "_count", {"endpoint": endpoint}, count)
    yield hdr

    yield GaugeMetricFamily(
        "http_requests_in_progress", "HTTP requests being served right now.", view.in_progress()
    )
    slow = CounterMetricFamily(
        "http_slow_requests_total",
        "HTTP requests slower than the slow threshold.",
        labels=("method", "endpoint", *extra),
    )
    for (method, endpoint, *slow_extra), n in sorted(view.slow_requests().items()):
        slow.add_metric((method, endpoint, *_pad(tuple(slow_extra), width)), n)
    yield slow
    errors = CounterMetricFamily(
        "eventmon_internal_errors_total",
        "Faults inside eventmon; requests went on.",
        labels=("where",),
    )
    for where, n in sorted(view.internal_errors().items()):
        errors.add_metric((where,), n)
    yield errors
    build = InfoMetricFamily(
        "eventmon_build",
        "eventmon's version and request path: accelerator c (compiled) or python.",
        labels=("version", "accelerator"),
    )
    build.add_metric((__version__, ACCELERATOR), {})
    yield build
    limits = instance_limits()
    yield GaugeMetricFamily(
        "eventmon_cpu_limit_cores",
        "CPU cores this instance may use (cgroup quota, else the host's CPUs).",
        limits.cpu_cores,
    )
    yield GaugeMetricFamily(
        "eventmon_memory_limit_bytes",
        "Memory this instance may use (cgroup limit, else the host's RAM).",
        limits.memory_bytes,
    )

    for name, per in sorted(view.counters().items()):
        counter = CounterMetricFamily(
            name + "_total", counter_help_text(view, name), labels=view.counter_labels(name)
        )
        for values, v in sorted(per.items()):
            counter.add_metric(values, v)
        yield counter
    for name, per_g in sorted(view.gauges().items()):
        gauge = GaugeMetricFamily(name, f"Gauge {name}.", labels=view.gauge_labels(name))
        for values, v in sorted(per_g.items()):
            gauge.add_metric(values, v)
        yield gauge
    for name, h in sorted(view.histograms().items()):
        user = HistogramMetricFamily(name, h.help or f"Histogram {name}.", labels=h.label_names)
        les = [*(repr(b) for b in h.bounds), "+Inf"]
        for values, (counts, total) in sorted(h.samples.items()):
            user.add_metric(values, list(zip(les, accumulate(counts), strict=True)), total)
        yield user


def _size_families(view: MetricsView, extra: tuple[str, ...]) -> Iterator[Metric]:
    """Body-size histograms, if the view keeps any (``size_metrics=True``)."""
    read = getattr(view, "size_histograms", None)
    sizes = read() if read is not None else None
    if not sizes or not (sizes[0] or sizes[1]):
        return
    les = [*(repr(b) for b in SIZE_BUCKETS), "+Inf"]
    for kind, (name, help_text) in enumerate(SIZE_HELP):
        family = HistogramMetricFamily(
            name, help_text, labels=("method", "endpoint", "status_code", *extra)
        )
        for values, (counts, total) in sorted(sizes[kind].items()):
            labelled = (*values[:3], *_pad(tuple(values[3:]), len(extra)))
            family.add_metric(labelled, list(zip(les, accumulate(counts), strict=True)), total)
        yield family


def _process_families(processes: list[ProcessSample] | None) -> Iterator[Metric]:
    import os

    from eventmon.core.process import rss_bytes

    if processes is None:
        times = os.times()
        processes = [("", times.user + times.system, rss_bytes())]
    cpu = Metric("process_cpu_seconds", "CPU time of this process.", "counter")
    memory = Metric("process_resident_memory_bytes", "Resident memory of this process.", "gauge")
    for label, seconds, rss in processes:
        # Worker aggregation labels each process with one pre-escaped worker="..." pair.
        m = _ONE_LABEL.match(label)
        labels = {m.group(1): m.group(2)} if m else {}
        cpu.add_sample("process_cpu_seconds_total", labels, seconds)
        if rss is not None:
            memory.add_sample("process_resident_memory_bytes", labels, rss)
    yield cpu
    yield memory


# ------------------------------------------------------------ the other way round

# Per registry, the clashing families already logged: once each, not at every scrape.
_warned: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _used_names(metrics: Iterable[Metric]) -> set[str]:
    used: set[str] = set()
    for m in metrics:
        kind = m.type if m.type in ("counter", "gauge", "histogram", "summary", "info") else "gauge"
        used |= family_names(m.name, kind)
        used.update(s.name for s in m.samples)
    return used


def _blocks(page: str) -> Iterator[tuple[str, str, str]]:
    """(family name, type, text) of each family on an eventmon page, in order."""
    name = kind = ""
    lines: list[str] = []
    for line in page.splitlines(keepends=True):
        if line.startswith("# HELP "):
            if lines:
                yield name, kind, "".join(lines)
            name, kind, lines = line.split(" ", 3)[2], "", []
        elif line.startswith("# TYPE "):
            kind = line.split()[3]
        elif line.startswith("# EOF"):
            continue
        lines.append(line)
    if lines:
        yield name, kind, "".join(lines)


def combine(
    page: bytes, registry: Any, *, openmetrics: bool = False, collected: list[Metric] | None = None
) -> bytes:
    """eventmon's ``page`` with ``registry``'s families after it, none twice.

    eventmon's families that the registry also exports are left out (the
    registry's are kept): see this module's docstring for the rule.
    ``collected``: the registry's families if already collected.
    """
    metrics = list(registry.collect()) if collected is None else collected
    used = _used_names(metrics)
    try:
        warned = _warned.setdefault(registry, set())
    except TypeError:  # not weakly referable: warn at every scrape rather than never
        warned = set()
    kept = []
    for name, kind, text in _blocks(page.decode("utf-8")):
        base = name + "_total" if openmetrics and kind == "counter" else name
        both = used & family_names(base, kind if kind != "unknown" else "gauge")
        if both:
            if name not in warned and not name.startswith("process_"):
                warned.add(name)
                logger.warning(
                    "eventmon: the prometheus_client registry also exports %s;"
                    " serving the registry's copy, not eventmon's",
                    name,
                )
            continue
        kept.append(text)

    class _Fixed:
        # The families already collected: collect() is not called twice per scrape.
        @staticmethod
        def collect() -> list[Metric]:
            return metrics

    generate = _generate_openmetrics if openmetrics else _generate_text
    return "".join(kept).encode("utf-8") + generate(_Fixed())


def serve_alongside(registry: Any, collector: MetricsCollector | None = None) -> None:
    """Serve ``registry``'s metrics on eventmon's pages too (every adapter's ``/metrics``,
    :func:`~eventmon.exporters.prometheus.start_metrics_server`); ``None`` stops it.

    Example: ``serve_alongside(prometheus_client.REGISTRY)``.
    """
    from eventmon._adapter import resolve_collector

    if registry is not None and not callable(getattr(registry, "collect", None)):
        raise ConfigurationError(
            f"serve_alongside needs a prometheus_client registry (with collect()), got {registry!r}"
        )
    if isinstance(registry, EventmonCollector):
        raise ConfigurationError(
            "serve_alongside takes the app's registry, not an EventmonCollector:"
            " eventmon's page has eventmon's metrics already"
        )
    resolve_collector(collector).extra_registry = registry
