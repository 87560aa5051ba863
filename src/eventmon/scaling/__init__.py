"""Auto-scaling and predictive scaling.

Submodules are imported on use; this package imports nothing heavy.
"""

from __future__ import annotations

from eventmon.scaling.history import HistoryRecorder, HistoryStore, PrometheusHistory
from eventmon.scaling.predictive import (
    EventSchedule,
    Forecaster,
    InMemoryEventSchedule,
    PredictiveScaler,
    ScheduledEvent,
    TrafficPrediction,
    predict_traffic_pattern,
)

__all__ = [
    "EventSchedule",
    "Forecaster",
    "HistoryRecorder",
    "HistoryStore",
    "InMemoryEventSchedule",
    "PredictiveScaler",
    "PrometheusHistory",
    "ScheduledEvent",
    "TrafficPrediction",
    "predict_traffic_pattern",
]
