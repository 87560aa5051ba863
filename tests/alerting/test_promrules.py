"""The exported rule file, checked by Prometheus's own promtool (check rules, test rules)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from eventmon import RuleError
from eventmon.alerting import AlertRule, default_rules
from eventmon.alerting.promrules import PromQLTranslator, export_rules
from eventmon.cli import main
from servers import require_binary

EXTRA = [
    AlertRule("slow_search", 'p95_response_time{endpoint="/search"} > 50ms', severity="info"),
    AlertRule("calm", "not (error_rate > 5% or requests_per_second < 1)", for_="1m"),
]


def _rules() -> list[AlertRule]:
    return default_rules(capacity=True, scaling=True) + EXTRA


def _translator() -> PromQLTranslator:
    return PromQLTranslator()  # CPU and memory divided by each target's exported limits


# Each alert: input series (15 s apart), the evaluation times at which it must
# not yet fire and must fire. Rates need two samples, so a rate-based condition
# turns true at 15 s and fires at 15 s + for.
CASES: dict[str, tuple[dict[str, str], str, str]] = {
    "high_error_rate": (
        {'http_requests_total{method="GET",endpoint="/pay",status_code="500"}': "0+60x40",
         'http_requests_total{method="GET",endpoint="/pay",status_code="200"}': "0+60x40"},
        "2m", "2m15s"),
    "high_response_time": (
        {'http_request_duration_seconds_sum{endpoint="/a"}': "0+120x40",
         'http_request_duration_seconds_count{endpoint="/a"}': "0+60x40"},
        "5m", "5m15s"),
    # One error (exported at 0 from the start; the error lands before the 1m scrape)
    # fires at once, as in-process: a hold as long as the window would never let it.
    "database_connection_failure": (
        {"db_connection_errors_total": "0 0 0 0 1x36"}, "45s", "1m"),
    # 1 s is a bucket bound: 90 % of requests at most 1 s means p95 is above it.
    "high_p95_response_time": (
        {'http_request_duration_seconds_bucket{endpoint="/a",le="1.0"}': "0+90x40",
         'http_request_duration_seconds_count{endpoint="/a"}': "0+100x40"},
        "5m", "5m15s"),
    "low_throughput": (
        {'http_requests_total{method="GET",endpoint="/a",status_code="200"}': "0+60x40"},
        "5m", "5m15s"),
    "low_availability": (
        {'http_requests_total{method="GET",endpoint="/a",status_code="503"}': "0+1x40",
         'http_requests_total{method="GET",endpoint="/a",status_code="200"}': "0+99x40"},
        "5m", "5m15s"),
    "high_concurrent_users": ({"http_requests_in_progress": "50000x40"}, "1m45s", "2m"),
    # rate() of one counter from zero reaches its full value once the 1m window is full;
    # 0.45 cores of a 0.5-core limit is 90 %. Series of one target carry its labels.
    "high_cpu_usage": (
        {'process_cpu_seconds_total{instance="a"}': "0+6.75x40",
         'eventmon_cpu_limit_cores{instance="a"}': "0.5x40"},
        "5m45s", "6m"),
    "high_memory_usage": (
        {'process_resident_memory_bytes{instance="a"}': "950x40",
         'eventmon_memory_limit_bytes{instance="a"}': "1000x40"},
        "4m45s", "5m"),
    "slow_scale_out": ({"eventmon_last_scale_out_seconds": "400x10"}, "", "0m"),
    "slow_search": (
        {'http_request_duration_seconds_bucket{endpoint="/search",le="0.05"}': "0+50x40",
         'http_request_duration_seconds_count{endpoint="/search"}': "0+100x40"},
        "0m", "15s"),
    "calm": (
        {'http_requests_total{method="GET",endpoint="/a",status_code="200"}': "0+60x40"},
        "1m", "1m15s"),
}  # fmt: skip


def _fired(rule: AlertRule) -> list[dict[str, dict[str, str]]]:
    """promtool's expectation: one alert of ``rule``, as the export labels it."""
    annotations = dict(rule.annotations)
    annotations.setdefault("summary", f"{rule.name}: {rule.condition}")
    annotations.setdefault("eventmon_condition", rule.condition)
    return [{"exp_labels": rule.all_labels, "exp_annotations": annotations}]


def _unit_tests(rules: list[AlertRule]) -> str:
    by_name = {r.name: r for r in rules}
    tests = []
    for name, (series, before, at) in CASES.items():
        rule = by_name[name]
        checks = []
        if before:
            checks.append({"eval_time": before, "alertname": name, "exp_alerts": []})
        checks.append({"eval_time": at, "alertname": name, "exp_alerts": _fired(rule)})
        tests.append(
            {
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": checks,
            }
        )
    # The same CPU and memory on a target with larger limits, a pre-fork server's workers
    # summed against their shared limit, and another program's process_* series (no
    # eventmon limits): none of them fires.
    tests.append(
        {
            "interval": "15s",
            "input_series": [
                {"series": 'process_cpu_seconds_total{instance="b"}', "values": "0+6.75x40"},
                {"series": 'eventmon_cpu_limit_cores{instance="b"}', "values": "2x40"},
                {"series": 'process_resident_memory_bytes{instance="b"}', "values": "950x40"},
                {"series": 'eventmon_memory_limit_bytes{instance="b"}', "values": "4000x40"},
                {
                    "series": 'process_cpu_seconds_total{instance="c",worker="1"}',
                    "values": "0+3x40",
                },
                {
                    "series": 'process_cpu_seconds_total{instance="c",worker="2"}',
                    "values": "0+3x40",
                },
                {"series": 'eventmon_cpu_limit_cores{instance="c"}', "values": "1x40"},
                {
                    "series": 'process_resident_memory_bytes{instance="c",worker="1"}',
                    "values": "300x40",
                },
                {
                    "series": 'process_resident_memory_bytes{instance="c",worker="2"}',
                    "values": "300x40",
                },
                {"series": 'eventmon_memory_limit_bytes{instance="c"}', "values": "1000x40"},
                {"series": 'process_cpu_seconds_total{job="node"}', "values": "0+60x40"},
                {"series": 'process_resident_memory_bytes{job="node"}', "values": "1e12x40"},
            ],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": n, "exp_alerts": []}
                for n in ("high_cpu_usage", "high_memory_usage")
            ],
        }
    )
    # Three workers at 0.15 cores each share a 0.5-core limit: 90 %, though each alone is 30 %.
    workers = [
        {"series": f'process_cpu_seconds_total{{instance="d",worker="{w}"}}', "values": "0+2.25x40"}
        for w in (1, 2, 3)
    ]
    tests.append(
        {
            "interval": "15s",
            "input_series": [
                *workers,
                {"series": 'eventmon_cpu_limit_cores{instance="d"}', "values": "0.5x40"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "6m",
                    "alertname": "high_cpu_usage",
                    "exp_alerts": _fired(by_name["high_cpu_usage"]),
                }
            ],
        }
    )
    # ... and the single error's alert clears once the error has left the 1m window.
    db = by_name["database_connection_failure"]
    tests.append(
        {
            "interval": "15s",
            "input_series": [{"series": "db_connection_errors_total", "values": "0 0 0 0 1x36"}],
            "alert_rule_test": [
                {"eval_time": t, "alertname": db.name, "exp_alerts": []} for t in ("2m", "5m")
            ],
        }
    )
    # A quiet app fires neither the error nor the latency alerts.
    tests.append(
        {
            "interval": "15s",
            "input_series": [
                {
                    "series": 'http_requests_total{endpoint="/a",status_code="200"}',
                    "values": "0+600x40",
                },
                {
                    "series": 'http_requests_total{endpoint="/a",status_code="500"}',
                    "values": "0+1x40",
                },
                {"series": "http_slow_requests_total", "values": "0+1x40"},
                {
                    "series": 'http_request_duration_seconds_bucket{endpoint="/a",le="1.0"}',
                    "values": "0+600x40",
                },
                {
                    "series": 'http_request_duration_seconds_count{endpoint="/a"}',
                    "values": "0+601x40",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": n, "exp_alerts": []}
                for n in (
                    "high_error_rate",
                    "high_p95_response_time",
                    "high_response_time",
                    "database_connection_failure",
                )
            ],
        }
    )
    doc = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": tests}
    return json.dumps(doc, indent=1)  # JSON is YAML


def _promtool_test_rules(promtool: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules tests.yml`` in ``folder`` (beside its ``rules.yml``)."""
    return subprocess.run(
        [promtool, "test", "rules", "tests.yml"],
        capture_output=True,
        check=False,
        text=True,
        cwd=folder,
        timeout=120,
    )


@pytest.mark.slow
def test_promtool_check_and_test_rules(tmp_path: Path, artifacts_dir: Path) -> None:
    promtool = require_binary("promtool")
    rules = _rules()
    text = export_rules(rules, tmp_path / "rules.yml", translator=_translator())
    (artifacts_dir / "eventmon-rules.yml").write_text(text)
    check = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yml")],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules)} rules found" in check.stdout
    (tmp_path / "tests.yml").write_text(_unit_tests(rules))
    result = _promtool_test_rules(promtool, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.slow
def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit-test harness can fail: firing one evaluation early is rejected."""
    promtool = require_binary("promtool")
    export_rules(_rules(), tmp_path / "rules.yml", translator=_translator())
    doc = json.loads(_unit_tests(_rules()))
    doc["tests"][0]["alert_rule_test"][1]["eval_time"] = "2m"  # high_error_rate, 15 s early
    (tmp_path / "tests.yml").write_text(json.dumps(doc))
    result = _promtool_test_rules(promtool, tmp_path)
    assert result.returncode != 0
    assert "high_error_rate" in result.stdout + result.stderr


def test_translation_details() -> None:
    tr = _translator()
    export = export_rules([AlertRule("a", "not (cpu_usage > 80% and memory_usage >= 90%)")],
                          translator=tr)  # fmt: skip
    cpu = "sum without (worker) (rate(process_cpu_seconds_total[1m]))"
    rss = "sum without (worker) (process_resident_memory_bytes)"
    assert f"max(100 * {cpu} / eventmon_cpu_limit_cores) <= 80" in export
    assert f"max(100 * {rss} / eventmon_memory_limit_bytes) < 90" in export
    # Figures given to the export are baked in instead.
    baked = export_rules([AlertRule("a", "cpu_usage > 80% and memory_usage >= 90%")],
                         translator=PromQLTranslator(cpu_count=2, memory_bytes=1000))  # fmt: skip
    assert f"max(100 * {cpu} / 2) > 80" in baked
    assert f"max(100 * {rss} / 1000) >= 90" in baked
    assert " or " in export
    # Thresholds convert to the metric's unit.
    assert "> 1500" in export_rules([AlertRule("b", "avg_response_time > 1.5s")])
    # A percentile at a bucket bound is an exact ratio; elsewhere histogram_quantile.
    exact = export_rules([AlertRule("c", "p99_response_time <= 100ms")])
    assert 'le=\\"0.1\\"' in exact
    assert ">= 0.99" in exact
    approx = export_rules([AlertRule("d", "p99_response_time > 70ms")])
    assert "histogram_quantile(0.99" in approx
    assert "> 70" in approx
    # The default buckets reach 10 s: a 2 s objective is computable, 20 s is not.
    assert "histogram_quantile(0.99" in export_rules([AlertRule("e", "p99_response_time > 2s")])
    with pytest.raises(RuleError, match=r"highest histogram bucket is 10s.*buckets="):
        export_rules([AlertRule("e", "p99_response_time > 20s")])
    custom = PromQLTranslator(buckets=[0.1, 0.5, 2.0])
    assert 'le=\\"2.0\\"' in export_rules([AlertRule("e", "p99_response_time > 2s")],
                                          translator=custom)  # fmt: skip
    gauge = PromQLTranslator(gauges=["queue_depth"])
    assert "max(queue_depth) > 10" in export_rules([AlertRule("g", "queue_depth > 10")],
                                                   translator=gauge)  # fmt: skip
    assert "sum(increase(orders_total[1m])) > 10" in export_rules([AlertRule("g", "orders > 10")])


def test_export_bakes_in_no_figure_of_the_exporting_machine(monkeypatch) -> None:
    """The same rules whichever machine runs the export: each target's own limits."""
    from eventmon.core import process

    first = export_rules(default_rules())
    monkeypatch.setattr(process.os, "cpu_count", lambda: 96)
    monkeypatch.setattr(process.os, "sched_getaffinity", lambda pid: set(range(96)), raising=False)
    monkeypatch.setattr(process, "total_memory_bytes", lambda: 1 << 40)
    monkeypatch.setattr(process, "_cached", None)
    assert export_rules(default_rules()) == first
    assert "/ eventmon_cpu_limit_cores) > 80" in first
    assert "/ eventmon_memory_limit_bytes) > 90" in first


def test_cli_capacity_rules_are_opt_in(tmp_path: Path, capsys) -> None:
    assert main(["rules", "export"]) == 0
    default = capsys.readouterr().out
    assert "alert: high_memory_usage" in default
    assert "low_throughput" not in default
    assert "high_concurrent_users" not in default
    assert main(["rules", "export", "--capacity-rules"]) == 0
    capacity = capsys.readouterr().out
    assert "alert: low_throughput" in capacity
    assert "alert: high_concurrent_users" in capacity
    own = tmp_path / "rules.yaml"
    own.write_text("rules:\n  - name: slow\n    condition: avg_response_time > 2s\n")
    assert main(["rules", "export", "--rules", str(own), "--capacity-rules"]) == 2
    assert "--capacity-rules picks among the built-in rules" in capsys.readouterr().err


def test_cli_export_and_check(tmp_path: Path, capsys) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: slow\n    condition: avg_response_time > 2s\n    for: 10m\n"
        "    severity: critical\n"
    )
    out = tmp_path / "prom.yml"
    assert main(["rules", "export", "--rules", str(rules), "-o", str(out), "--window", "2m"]) == 0
    text = out.read_text()
    assert "alert: slow" in text
    assert "for: 10m" in text
    assert "[2m]" in text
    assert "> 2000" in text
    assert main(["rules", "check", str(rules)]) == 0
    assert "1 rule(s) OK" in capsys.readouterr().out
    assert main(["rules", "export"]) == 0
    assert "alert: high_error_rate" in capsys.readouterr().out
    rules.write_text("rules:\n  - name: bad\n    condition: eror_rate > 1\n")
    assert main(["rules", "check", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'eror_rate'; did you mean 'error_rate'" in err
    rules.write_text("rules:\n  - name: c\n    condition: orders > 1\n")
    assert main(["rules", "check", str(rules)]) == 2
    assert main(["rules", "check", str(rules), "--declare", "orders"]) == 0


@pytest.mark.slow
def test_the_first_db_error_fires_in_prometheus_once_declared_at_start_up(
    tmp_path: Path,
) -> None:
    """Declared at 0 at start-up (as docs/alerts.md says), the first error fires in Prometheus.

    The input series are read off eventmon's own exposition: the page after the
    start-up declaration, then the page after one ``count_db_connection_error``. A
    counter that first appears at 1 has no increase in Prometheus, which is why the
    declaration (done for you by AlertEngine, the Django app and instrument_sqlalchemy)
    matters when the app counts by hand.
    """
    from eventmon import MetricsCollector
    from eventmon.alerting import count_db_connection_error
    from eventmon.exporters.prometheus import render

    def sample(collector: MetricsCollector) -> str:
        lines = render(collector).decode().splitlines()
        found = [ln.split()[-1] for ln in lines if ln.startswith("db_connection_errors_total")]
        assert len(found) == 1, "db_connection_errors_total missing from the page"
        return found[0]

    collector = MetricsCollector()
    count_db_connection_error(collector, amount=0)  # the start-up declaration
    before = sample(collector)
    count_db_connection_error(collector)
    after = sample(collector)
    assert (float(before), float(after)) == (0.0, 1.0)

    promtool = require_binary("promtool")
    rule = next(r for r in default_rules() if r.name == "database_connection_failure")
    export_rules([rule], tmp_path / "rules.yml", translator=_translator())
    # Four samples at the fresh page's value, then the value after one error, 15 s apart.
    series = f"{before} {before} {before} {before} {after}x8"
    doc = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": "db_connection_errors_total", "values": series}],
                "alert_rule_test": [
                    {"eval_time": "45s", "alertname": rule.name, "exp_alerts": []},
                    {
                        "eval_time": "1m15s",
                        "alertname": rule.name,
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": rule.severity, **dict(rule.labels)},
                                "exp_annotations": {
                                    **dict(rule.annotations),
                                    "eventmon_condition": rule.condition,
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(json.dumps(doc))
    result = _promtool_test_rules(promtool, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
