"""The demo's alert rules and autoscaler, on the real engines, tuned to react in seconds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventmon.collector import MetricsCollector
from eventmon.demo._app import TICKETS

__all__ = ["demo_rules", "make_autoscaler", "make_engine", "scaling_view"]


def demo_rules(tickets: str = TICKETS) -> list[Any]:
    """The default rules' shape with ``for`` durations of seconds instead of minutes.

    ``tickets`` is the ticket purchase route's template as the framework labels it.
    """
    from eventmon.alerting.rules import AlertRule

    return [
        AlertRule(
            "high_error_rate",
            "error_rate > 3% and requests_per_second > 1",
            for_="4s",
            severity="critical",
            annotations={"summary": "More than 3 % of requests fail with a 5xx"},
        ),
        AlertRule(
            "high_p95_response_time",
            "p95_response_time > 300",
            for_="4s",
            severity="warning",
            annotations={"summary": "p95 response time above 300 ms (objective 200 ms)"},
        ),
        AlertRule(
            "slow_checkout",
            f'p95_response_time{{endpoint="{tickets}"}} > 500',
            for_="4s",
            severity="warning",
            annotations={"summary": "Ticket purchases take over 500 ms at p95"},
        ),
        AlertRule(
            "high_response_time",
            "avg_response_time > 1000",
            for_="10s",
            severity="warning",
            annotations={"summary": "Average response time above 1 s"},
        ),
    ]


def make_engine(collector: MetricsCollector, tickets: str = TICKETS) -> Any:
    """An alert engine evaluating the demo rules every second (no notifiers)."""
    from eventmon.alerting.engine import AlertEngine

    return AlertEngine(collector, demo_rules(tickets), interval=1.0)


def make_autoscaler(
    cluster: Any, collector: MetricsCollector, engine: Any, floor: Callable[[float], int | None]
) -> Any:
    """The step policy (+1 above 70 % CPU, −1 below 30 %) on the simulated fleet."""
    from eventmon.scaling import AutoScalingManager, StepPolicy

    policy = StepPolicy(min_instances=2, max_instances=20, scale_down_stabilization=10.0)
    return AutoScalingManager(
        cluster,
        cluster,
        policy=policy,
        interval=2.0,
        floor_provider=floor,
        notifiers=[engine] if engine is not None else [],
        collector=collector,
        history_size=50,
    )


def scaling_view(manager: Any, cluster: Any) -> dict[str, Any]:
    """What the dashboard shows: the count now, the bounds and recent events."""
    rec = manager.last_recommendation
    return {
        "instances": cluster.current(),
        "desired": rec.desired if rec is not None else None,
        "min": manager.min_instances,
        "max": manager.max_instances,
        "backend": cluster.name,
        "policy": "step 70/30 % CPU",
        "cpu": round(cluster.cpu_percent(), 1),
        "events": [e.to_dict() for e in list(manager.history)[-20:]],
    }
