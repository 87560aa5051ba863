"""A collector importable by dotted path, as settings.EVENTMON['collector'] allows."""

from __future__ import annotations

from eventmon import MetricsCollector

COLLECTOR = MetricsCollector(slow_hooks=())
