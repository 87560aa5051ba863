"""The public surface: pinned names, and no heavy imports behind `import eventmon`."""

from __future__ import annotations

import subprocess
import sys

import eventmon


def test_public_names_are_pinned() -> None:
    assert sorted(eventmon.__all__) == [
        "AcceleratorWarning",
        "ConfigurationError",
        "DEFAULT_BUCKETS",
        "DEFAULT_BUCKETS_MS",
        "EventmonError",
        "LatencyHistogram",
        "MetricsCollector",
        "RealtimeMetrics",
        "RuleError",
        "SeriesSnapshot",
        "__version__",
        "default_collector",
        "getRealtimeMetrics",
        "get_realtime_metrics",
        "increment_counter",
        "set_default_collector",
    ]
    for name in eventmon.__all__:
        assert hasattr(eventmon, name), name


def test_import_eventmon_pulls_in_no_framework_or_exporter_library() -> None:
    code = (
        "import sys, eventmon, eventmon.asgi, eventmon.collector;"
        "heavy = ('starlette', 'fastapi', 'flask', 'django', 'prometheus_client',"
        " 'opentelemetry', 'hdrh', 'yaml', 'kubernetes', 'psutil');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exception_tree() -> None:
    assert issubclass(eventmon.RuleError, eventmon.ConfigurationError)
    assert issubclass(eventmon.ConfigurationError, eventmon.EventmonError)
    assert issubclass(eventmon.ConfigurationError, ValueError)


def test_the_accelerator_warning_is_a_runtime_warning() -> None:
    assert issubclass(eventmon.AcceleratorWarning, RuntimeWarning)
