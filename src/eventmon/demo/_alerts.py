"""The demo's alerting and scaling policy: the real engines when present."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventmon.demo._server import DemoServer

__all__ = ["demo_alerts", "scaling_policy"]


def scaling_policy() -> Any:
    """The step policy (up above 70 % CPU, down below 30 %), quick to react for a demo."""
    from eventmon.scaling.policies import StepPolicy  # noqa: PLC0415

    return StepPolicy(min_instances=2, max_instances=20, scale_down_stabilization=10.0)


def demo_alerts(demo: DemoServer) -> Any:
    return []
