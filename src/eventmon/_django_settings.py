"""``settings.EVENTMON`` for the Django adapter: read, checked, and turned into a
collector, adapter options and the dashboard.

Private: used by :mod:`eventmon.django` (when the middleware loads and by
:func:`~eventmon.django.metrics_view`) and by :mod:`eventmon.apps` (the system
checks). Reading the settings touches no database.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from eventmon._adapter import AdapterOptions, resolve_collector
from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector

__all__ = ["KEYS", "dashboard_from_settings", "raw_settings", "read_settings"]

# database_metrics is read by the eventmon app (eventmon.apps), not the middleware.
KEYS = frozenset(
    {
        "collector",
        "metrics_path",
        "metrics_token",
        "exclude_paths",
        "exclude_patterns",
        "exclude_methods",
        "namespace",
        "const_labels",
        "group_status_codes",
        "size_metrics",
        "header_labels",
        "label_callbacks",
        "unit",
        "dashboard",
        "dashboard_token",
        "database_metrics",
    }
)


def raw_settings() -> dict[str, Any]:
    """``settings.EVENTMON`` as given (``{}`` if unset); anything but a dict is refused."""
    raw = getattr(settings, "EVENTMON", None) or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"settings.EVENTMON must be a dict, got {type(raw).__name__}")
    return raw


def read_settings() -> tuple[MetricsCollector, AdapterOptions]:
    """The collector and the checked options ``settings.EVENTMON`` asks for."""
    raw = raw_settings()
    unknown = set(raw) - KEYS
    if unknown:
        raise ConfigurationError(
            f"settings.EVENTMON has unknown keys {sorted(unknown)}; valid keys: {sorted(KEYS)}"
        )
    collector = raw.get("collector")
    if isinstance(collector, str):
        try:
            collector = import_string(collector)
        except ImportError as e:
            raise ConfigurationError(f"settings.EVENTMON['collector']: {e}") from e
    collector = resolve_collector(collector, "settings.EVENTMON['collector']")
    options = AdapterOptions.build(
        metrics_path=raw.get("metrics_path", "/metrics"),
        metrics_token=raw.get("metrics_token"),
        exclude_paths=raw.get("exclude_paths", ()),
        exclude_patterns=raw.get("exclude_patterns", ()),
        exclude_methods=raw.get("exclude_methods", ()),
        namespace=raw.get("namespace"),
        const_labels=raw.get("const_labels"),
        group_status_codes=raw.get("group_status_codes", False),
        size_metrics=raw.get("size_metrics", False),
        header_labels=raw.get("header_labels"),
        label_callbacks=raw.get("label_callbacks"),
        unit=raw.get("unit", "s"),
        source="settings.EVENTMON",
    )
    return collector, options


def dashboard_from_settings(collector: MetricsCollector) -> Any:
    """The dashboard server settings ask for, or ``None`` (off by default)."""
    raw = raw_settings()
    value = raw.get("dashboard")
    token = raw.get("dashboard_token")
    if value is None or value is False:
        if token is not None:
            raise ConfigurationError(
                "settings.EVENTMON['dashboard_token'] is set but the dashboard is off:"
                " add 'dashboard': True"
            )
        return None
    from eventmon.dashboard import Dashboard
    from eventmon.dashboard.django import DashboardDjango

    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as e:
            raise ConfigurationError(f"settings.EVENTMON['dashboard']: {e}") from e
    if value is True:
        value = Dashboard(collector, token=token)
    elif not isinstance(value, Dashboard):
        raise ConfigurationError(
            "settings.EVENTMON['dashboard'] must be True, False, an eventmon.dashboard.Dashboard"
            f" or its dotted path, got {value!r}"
        )
    elif token is not None:
        raise ConfigurationError(
            "settings.EVENTMON['dashboard_token'] only goes with 'dashboard': True;"
            " give your Dashboard its token=... instead"
        )
    return DashboardDjango(value)
