from __future__ import annotations

from pathlib import Path

import pytest

from eventmon import ConfigurationError, RuleError
from eventmon.alerting.rules import (
    AlertRule,
    default_rules,
    format_duration,
    load_rules,
    parse_duration,
    rules_from_data,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("90", 90), (15, 15), ("2d", 172800),
     ("1m30s", 90), ("0", 0)],
)  # fmt: skip
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 min", "m5", "-1s", "5mm", "", "1.5.2s", True, None, -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(RuleError, match=r"duration|>= 0"):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("s", "text"), [(300, "5m"), (90, "1m30s"), (0.25, "250ms"), (0, "0s"),
                                          (3600 * 25, "1d1h")])  # fmt: skip
def test_format_duration(s: float, text: str) -> None:
    assert format_duration(s) == text
    assert parse_duration(text) == s


def test_rule_normalises_and_validates() -> None:
    r = AlertRule("x", "error_rate > 5%", for_="2m", keep_firing_for="30s", labels={"team": 1})
    assert r.for_seconds == 120
    assert r.keep_firing_seconds == 30
    assert r.labels == {"team": "1"}
    assert r.all_labels == {"severity": "warning", "team": "1"}
    with pytest.raises(RuleError, match="rule name"):
        AlertRule("bad name", "error_rate > 1")
    with pytest.raises(RuleError, match=r"rule 'x': .*at column 13"):
        AlertRule("x", "error_rate >")
    with pytest.raises(RuleError, match="rule 'x': 'for'"):
        AlertRule("x", "error_rate > 1", for_="soon")
    with pytest.raises(RuleError, match="alertname"):
        AlertRule("x", "error_rate > 1", labels={"alertname": "y"})
    assert isinstance(RuleError("x"), ConfigurationError)


def test_defaults_match_the_design() -> None:
    rules = {r.name: r for r in default_rules(capacity=True, scaling=True)}
    assert rules["high_response_time"].condition == "avg_response_time > 1000"
    assert rules["high_response_time"].for_seconds == 300
    assert rules["high_response_time"].severity == "warning"
    assert rules["high_error_rate"].condition == "error_rate > 0.05"
    assert (rules["high_error_rate"].for_seconds, rules["high_error_rate"].severity) == (
        120,
        "critical",
    )
    assert rules["database_connection_failure"].for_seconds == 0  # one error fires
    assert rules["high_p95_response_time"].condition == "p95_response_time > 1s"
    assert rules["low_throughput"].condition == "requests_per_second < 5000"
    assert rules["low_availability"].condition == "availability < 99.5%"
    assert rules["high_concurrent_users"].condition == "active_connections > 45000"
    assert rules["high_cpu_usage"].condition == "cpu_usage > 80%"
    assert rules["high_memory_usage"].condition == "memory_usage > 90%"
    assert rules["slow_scale_out"].condition == "scale_out_time > 5m"
    assert len(default_rules(performance=False)) == 3


def test_capacity_objectives_are_opt_in() -> None:
    capacity = {"low_throughput", "high_concurrent_users"}
    assert not capacity & {r.name for r in default_rules()}
    assert capacity <= {r.name for r in default_rules(capacity=True)}
    assert {r.name for r in default_rules(performance=False, capacity=True)} == capacity | {
        "high_response_time",
        "high_error_rate",
        "database_connection_failure",
    }


YAML = """
rules:
  - name: high_error_rate
    condition: error_rate > 5%
    for: 2m
    severity: critical
    labels: {team: web}
    annotations: {summary: "Too many errors"}
  - alert: slow_search
    expr: p95_response_time{endpoint="/search"} > 300ms
    for: 30s
    keep_firing_for: 1m
"""

TOML = """
[[rules]]
name = "high_error_rate"
condition = "error_rate > 5%"
for = "2m"
severity = "critical"
labels = { team = "web" }
annotations = { summary = "Too many errors" }

[[rules]]
alert = "slow_search"
expr = 'p95_response_time{endpoint="/search"} > 300ms'
for = "30s"
keep_firing_for = "1m"
"""


@pytest.mark.parametrize(("suffix", "text"), [(".yaml", YAML), (".toml", TOML)])
def test_load_yaml_and_toml_give_the_same_rules(tmp_path: Path, suffix: str, text: str) -> None:
    p = tmp_path / f"rules{suffix}"
    p.write_text(text)
    rules = load_rules(p)
    assert [r.name for r in rules] == ["high_error_rate", "slow_search"]
    assert rules[0] == AlertRule(
        "high_error_rate",
        "error_rate > 5%",
        for_=120,
        severity="critical",
        labels={"team": "web"},
        annotations={"summary": "Too many errors"},
    )
    assert rules[1].keep_firing_seconds == 60
    assert rules[1].severity == "warning"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - name: a\n    condition: error_rate >\n", r"rules.yaml: rule 'a': .*column"),
        (
            "rules:\n  - name: a\n    condition: error_rate > 1\n    fro: 5m\n",
            r"unknown key\(s\) \['fro'\]",
        ),
        ("rules:\n  - name: a\n    condition: error_rate > 1\n    for: 5 min\n", "not a duration"),
        ("rules:\n  - condition: error_rate > 1\n", "needs both 'name' and 'condition'"),
        ("groups: []\n", "unknown top-level key"),
        ("rules: [\n", "invalid YAML"),
        (
            "rules:\n  - {name: a, condition: a > 1}\n  - {name: a, condition: a > 1}\n",
            "used twice",
        ),
    ],
)
def test_bad_files_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(text)
    with pytest.raises(RuleError, match=message):
        load_rules(p)


def test_bad_toml_and_suffix(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text("[[rules]\n")
    with pytest.raises(RuleError, match="invalid TOML"):
        load_rules(p)
    q = tmp_path / "r.json"
    q.write_text("{}")
    with pytest.raises(RuleError, match=r"\.yaml, \.yml or \.toml"):
        load_rules(q)


def test_rules_from_data_accepts_a_bare_list() -> None:
    (r,) = rules_from_data([{"name": "a", "condition": "error_rate > 1"}])
    assert r.name == "a"
