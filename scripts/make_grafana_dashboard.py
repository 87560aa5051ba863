"""Write examples/grafana-dashboard.json from eventmon's exported metric names.

Run: python scripts/make_grafana_dashboard.py  (tests/dashboard/test_examples.py
checks that every metric the dashboard queries is one eventmon exports).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "examples" / "grafana-dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(  # noqa: PLR0917 - positional layout reads like a grid
    pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int, w: int = 12
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(65 + i), "expr": expr, "legendFormat": legend, "datasource": DS}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def stat(pid: int, title: str, expr: str, unit: str, x: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "stat",
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": 0, "w": 4, "h": 4},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": "A", "expr": expr, "datasource": DS}],
    }


SEL = 'job="$job"'


def build() -> dict[str, Any]:
    rate = f"sum(rate(http_requests_total{{{SEL}}}[$__rate_interval]))"
    errors = f'sum(rate(http_requests_total{{{SEL},status_code=~"5.."}}[$__rate_interval]))'

    def quantile(p: float) -> str:
        return (
            f"histogram_quantile({p}, sum by (le) "
            f"(rate(http_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))"
        )

    panels = [
        stat(1, "Requests/s", rate, "reqps", 0),
        stat(2, "Error rate", f"{errors} / {rate}", "percentunit", 4),
        stat(3, "p95 (buckets)", quantile(0.95), "s", 8),
        stat(4, "In progress", f"sum(http_requests_in_progress{{{SEL}}})", "short", 12),
        stat(5, "Instances", f"max(eventmon_instances{{{SEL}}})", "short", 16),
        stat(
            6,
            "Internal errors",
            f"sum(increase(eventmon_internal_errors_total{{{SEL}}}[1h]))",
            "short",
            20,
        ),
        panel(
            7,
            "Requests/s by endpoint",
            [
                (
                    f"sum by (endpoint) (rate(http_requests_total{{{SEL}}}[$__rate_interval]))",
                    "{{endpoint}}",
                ),
            ],
            "reqps",
            0,
            4,
        ),
        panel(
            8,
            "Response time (histogram buckets)",
            [
                (quantile(0.5), "p50"),
                (quantile(0.95), "p95"),
                (quantile(0.99), "p99"),
            ],
            "s",
            12,
            4,
        ),
        panel(9, "Error rate (5xx share)", [(f"{errors} / {rate}", "5xx")], "percentunit", 0, 12),
        panel(
            10,
            "p95 by endpoint (HDR, exact, since start)",
            [
                (
                    "max by (endpoint) "
                    f'(http_request_duration_hdr_seconds{{{SEL},quantile="0.95"}})',
                    "{{endpoint}}",
                ),
            ],
            "s",
            12,
            12,
        ),
        panel(
            11,
            "Slow requests/s",
            [
                (
                    "sum by (endpoint) "
                    f"(rate(http_slow_requests_total{{{SEL}}}[$__rate_interval]))",
                    "{{endpoint}}",
                ),
            ],
            "reqps",
            0,
            20,
        ),
        panel(
            12,
            "CPU and memory",
            [
                (f"sum(rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval]))", "CPU (cores)"),
                (f"sum(process_resident_memory_bytes{{{SEL}}}) / 1e6", "RSS (MB)"),
            ],
            "short",
            12,
            20,
        ),
        panel(
            13,
            "Instances and scaling events",
            [
                (f"max(eventmon_instances{{{SEL}}})", "instances"),
                (
                    f"sum by (direction) (increase(eventmon_scaling_events_total{{{SEL}}}[5m]))",
                    "scaled {{direction}}",
                ),
            ],
            "short",
            0,
            28,
            24,
        ),
    ]
    return {
        "title": "eventmon",
        "uid": "eventmon",
        "tags": ["eventmon"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
                {
                    "name": "job",
                    "type": "query",
                    "datasource": DS,
                    "label": "job",
                    "query": "label_values(http_requests_total, job)",
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
