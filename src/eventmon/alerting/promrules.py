"""Export alert rules as a Prometheus rule file whose PromQL reads eventmon's metrics.

Each metric a rule may name becomes the PromQL that computes the same quantity
from what eventmon exports (``http_requests_total``,
``http_request_duration_seconds_*``, ``http_requests_in_progress``,
``http_slow_requests_total``, ``process_*``, ``<counter>_total``), summed across
instances. Rates use ``window`` (default ``1m``, like the collector's window).

Percentile thresholds are translated exactly when they can be: ``p95 > T``
holds exactly when less than 95 % of requests took at most ``T``, which is a
ratio of two counters if ``T`` is a histogram bucket bound or the collector's
slow threshold (``http_slow_requests_total``, 1 s by default). Otherwise
``histogram_quantile`` interpolates within buckets; a threshold above the
highest finite bucket cannot be computed and is an error.

``not`` is pushed down to the comparisons (``not a > 1`` becomes ``a <= 1``),
since PromQL has no boolean negation of a filter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from eventmon._exceptions import RuleError
from eventmon._validate import bucket_bounds, number
from eventmon.alerting._merged import _PCT
from eventmon.alerting.expr import (
    And,
    Compare,
    Condition,
    MetricInfo,
    MetricRef,
    Node,
    Not,
    Number,
)
from eventmon.alerting.metrics import BUILTIN_METRICS, SCALE_OUT_GAUGE
from eventmon.alerting.rules import AlertRule, format_duration, parse_duration
from eventmon.core.histogram import DEFAULT_BUCKETS

__all__ = ["PromQLTranslator", "export_rules", "render_rule_file"]

_NEGATE = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}
_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


def _num(v: float) -> str:
    return repr(float(v)) if v != int(v) or abs(v) >= 1e15 else str(int(v))


def _sel(labels: Iterable[tuple[str, str]], extra: str = "") -> str:
    parts = [f"{k}={json.dumps(v)}" for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class PromQLTranslator:
    """Turns conditions into PromQL over eventmon's exported metric names.

    Args:
        window: range for ``rate``/``increase`` (``"1m"``).
        buckets: the collector's histogram bounds in seconds.
        slow_threshold: the collector's slow threshold in seconds.
        cpu_count: cores per instance for ``cpu_usage``; by default each
            target's own ``eventmon_cpu_limit_cores`` (its cgroup quota, else
            its host's CPUs), so no figure of the exporting machine is baked in.
        memory_bytes: memory per instance for ``memory_usage``; by default each
            target's ``eventmon_memory_limit_bytes``.
        gauges: names of the app's gauges (read with ``max``); other
            non-built-in names are counters (read with ``increase``).
    """

    def __init__(
        self,
        *,
        window: str = "1m",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        slow_threshold: float = 1.0,
        cpu_count: float | None = None,
        memory_bytes: int | None = None,
        gauges: Iterable[str] = (),
    ) -> None:
        parse_duration(window, "window")
        self.window = window
        self.buckets = bucket_bounds("buckets", buckets)
        self.slow_threshold = number("slow_threshold", slow_threshold, above=0, unit="seconds")
        self.cpu_count = cpu_count
        self.memory_bytes = memory_bytes
        self.gauges = frozenset(gauges)

    # -- one metric

    def metric(self, m: MetricRef) -> str:
        """PromQL for one metric, in the same unit the in-process rules use."""
        w = self.window
        sel = _sel(m.labels)
        n = m.name
        total = f"sum(rate(http_requests_total[{w}]))"
        errors = f'(sum(rate(http_requests_total{{status_code=~"5.."}}[{w}])) or vector(0))'
        if n == "requests_per_second":
            return total
        if n == "error_rate":
            return f"({errors} / {total})"
        if n == "availability":
            return f"(1 - {errors} / {total})"
        if n == "avg_response_time":
            return (
                f"(1000 * sum(rate(http_request_duration_seconds_sum[{w}]))"
                f" / sum(rate(http_request_duration_seconds_count[{w}])))"
            )
        if n == "active_connections":
            return "sum(http_requests_in_progress)"
        # Per instance (a pre-fork server's workers summed: they share its limits),
        # divided by the instance's own limit; the division also keeps out the
        # process_* series of targets that are not eventmon's.
        if n == "cpu_usage":
            cpu = f"sum without (worker) (rate(process_cpu_seconds_total[{w}]))"
            cores = _num(self.cpu_count) if self.cpu_count else "eventmon_cpu_limit_cores"
            return f"max(100 * {cpu} / {cores})"
        if n == "memory_usage":
            rss = "sum without (worker) (process_resident_memory_bytes)"
            limit = _num(self.memory_bytes) if self.memory_bytes else "eventmon_memory_limit_bytes"
            return f"max(100 * {rss} / {limit})"
        if n == "memory_rss_bytes":
            return "max(process_resident_memory_bytes)"
        if n == "scale_out_time":
            return f"max({SCALE_OUT_GAUGE})"
        if n in _PCT:
            q = _PCT[n] / 100.0
            return (
                f"(1000 * histogram_quantile({q}, sum by (le)"
                f" (rate(http_request_duration_seconds_bucket{sel}[{w}]))))"
            )
        if n in BUILTIN_METRICS:  # pragma: no cover - every builtin is handled above
            raise RuleError(f"no PromQL for {n!r}")
        if n.endswith("_total"):
            return f"sum({n})"
        if n in self.gauges:
            return f"max({n}{sel})"
        return f"sum(increase({n}_total{sel}[{w}]))"

    # -- a whole condition

    def condition(self, cond: Condition) -> str:
        """PromQL for a bound or unbound condition."""
        return self._node(cond, cond.node, negate=False)

    def _node(self, cond: Condition, node: Node, negate: bool) -> str:
        if isinstance(node, Not):
            return self._node(cond, node.item, not negate)
        if isinstance(node, Compare):
            return self._compare(cond, node, negate)
        is_and = isinstance(node, And) != negate  # De Morgan
        op = " and " if is_and else " or "
        return "(" + op.join(self._node(cond, i, negate) for i in node.items) + ")"

    def _compare(self, cond: Condition, node: Compare, negate: bool) -> str:
        op = _NEGATE[node.op] if negate else node.op
        left, right = node.left, node.right
        if isinstance(left, Number):
            left, right, op = right, left, _FLIP[op]
        assert isinstance(left, MetricRef)
        if isinstance(right, MetricRef):
            return f"{self.metric(left)} {op} {self.metric(right)}"
        unit = cond.units.get(left.key) or BUILTIN_METRICS.get(left.name, _NOUNIT).unit
        threshold = cond.threshold(right, unit)
        if left.name in _PCT and op in (">", ">=", "<", "<="):
            exact = self._percentile(left, op, threshold / 1000.0)
            if exact is not None:
                return exact
            if threshold / 1000.0 > self.buckets[-1]:
                raise RuleError(
                    f"{left.name} {op} {right.text} cannot be computed in Prometheus: the"
                    f" highest histogram bucket is {self.buckets[-1]:g}s. Add"
                    f" {threshold / 1000.0:g} to the collector's buckets= (and pass the same"
                    " buckets to the export), or use slow_threshold="
                    f"{threshold / 1000.0:g}"
                )
        return f"{self.metric(left)} {op} {_num(threshold)}"

    def _percentile(self, m: MetricRef, op: str, seconds: float) -> str | None:
        q = _PCT[m.name] / 100.0
        w = self.window
        # pq > T  <=>  F(T) < q, where F(T) is the share of requests taking <= T.
        share_le: str | None = None
        for b in self.buckets:
            if abs(b - seconds) <= 1e-12 * max(1.0, b):
                le = json.dumps(repr(b))
                bucket = _sel(m.labels, "le=" + le)
                count = _sel(m.labels)
                share_le = (
                    f"(sum(rate(http_request_duration_seconds_bucket{bucket}[{w}]))"
                    f" / sum(rate(http_request_duration_seconds_count{count}[{w}])))"
                )
                break
        if share_le is None and abs(seconds - self.slow_threshold) <= 1e-12 and not m.labels:
            share_le = (
                f"(1 - (sum(rate(http_slow_requests_total[{w}])) or vector(0))"
                f" / sum(rate(http_requests_total[{w}])))"
            )
        if share_le is None:
            return None
        inverse = {">": "<", ">=": "<", "<": ">=", "<=": ">="}[op]
        return f"{share_le} {inverse} {_num(q)}"


class _NoUnit:
    unit = ""


_NOUNIT = _NoUnit()


def _yaml_str(s: str) -> str:
    # JSON strings are valid YAML double-quoted scalars.
    return json.dumps(s)


def render_rule_file(
    rules: Iterable[AlertRule],
    *,
    group: str = "eventmon",
    interval: str | None = None,
    translator: PromQLTranslator | None = None,
    gauges: Iterable[str] = (),
) -> str:
    """The rule file's text (YAML, written without needing PyYAML)."""
    tr = translator or PromQLTranslator(gauges=gauges)
    out = ["# Generated by `eventmon rules export`: eventmon's alert rules in PromQL.", "groups:"]
    out.append(f"  - name: {_yaml_str(group)}")
    if interval:
        out.append(f"    interval: {interval}")
    out.append("    rules:")
    for rule in rules:
        cond = rule.parsed
        if not cond.units:
            # Bind to the built-in catalog so units convert; unknown names are
            # user counters/gauges, which have no unit.
            catalog = dict(BUILTIN_METRICS)
            for m in cond.metrics:
                catalog.setdefault(m.name, MetricInfo(m.name))
            try:
                cond = cond.bind(catalog)
            except RuleError as e:
                raise RuleError(f"rule {rule.name!r}: {e}") from None
        try:
            expr = tr.condition(cond)
        except RuleError as e:
            raise RuleError(f"rule {rule.name!r}: {e}") from None
        out.append(f"      - alert: {rule.name}")
        out.append(f"        expr: {_yaml_str(expr)}")
        if rule.for_seconds:
            out.append(f"        for: {format_duration(rule.for_seconds)}")
        if rule.keep_firing_seconds:
            out.append(f"        keep_firing_for: {format_duration(rule.keep_firing_seconds)}")
        out.append("        labels:")
        for k, v in sorted(rule.all_labels.items()):
            out.append(f"          {k}: {_yaml_str(v)}")
        annotations = dict(rule.annotations)
        annotations.setdefault("summary", f"{rule.name}: {rule.condition}")
        annotations.setdefault("eventmon_condition", rule.condition)
        out.append("        annotations:")
        for k, v in sorted(annotations.items()):
            out.append(f"          {k}: {_yaml_str(v)}")
    return "\n".join(out) + "\n"


def export_rules(
    rules: Iterable[AlertRule],
    path: str | Path | None = None,
    **options: object,
) -> str:
    """Render the rule file (see :func:`render_rule_file`), writing it to ``path`` if given."""
    text = render_rule_file(rules, **options)  # type: ignore[arg-type]
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
