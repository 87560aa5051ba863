"""The public surface: pinned names, and no heavy imports behind `import eventmon`."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import eventmon

# Every public module (no part of its name starts with "_") with its sorted __all__.
PUBLIC_MODULES = [
    (
        "eventmon.alerting",
        [
            "AlertEngine",
            "AlertNotice",
            "AlertRule",
            "AlertStatus",
            "BUILTIN_METRICS",
            "Condition",
            "MetricInfo",
            "NotificationDispatcher",
            "Notifier",
            "RuleMetrics",
            "ScalingEvent",
            "count_db_connection_error",
            "default_rules",
            "format_duration",
            "instrument_sqlalchemy",
            "load_rules",
            "parse",
            "parse_duration",
            "rules_from_data",
        ],
    ),
    ("eventmon.alerting.cli", ["register"]),
    ("eventmon.alerting.engine", ["AlertEngine", "AlertStatus", "EVALUATOR_GAUGE"]),
    (
        "eventmon.alerting.expr",
        [
            "And",
            "Compare",
            "Condition",
            "MetricInfo",
            "MetricRef",
            "Node",
            "Not",
            "Number",
            "Or",
            "parse",
        ],
    ),
    (
        "eventmon.alerting.metrics",
        [
            "BUILTIN_METRICS",
            "DB_CONNECTION_ERRORS",
            "RuleMetrics",
            "SCALE_OUT_GAUGE",
            "count_db_connection_error",
            "instrument_sqlalchemy",
        ],
    ),
    (
        "eventmon.alerting.notifiers",
        [
            "AlertNotice",
            "AlertmanagerNotifier",
            "ChannelStats",
            "DashboardFeed",
            "EmailNotifier",
            "Notification",
            "NotificationDispatcher",
            "Notifier",
            "RetryAfter",
            "ScalingEvent",
            "ScalingNotifiable",
            "SlackNotifier",
            "WebhookNotifier",
            "format_text",
            "notification_to_dict",
        ],
    ),
    ("eventmon.alerting.notifiers.alertmanager", ["AlertmanagerNotifier"]),
    (
        "eventmon.alerting.notifiers.base",
        [
            "AlertNotice",
            "Notification",
            "Notifier",
            "ScalingEvent",
            "ScalingNotifiable",
            "format_text",
        ],
    ),
    ("eventmon.alerting.notifiers.dashboard", ["DashboardFeed"]),
    (
        "eventmon.alerting.notifiers.dispatcher",
        ["ChannelStats", "NotificationDispatcher", "RetryAfter"],
    ),
    ("eventmon.alerting.notifiers.slack", ["SlackNotifier"]),
    ("eventmon.alerting.notifiers.smtp", ["EmailNotifier"]),
    ("eventmon.alerting.notifiers.webhook", ["WebhookNotifier", "notification_to_dict"]),
    ("eventmon.alerting.promrules", ["PromQLTranslator", "export_rules", "render_rule_file"]),
    (
        "eventmon.alerting.rules",
        [
            "AlertRule",
            "check_unique",
            "default_rules",
            "format_duration",
            "load_rules",
            "parse_duration",
            "rules_from_data",
        ],
    ),
    ("eventmon.apps", ["EventmonConfig", "check_settings"]),
    ("eventmon.asgi", ["EventmonMiddleware", "route_template"]),
    ("eventmon.cli", ["main"]),
    (
        "eventmon.collector",
        [
            "DEFAULT_QUANTILES",
            "MetricsCollector",
            "SeriesSnapshot",
            "default_collector",
            "set_default_collector",
        ],
    ),
    (
        "eventmon.core",
        [
            "Counter",
            "DEFAULT_BUCKETS",
            "DEFAULT_BUCKETS_MS",
            "HdrLayout",
            "LatencyHistogram",
            "SlidingWindow",
            "WindowStats",
        ],
    ),
    ("eventmon.core.aggregates", ["RequestAggregates", "SeriesSnapshot", "check_buckets"]),
    ("eventmon.core.counter", ["Counter"]),
    (
        "eventmon.core.exemplars",
        [
            "ExemplarStore",
            "current_trace",
            "exemplars_per_shown_bucket",
            "request_trace_id",
            "trace_id_from_traceparent",
        ],
    ),
    ("eventmon.core.faults", ["InternalErrors", "SlowRequests"]),
    ("eventmon.core.fold", ["COMPILED", "fold", "fold_python"]),
    (
        "eventmon.core.histogram",
        ["DEFAULT_BUCKETS", "DEFAULT_BUCKETS_MS", "HdrLayout", "LatencyHistogram"],
    ),
    ("eventmon.core.journal", ["Journals", "ThreadJournal"]),
    (
        "eventmon.core.process",
        [
            "ProcessStats",
            "ResourceLimits",
            "instance_limits",
            "read_limits",
            "rss_bytes",
            "total_memory_bytes",
        ],
    ),
    (
        "eventmon.core.registry",
        [
            "BUILTIN_FAMILIES",
            "KNOWN_METHODS",
            "LabelPolicy",
            "LabelSetLimit",
            "LabelSets",
            "OTHER_METHOD",
            "OVERFLOW",
            "UNMATCHED",
            "counter_help_text",
            "escape_label_value",
            "extra_label_pairs",
            "family_names",
            "request_labels",
            "reserved_name_problem",
            "validate_metric_name",
        ],
    ),
    (
        "eventmon.core.request_path",
        ["RequestPath", "check_journal_limit", "check_slow_threshold"],
    ),
    (
        "eventmon.core.sizes",
        ["REQUEST_SIZE", "RESPONSE_SIZE", "SIZE_BUCKETS", "SIZE_HELP", "SizeHistograms"],
    ),
    (
        "eventmon.core.user_histograms",
        ["HistogramSnapshot", "UserHistograms", "check_histogram_bounds"],
    ),
    ("eventmon.core.user_metrics", ["HistogramListener", "UserMetrics"]),
    ("eventmon.core.window", ["SlidingWindow", "WindowStats"]),
    (
        "eventmon.dashboard",
        ["API_VERSION", "Dashboard", "DashboardASGI", "DashboardWSGI", "Provider", "Response"],
    ),
    ("eventmon.dashboard.asgi", ["DashboardASGI"]),
    ("eventmon.dashboard.django", ["DashboardDjango"]),
    ("eventmon.dashboard.wsgi", ["DashboardWSGI"]),
    ("eventmon.demo", ["register", "run"]),
    ("eventmon.demo_data", []),
    ("eventmon.django", ["EventmonMiddleware", "metrics_view"]),
    ("eventmon.django_db", ["DatabaseMetrics", "install"]),
    (
        "eventmon.exporters",
        [
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
        ],
    ),
    (
        "eventmon.exporters.base",
        ["ExportSnapshot", "Exporter", "PeriodicExportLoop", "metrics_view", "take_snapshot"],
    ),
    ("eventmon.exporters.json", ["JsonExporter", "snapshot_json", "snapshot_to_json"]),
    (
        "eventmon.exporters.multiprocess",
        [
            "ENV_DIR",
            "ENV_INTERVAL",
            "MergedView",
            "MultiprocessConfig",
            "MultiprocessDamaged",
            "WorkerAggregator",
            "disable",
            "enable",
            "process_alive",
        ],
    ),
    ("eventmon.exporters.otel", ["OTelBridge", "SEMCONV_DURATION_BUCKETS"]),
    ("eventmon.exporters.promclient", ["EventmonCollector", "combine", "serve_alongside"]),
    (
        "eventmon.exporters.prometheus",
        [
            "CONTENT_TYPE_OPENMETRICS",
            "CONTENT_TYPE_TEXT",
            "MetricsServer",
            "MetricsView",
            "ProcessSample",
            "RESERVED_LABELS",
            "choose_format",
            "render",
            "render_families",
            "start_metrics_server",
        ],
    ),
    ("eventmon.flask", ["Eventmon"]),
    ("eventmon.hooks", ["SlowRequestDispatcher", "log_slow_request"]),
    (
        "eventmon.scaling",
        [
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
        ],
    ),
    (
        "eventmon.scaling.autoscaler",
        ["AutoScalingManager", "SCALE_OUT_OBJECTIVE", "ScaleEvent", "ScalingEventSink"],
    ),
    ("eventmon.scaling.backends", ["ScalingBackend", "ScalingFailed"]),
    ("eventmon.scaling.backends.base", ["ScalingBackend"]),
    ("eventmon.scaling.backends.gunicorn", ["GunicornBackend", "ScalingFailed"]),
    ("eventmon.scaling.backends.kubernetes", ["KubernetesBackend", "ScalingFailed"]),
    ("eventmon.scaling.backends.uvicorn", ["ScalingFailed", "UvicornBackend"]),
    ("eventmon.scaling.cli", ["register"]),
    ("eventmon.scaling.forecast_cli", ["HourlyHistory", "read_history", "register", "run"]),
    (
        "eventmon.scaling.forecaster",
        [
            "Forecaster",
            "HourlyForecast",
            "TrafficPrediction",
            "learn_capacity",
            "predict_traffic_pattern",
            "recommend_instances",
        ],
    ),
    (
        "eventmon.scaling.history",
        ["HistoryError", "HistoryRecorder", "HistorySource", "HistoryStore", "PrometheusHistory"],
    ),
    (
        "eventmon.scaling.policies",
        [
            "DEFAULT_MAX_INSTANCES",
            "DEFAULT_MIN_INSTANCES",
            "ProportionalPolicy",
            "Recommendation",
            "ScalingPolicy",
            "StepPolicy",
            "make_policy",
        ],
    ),
    (
        "eventmon.scaling.predictive",
        [
            "EventNotFoundError",
            "EventSchedule",
            "Forecaster",
            "HourlyForecast",
            "InMemoryEventSchedule",
            "PredictiveScaler",
            "ScheduledEvent",
            "TrafficPrediction",
            "learn_capacity",
            "predict_traffic_pattern",
            "recommend_instances",
        ],
    ),
    (
        "eventmon.scaling.schedule",
        ["EventNotFoundError", "EventSchedule", "InMemoryEventSchedule", "ScheduledEvent"],
    ),
    (
        "eventmon.scaling.sources",
        [
            "LocalWorkersSource",
            "MetricsSource",
            "MetricsUnavailable",
            "PrometheusSource",
            "worker_processes",
        ],
    ),
    ("eventmon.snapshot", ["RealtimeMetrics"]),
    ("eventmon.top", ["api_base", "fetch", "register", "render", "run"]),
    (
        "eventmon.types",
        [
            "ASGIApp",
            "Clock",
            "Message",
            "Receive",
            "Scope",
            "Send",
            "SlowRequestHook",
            "StartResponse",
            "WSGIApp",
            "WSGIEnviron",
        ],
    ),
    ("eventmon.wsgi", ["ENDPOINT_KEY", "EventmonMiddleware"]),
]


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


def _public_modules() -> list[str]:
    found = pkgutil.walk_packages(eventmon.__path__, "eventmon.")
    return sorted(m.name for m in found if not any(p.startswith("_") for p in m.name.split(".")))


def test_every_public_module_is_pinned() -> None:
    assert _public_modules() == [name for name, _ in PUBLIC_MODULES]


@pytest.mark.parametrize(("name", "expected"), PUBLIC_MODULES, ids=[n for n, _ in PUBLIC_MODULES])
def test_public_names_of_each_module_are_pinned(name: str, expected: list[str]) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == expected
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr}"


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
