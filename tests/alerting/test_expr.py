from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventmon import RuleError
from eventmon.alerting.expr import And, Compare, MetricRef, Not, Number, Or, parse
from eventmon.alerting.metrics import BUILTIN_METRICS


def bound(text: str):
    return parse(text).bind(BUILTIN_METRICS)


def test_precedence_not_and_or() -> None:
    node = parse("error_rate > 1 or not cpu_usage > 2 and memory_usage < 3").node
    assert isinstance(node, Or)
    assert isinstance(node.items[0], Compare)
    right = node.items[1]
    assert isinstance(right, And)
    assert isinstance(right.items[0], Not)


def test_parentheses_group() -> None:
    node = parse("(error_rate > 1 or cpu_usage > 2) and memory_usage < 3").node
    assert isinstance(node, And)
    assert isinstance(node.items[0], Or)


def test_keywords_case_insensitive_and_numbers() -> None:
    c = parse("error_rate > 1_000 AND cpu_usage >= .5 Or memory_usage != 1e2")
    assert isinstance(c.node, Or)
    nums = list(_numbers(c.node))
    assert [n.value for n in nums] == [1000.0, 0.5, 100.0]


def _numbers(node):
    if isinstance(node, Compare):
        yield from (x for x in (node.left, node.right) if isinstance(x, Number))
    elif isinstance(node, Not):
        yield from _numbers(node.item)
    else:
        for i in node.items:
            yield from _numbers(i)


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("avg_response_time > 1s", {"avg_response_time": 1000.0}, False),
        ("avg_response_time > 1s", {"avg_response_time": 1000.5}, True),
        ("avg_response_time >= 200ms", {"avg_response_time": 200.0}, True),
        ("error_rate > 5%", {"error_rate": 0.051}, True),
        ("error_rate > 5%", {"error_rate": 0.049}, False),
        ("cpu_usage > 80%", {"cpu_usage": 80.5}, True),
        ("cpu_usage > 80%", {"cpu_usage": 79.0}, False),
        ("scale_out_time > 5m", {"scale_out_time": 301.0}, True),
        ("availability < 99.5%", {"availability": 0.99}, True),
        ("not error_rate > 5%", {"error_rate": 0.5}, False),
        ("1 < requests_per_second", {"requests_per_second": 2.0}, True),
        ("error_rate == 0 and requests_per_second != 0", {"error_rate": 0.0,
                                                          "requests_per_second": 3.0}, True),
        ("p95_response_time > p50_response_time", {"p95_response_time": 5.0,
                                                   "p50_response_time": 1.0}, True),
    ],
)  # fmt: skip
def test_evaluate_with_units(text: str, values: dict[str, float], expected: bool) -> None:
    assert bound(text).evaluate(values) is expected


def test_missing_value_is_nan_and_false() -> None:
    c = bound("error_rate > 5%")
    assert c.evaluate({}) is False
    assert c.evaluate({"error_rate": math.nan}) is False


def test_label_selector_key_and_labels_checked() -> None:
    c = bound('p95_response_time{endpoint="/events/{id}"} > 200ms')
    (m,) = c.metrics
    assert isinstance(m, MetricRef)
    assert m.key == 'p95_response_time{endpoint="/events/{id}"}'
    assert c.evaluate({m.key: 201.0}) is True
    with pytest.raises(RuleError, match="has no label 'route'"):
        bound('p95_response_time{route="/x"} > 1')
    with pytest.raises(RuleError, match="has no label"):
        bound('error_rate{endpoint="/x"} > 1')


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("", "empty condition", 1),
        ("error_rate >", "expected a metric name or a number", 13),
        ("error_rate >> 3", "expected a metric name or a number", 13),
        ("(error_rate > 1", "expected ')' to close the '(' at column 1", 16),
        ("error_rate > 5x", "unknown unit 'x'", 15),
        ("1 > 2", "needs a metric on one side", 1),
        ("error_rate > 1 cpu_usage", "expected 'and', 'or'", 16),
        ("error_rate", "expected a comparison", 11),
        ("error_rate $ 1", "unexpected character '$'", 12),
        ("error_rate > 1 and", "expected a metric name or a number", 19),
        ("p95_response_time{endpoint=x} > 1", "expected a quoted label value", 28),
    ],
)
def test_syntax_errors_point_at_the_column(text: str, message: str, column: int) -> None:
    with pytest.raises(RuleError) as info:
        parse(text)
    msg = str(info.value)
    assert message in msg
    assert f"at column {column}:" in msg
    caret_line = msg.splitlines()[-1]
    assert caret_line.index("^") - 4 == column - 1


def test_unknown_metric_suggests_a_name() -> None:
    with pytest.raises(RuleError, match=r"unknown metric 'eror_rate'; did you mean 'error_rate'"):
        bound("eror_rate > 5%")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("error_rate > 2s", "'2s' is a duration but 'error_rate' is a share"),
        ("avg_response_time > 5%", "'5%' is a percentage but 'avg_response_time' is milliseconds"),
        ("requests_per_second > 1s", "is a duration but 'requests_per_second' is a plain number"),
        ("error_rate > avg_response_time", "cannot compare a ratio with a ms"),
    ],
)
def test_unit_mismatch(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(")):
        bound(text)


def test_deep_nesting_is_a_rule_error_not_recursion_error() -> None:
    with pytest.raises(RuleError, match="nested too deeply"):
        parse("(" * 500 + "error_rate > 1" + ")" * 500)
    with pytest.raises(RuleError, match="nested too deeply"):
        parse("not " * 500 + "error_rate > 1")


def test_never_evaluates_python() -> None:
    with pytest.raises(RuleError):
        parse("__import__('os').system('true') > 1")


_WORDS = ["error_rate", "cpu_usage", "p95_response_time", "and", "or", "not", "ms", "s",
          "1e9", "endpoint", "1e999", "\\", "\n", "é"]  # fmt: skip
_ALPHABET = st.sampled_from([*"()<>=!{},'\"%._ \t0123456789", *_WORDS])


@settings(max_examples=1500, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_fuzz_tokens_only_rule_errors(text: str) -> None:
    message = ""
    try:
        c = parse(text)
        c = c.bind(BUILTIN_METRICS)
        c.evaluate({m.key: 1.0 for m in c.metrics})
    except RuleError as e:
        message = str(e)
    assert not message or "at column" in message


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_any_text_only_rule_errors(text: str) -> None:
    with contextlib.suppress(RuleError):
        parse(text).bind(BUILTIN_METRICS)
