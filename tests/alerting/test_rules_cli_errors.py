"""``eventmon rules check/export`` on bad input: exit 2 and one line that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_run import eventmon, one_line_error

RULE = "rules:\n  - name: ok\n    condition: error_rate > 0.05\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # name: [a, b] used to end in "TypeError: unhashable type: 'list'"
        (
            "rules:\n  - name: [a, b]\n    condition: error_rate > 1\n",
            "rule #1: name must be a string such as 'high_error_rate', got ['a', 'b']",
        ),
        (
            "rules:\n  - name: {a: 1}\n    condition: error_rate > 1\n",
            "rule #1: name must be a string",
        ),
        (
            RULE + "    annotations: {summary: [1, 2]}\n",
            "rule 'ok': annotations: 'summary' must be a string (quote it), got [1, 2]",
        ),
        (RULE + "    labels: {team: yes}\n", "rule 'ok': labels: 'team' must be a string"),
        (RULE + "    labels: {team: }\n", "rule 'ok': labels: 'team' must be a string"),
        (RULE + "    severity: [1]\n", "severity must be a word such as 'warning'"),
        (RULE + "    for: [1]\n", "'for' must be a duration like '5m', got [1]"),
        ("rules:\n  - name: ok\n    condition: [1]\n", "a condition must be a string, got list"),
        (RULE + "    1: x\n    fro: 2\n", "unknown key(s) ['1', 'fro']"),
        ("rules:\n  - a\n  - b: [\n", "rules.yaml:4:1: invalid YAML: expected the node content"),
        (
            "rules:\n  - name: ok\n    condition: errro_rate > 1\n",
            "unknown metric 'errro_rate'; did you mean 'error_rate'? at column 1: errro_rate > 1",
        ),
    ],
    ids=[
        "name-list",
        "name-mapping",
        "annotation-list",
        "label-yes",
        "label-empty",
        "severity-list",
        "for-list",
        "condition-list",
        "unknown-keys-mixed-types",
        "invalid-yaml",
        "typo-metric",
    ],
)
def test_rules_check_refuses_wrong_types_in_one_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    assert expected in one_line_error("rules", "check", str(path))


def test_rules_check_on_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(RULE.encode() + "    annotations: {summary: café}\n".encode("latin-1"))
    line = one_line_error("rules", "check", str(path))
    assert "rules.yaml: not UTF-8 text (byte 0xe9" in line
    assert "save the rule file as UTF-8" in line


def test_rules_check_accepts_numbers_as_label_values(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULE + "    labels: {tier: 1}\n", encoding="utf-8")
    result = eventmon("rules", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 rule(s) OK" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--cpu-count", "-4"], "argument --cpu-count: must be a whole number >= 1, got '-4'"),
        (["--cpu-count", "2.5"], "argument --cpu-count: must be a whole number >= 1"),
        (["--memory-bytes", "0"], "argument --memory-bytes: must be a whole number >= 1"),
        (["--buckets", "0.5,0.1"], "bounds must be strictly increasing; 0.1 comes after 0.5"),
        (["--buckets", "0.1,0.1,0.5"], "bounds must be strictly increasing; 0.1 repeats"),
        (["--buckets", "0.1,nan"], "each bound must be a number of seconds > 0, got nan"),
        (["--buckets", "0,0.1"], "each bound must be a number of seconds > 0, got 0"),
        (["--buckets", ","], "argument --buckets: give at least one bound"),
        (["--slow-threshold", "-1"], "argument --slow-threshold: must be a number of seconds > 0"),
        (["--window", "0s"], "argument --window: the window must be longer than 0s"),
        (["--group", ""], "argument --group: the group needs a name"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_rules_export_refuses_bad_options(args: list[str], expected: str) -> None:
    line = one_line_error("rules", "export", *args)
    assert line.startswith("eventmon rules export: error: ")
    assert expected in line
    assert "eventmon rules export --help" in line


def test_rules_export_rejects_what_rules_check_rejects(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: typo\n    condition: errro_rate > 1\n", encoding="utf-8")
    check = one_line_error("rules", "check", str(path))
    export = one_line_error("rules", "export", "--rules", str(path))
    expected = "rule 'typo': unknown metric 'errro_rate'; did you mean 'error_rate'?"
    assert expected in check
    assert expected in export


def test_rules_export_takes_declared_counters_and_gauges(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {name: orders, condition: orders > 1}\n"
        "  - {name: queue, condition: queue_depth > 10}\n",
        encoding="utf-8",
    )
    assert "unknown metric 'orders'" in one_line_error("rules", "export", "--rules", str(path))
    result = eventmon(
        "rules", "export", "--rules", str(path), "--declare", "orders", "--gauge", "queue_depth"
    )
    assert result.returncode == 0, result.stderr
    assert "sum(increase(orders_total[1m])) > 1" in result.stdout
    assert "max(queue_depth) > 10" in result.stdout
