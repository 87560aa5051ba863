"""Alerting constructors refuse wrong types and non-finite numbers at once, in one line."""

from __future__ import annotations

from typing import Any

import pytest

from eventmon import ConfigurationError, MetricsCollector
from eventmon.alerting import AlertEngine
from eventmon.alerting.notifiers import (
    AlertmanagerNotifier,
    DashboardFeed,
    EmailNotifier,
    NotificationDispatcher,
)

# Each is a mistake that today either passes silently (nan, inf, True, 2.5) or
# surfaces as a TypeError from a comparison ("15").
_BAD_SECONDS = ["15", 0, -1, float("nan"), float("inf"), True, None, 1e300]


@pytest.mark.parametrize("setting", ["interval", "repeat_interval"])
@pytest.mark.parametrize("value", _BAD_SECONDS, ids=repr)
def test_engine_refuses_bad_intervals(setting: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        AlertEngine(MetricsCollector(), [], **{setting: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{setting} must be a number of seconds > 0")
    assert repr(value) in message


def test_engine_keeps_good_intervals_as_floats() -> None:
    engine = AlertEngine(MetricsCollector(), [], interval=5, repeat_interval=60.5)
    assert (engine.interval, engine.repeat_interval) == (5.0, 60.5)
    assert type(engine.interval) is float


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"collector": "oops"}, "collector must be a MetricsCollector, got 'oops'"),
        ({"dispatcher": [1]}, "dispatcher must be a NotificationDispatcher"),
        ({"declare": "orders"}, "declare must be a list of names"),
        ({"clock": 5}, "clock must be a function"),
    ],
)
def test_engine_refuses_wrong_objects(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("collector", MetricsCollector())
    with pytest.raises(ConfigurationError, match=message):
        AlertEngine(rules=[], **kwargs)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("timeout", "10", "timeout must be a number of seconds > 0"),
        ("timeout", float("nan"), "timeout must be a number of seconds > 0"),
        ("timeout", float("inf"), "timeout must be a number of seconds > 0"),
        ("timeout", True, "timeout must be a number of seconds > 0"),
        ("timeout", 0, "timeout must be a number of seconds > 0"),
        ("retries", "3", "retries must be a whole number >= 0"),
        ("retries", 2.5, "retries must be a whole number >= 0"),
        ("retries", float("inf"), "retries must be a whole number >= 0"),
        ("retries", -1, "retries must be a whole number >= 0"),
        ("retries", True, "retries must be a whole number >= 0"),
        ("backoff", "1", "backoff must be a number of seconds between 0"),
        ("backoff", float("nan"), "backoff must be a number of seconds between 0"),
        ("max_backoff", -1, "max_backoff must be a number of seconds between 0"),
        ("max_backoff", "60", "max_backoff must be a number of seconds between 0"),
        ("max_retry_after", float("inf"), "max_retry_after must be a number of seconds"),
        ("max_retry_after", -5, "max_retry_after must be a number of seconds"),
        ("max_pending", 0, "max_pending must be a whole number >= 1"),
        ("max_pending", float("nan"), "max_pending must be a whole number >= 1"),
        ("max_pending", "1000", "max_pending must be a whole number >= 1"),
        ("on_error", "log", "on_error must be callable"),
    ],
)
def test_dispatcher_refuses_bad_settings(setting: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        NotificationDispatcher(**{setting: value})
    assert "\n" not in str(info.value)


def test_dispatcher_accepts_zero_backoff_and_int_seconds() -> None:
    d = NotificationDispatcher(timeout=2, retries=0, backoff=0, max_pending=1)
    assert (d.timeout, d.retries, d.backoff, d.max_pending) == (2.0, 0, 0.0, 1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # inf reached the dispatcher's re-send wait and killed the channel's thread
        (
            lambda: AlertmanagerNotifier("http://127.0.0.1:9093", resend_interval=float("inf")),
            "resend_interval must be a number of seconds > 0",
        ),
        (
            lambda: AlertmanagerNotifier("http://127.0.0.1:9093", resend_interval="60"),
            "resend_interval must be a number of seconds > 0",
        ),
        (lambda: DashboardFeed(maxlen=0), "maxlen must be a whole number >= 1, got 0"),
        (lambda: DashboardFeed(maxlen=2.5), "maxlen must be a whole number >= 1, got 2.5"),
        (
            lambda: EmailNotifier("localhost", "25", sender="a@b.c", recipients=["d@e.f"]),
            "port must be a whole number between 1 and 65,535, got the string '25'",
        ),
        (
            lambda: EmailNotifier("localhost", 70000, sender="a@b.c", recipients=["d@e.f"]),
            "port must be a whole number between 1 and 65,535, got 70000",
        ),
    ],
    ids=["resend-inf", "resend-str", "maxlen-0", "maxlen-float", "port-str", "port-range"],
)
def test_notifiers_refuse_bad_numbers(make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        make()
