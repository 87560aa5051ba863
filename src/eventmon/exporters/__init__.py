"""Ways out of eventmon: Prometheus exposition, and the Exporter protocol.

``eventmon.exporters.otel`` (OpenTelemetry), ``eventmon.exporters.promclient``
(``prometheus_client`` registries) and ``eventmon.exporters.multiprocess`` (worker
aggregation) are imported on demand; nothing here imports a third-party library.
"""

from __future__ import annotations

from eventmon.exporters.base import Exporter, ExportSnapshot, PeriodicExportLoop, take_snapshot
from eventmon.exporters.json import JsonExporter, snapshot_json
from eventmon.exporters.prometheus import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    choose_format,
    render,
    render_families,
)

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "ExportSnapshot",
    "Exporter",
    "JsonExporter",
    "PeriodicExportLoop",
    "choose_format",
    "render",
    "render_families",
    "snapshot_json",
    "take_snapshot",
]
