"""Ways out of eventmon: Prometheus exposition, and the Exporter protocol."""

from __future__ import annotations

from eventmon.exporters.prometheus import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    choose_format,
    render,
)

__all__ = ["CONTENT_TYPE_OPENMETRICS", "CONTENT_TYPE_TEXT", "choose_format", "render"]
