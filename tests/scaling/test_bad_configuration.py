"""Scaling constructors refuse strings, bools, NaN/inf and out-of-range numbers at once.

Before, many of these were accepted (``nan``, ``inf``, ``True``, a negative
refresh) or failed with a TypeError from a comparison (``"15"``); an infinite
or huge interval killed the background thread at its first wait.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli_run import one_line_error
from eventmon import ConfigurationError, MetricsCollector
from eventmon.scaling.autoscaler import AutoScalingManager
from eventmon.scaling.backends.kubernetes import KubernetesBackend
from eventmon.scaling.history import HistoryRecorder, HistoryStore, PrometheusHistory
from eventmon.scaling.policies import ProportionalPolicy, StepPolicy
from eventmon.scaling.predictive import Forecaster, InMemoryEventSchedule, PredictiveScaler
from eventmon.scaling.sources import PrometheusSource

NAN, INF = float("nan"), float("inf")


class _Backend:
    name = "fake"

    def current(self) -> int:
        return 2

    def scale_to(self, n: int) -> bool:
        return True


class _Source:
    def read(self) -> dict[str, float]:
        return {"cpu_percent": 50.0}


def _manager(**kw: Any) -> object:
    return AutoScalingManager(_Backend(), _Source(), **kw)


def _scaler(**kw: Any) -> object:
    return PredictiveScaler(InMemoryEventSchedule(), **kw)


def _k8s(**kw: Any) -> object:
    return KubernetesBackend("web", api=object(), **kw)


def _recorder(tmp: Path, **kw: Any) -> object:
    return HistoryRecorder(HistoryStore(tmp / "h.db"), MetricsCollector(), **kw)


# (make(tmp_path, **setting), setting, a bad value, the start of the message)
CASES: list[tuple[Callable[..., object], str, object, str]] = [
    (lambda t, **k: _manager(**k), "interval", True, "interval must be a number of seconds > 0"),
    (lambda t, **k: _manager(**k), "interval", 1e300, "interval must be a number of seconds > 0"),
    (lambda t, **k: _manager(**k), "history_size", True, "history_size must be a whole number"),
    (lambda t, **k: _manager(**k), "scale_out_objective", INF, "scale_out_objective must be"),
    (lambda t, **k: _manager(**k), "scale_out_objective", True, "scale_out_objective must be"),
    (
        lambda t, **k: _manager(policy=StepPolicy(), **k),
        "min_instances",
        "2",
        "min_instances must be a whole number >= 1, got the string '2'",
    ),
    (lambda t, **k: _manager(policy=StepPolicy(), **k), "min_instances", NAN, "min_instances"),
    (lambda t, **k: _manager(**k), "collector", "oops", "collector must be a MetricsCollector"),
    (lambda t, **k: StepPolicy(**k), "scale_down_stabilization", INF, "scale_down_stabilization"),
    (lambda t, **k: StepPolicy(**k), "scale_up_cooldown", 1e300, "scale_up_cooldown must be"),
    (lambda t, **k: ProportionalPolicy(**k), "target", "70", "target must be a number > 0"),
    (lambda t, **k: Forecaster(**k), "week_alpha", "0.4", "week_alpha must be a number > 0"),
    (lambda t, **k: Forecaster(**k), "week_alpha", True, "week_alpha must be a number > 0"),
    (lambda t, **k: Forecaster(**k), "week_prior", NAN, "week_prior must be a number >= 0"),
    (lambda t, **k: Forecaster(**k), "clip", INF, "clip must be a number > 0"),
    (lambda t, **k: Forecaster(**k), "min_hours", 2.5, "min_hours must be a whole number >= 1"),
    (lambda t, **k: Forecaster(**k), "residual_decay", "0.5", "residual_decay must be a number"),
    (lambda t, **k: _scaler(**k), "divisor", NAN, "divisor must be a number of registrations > 0"),
    (lambda t, **k: _scaler(**k), "lead_time", INF, "lead_time must be a number of seconds"),
    (lambda t, **k: _scaler(**k), "lead_time", "900", "lead_time must be a number of seconds"),
    (lambda t, **k: _scaler(**k), "max_instances", INF, "max_instances must be a whole number"),
    (lambda t, **k: _scaler(**k), "capacity_per_instance", -1, "capacity_per_instance must be"),
    (lambda t, **k: _scaler(**k), "capacity_per_instance", "9", "capacity_per_instance must be"),
    (lambda t, **k: _scaler(**k), "headroom", -1, "headroom must be a number between 0 and 100"),
    (lambda t, **k: _scaler(**k), "history_days", 0, "history_days must be a whole number >= 1"),
    (lambda t, **k: _scaler(**k), "refresh", -1, "refresh must be a number of seconds > 0"),
    (lambda t, **k: _scaler(**k), "refresh", NAN, "refresh must be a number of seconds > 0"),
    (lambda t, **k: _scaler(**k), "collector", "oops", "collector must be a MetricsCollector"),
    (lambda t, **k: HistoryStore(t / "a.db", **k), "retention", NAN, "retention must be"),
    (lambda t, **k: HistoryStore(t / "b.db", **k), "busy_timeout", -1, "busy_timeout must be"),
    (_recorder, "interval", NAN, "interval must be a number of seconds"),
    (_recorder, "interval", "60", "interval must be a number of seconds"),
    (
        lambda t, **k: PrometheusSource("http://127.0.0.1:9", "up", **k),
        "timeout",
        INF,
        "timeout must be a number of seconds > 0",
    ),
    (
        lambda t, **k: PrometheusHistory("http://127.0.0.1:9", **k),
        "timeout",
        "10",
        "timeout must be a number of seconds > 0",
    ),
    (lambda t, **k: _k8s(**k), "ready_timeout", INF, "ready_timeout must be a number of seconds"),
    (lambda t, **k: _k8s(**k), "poll_interval", -1, "poll_interval must be a number of seconds"),
    (lambda t, **k: _k8s(**k), "request_timeout", "10", "request_timeout must be a number"),
]


@pytest.mark.parametrize(
    ("make", "setting", "value", "message"),
    CASES,
    ids=[f"{i}-{c[1]}={c[2]!r}" for i, c in enumerate(CASES)],
)
def test_scaling_constructors_refuse_bad_numbers(
    tmp_path: Path, make: Callable[..., object], setting: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make(tmp_path, **{setting: value})
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_min_above_max_names_both() -> None:
    with pytest.raises(ConfigurationError, match=r"max_instances \(2\) must be at least min"):
        _scaler(min_instances=5, max_instances=2)
    with pytest.raises(ConfigurationError, match=r"max_instances \(2\) must be at least min"):
        StepPolicy(min_instances=5, max_instances=2)


def test_good_values_are_kept_as_numbers() -> None:
    scaler = _scaler(divisor=500, lead_time=60, refresh=30)
    assert (scaler.divisor, scaler.lead_time, scaler.refresh) == (500.0, 60.0, 30.0)  # type: ignore[attr-defined]
    assert StepPolicy(step=2, scale_up_cooldown=0).step == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--interval", "inf"], "argument --interval: must be a number of seconds > 0"),
        (["--min", "0"], "argument --min: must be a whole number >= 1, got '0'"),
        (["--up", "nan"], "argument --up: must be a number >= 0, got 'nan'"),
        (["--min", "5", "--max", "2"], "max_instances (2) must be at least min_instances (5)"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_autoscale_command_refuses_bad_numbers(args: list[str], expected: str) -> None:
    line = one_line_error("autoscale", "--backend", "gunicorn", "--pid", "1", "--once", *args)
    assert expected in line
