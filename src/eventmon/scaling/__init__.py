"""Auto-scaling and predictive scaling.

Submodules are imported on use; this package imports nothing heavy.
"""

from __future__ import annotations

from eventmon.scaling.autoscaler import AutoScalingManager, ScaleEvent, ScalingEventSink
from eventmon.scaling.backends import ScalingBackend, ScalingFailed
from eventmon.scaling.history import HistoryRecorder, HistoryStore, PrometheusHistory
from eventmon.scaling.policies import (
    ProportionalPolicy,
    Recommendation,
    ScalingPolicy,
    StepPolicy,
)
from eventmon.scaling.predictive import (
    EventSchedule,
    Forecaster,
    InMemoryEventSchedule,
    PredictiveScaler,
    ScheduledEvent,
    TrafficPrediction,
    predict_traffic_pattern,
)
from eventmon.scaling.sources import (
    LocalWorkersSource,
    MetricsSource,
    MetricsUnavailable,
    PrometheusSource,
)

__all__ = [
    "AutoScalingManager",
    "EventSchedule",
    "Forecaster",
    "HistoryRecorder",
    "HistoryStore",
    "InMemoryEventSchedule",
    "LocalWorkersSource",
    "MetricsSource",
    "MetricsUnavailable",
    "PredictiveScaler",
    "PrometheusHistory",
    "PrometheusSource",
    "ProportionalPolicy",
    "Recommendation",
    "ScaleEvent",
    "ScalingBackend",
    "ScalingEventSink",
    "ScalingFailed",
    "ScalingPolicy",
    "ScheduledEvent",
    "StepPolicy",
    "TrafficPrediction",
    "predict_traffic_pattern",
]
