"""What every framework adapter shares: validated options and exclusions.

Private: the adapters (``asgi``, ``wsgi``, ``flask``, ``django``) build one
:class:`AdapterOptions` at start-up and ask it per request whether a path is
excluded. The per-request labels are in :mod:`eventmon._adapter_labels`, the
metrics page in :mod:`eventmon._metrics_page`; their names are re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eventmon._adapter_labels import (
    LABEL_NAME,
    MAX_LABEL_VALUE,
    ExtraLabels,
    build_extra_labels,
    check_label_name,
)
from eventmon._auth import check_token
from eventmon._exceptions import ConfigurationError
from eventmon._metrics_page import MetricsPage, metrics_response
from eventmon.collector import MetricsCollector, default_collector
from eventmon.core.registry import KNOWN_METHODS

__all__ = [
    "MAX_LABEL_VALUE",
    "AdapterOptions",
    "ExtraLabels",
    "MetricsPage",
    "check_endpoint_resolver",
    "metrics_response",
    "resolve_collector",
    "resolve_dashboard",
]


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    """Where metrics are served and who may read them, which requests are not recorded,
    and how the page names and labels what it shows."""

    metrics_path: str | None = "/metrics"
    exclude_exact: frozenset[str] = frozenset()
    exclude_prefixes: tuple[str, ...] = ()
    unit: str = "s"
    metrics_token: bytes | None = None
    exclude_pattern: re.Pattern[str] | None = None
    """All ``exclude_patterns`` in one regex (searched), or ``None``."""
    exclude_methods: frozenset[str] = frozenset()
    namespace: str = ""
    const_labels: tuple[tuple[str, str], ...] = ()
    group_status_codes: bool = False
    size_metrics: bool = False
    extra_labels: ExtraLabels | None = None
    """``header_labels`` and ``label_callbacks``, or ``None`` when there are none."""

    @classmethod
    def build(
        cls,
        *,
        metrics_path: str | None = "/metrics",
        exclude_paths: Iterable[str] = (),
        unit: str = "s",
        metrics_token: str | None = None,
        exclude_patterns: Iterable[str] = (),
        exclude_methods: Iterable[str] = (),
        namespace: str | None = None,
        const_labels: Mapping[str, str] | None = None,
        group_status_codes: bool = False,
        size_metrics: bool = False,
        header_labels: Mapping[str, str] | None = None,
        label_callbacks: Mapping[str, Callable[[Any], object]] | None = None,
        source: str = "",
    ) -> AdapterOptions:
        """Validate user settings; ``source`` names where they came from, for messages."""
        where = f" (in {source})" if source else ""
        token = check_token(metrics_token, f"metrics_token{where}", header=True)
        if metrics_path is not None and (
            not isinstance(metrics_path, str) or not metrics_path.startswith("/")
        ):
            raise ConfigurationError(
                f"metrics_path must start with '/' or be None, got {metrics_path!r}{where}"
            )
        if unit not in ("s", "ms"):
            raise ConfigurationError(f"unit must be 's' or 'ms', got {unit!r}{where}")
        excluded = _strings(exclude_paths, "exclude_paths", where)
        for p in excluded:
            if not p.startswith("/"):
                raise ConfigurationError(
                    f"exclude_paths entries must start with '/', got {p!r}{where}"
                )
        for name, flag in (
            ("group_status_codes", group_status_codes),
            ("size_metrics", size_metrics),
        ):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{name} must be True or False, got {flag!r}{where}")
        consts = _const_labels(const_labels, where)
        return cls(
            metrics_path=metrics_path,
            exclude_exact=frozenset(p for p in excluded if not p.endswith("*")),
            exclude_prefixes=tuple(p[:-1] for p in excluded if p.endswith("*")),
            unit=unit,
            metrics_token=token,
            exclude_pattern=_patterns(exclude_patterns, where),
            exclude_methods=_methods(exclude_methods, where),
            namespace=_namespace(namespace, where),
            const_labels=consts,
            group_status_codes=group_status_codes,
            size_metrics=size_metrics,
            extra_labels=build_extra_labels(header_labels, label_callbacks, consts, where),
        )

    @property
    def filters(self) -> bool:
        """True if some requests are skipped by pattern or method (checked per request)."""
        return self.exclude_pattern is not None or bool(self.exclude_methods)

    def excluded(self, path: str, method: str = "") -> bool:
        """True if requests for ``path`` are not recorded (an entry ending in ``*`` is a prefix)."""
        return (
            path in self.exclude_exact
            or (bool(self.exclude_prefixes) and path.startswith(self.exclude_prefixes))
            or method in self.exclude_methods
            or (self.exclude_pattern is not None and self.exclude_pattern.search(path) is not None)
        )


def _strings(values: Iterable[str], name: str, where: str) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise ConfigurationError(
            f"{name} must be a list of strings, not one string{where}: write [{values!r}]"
        )
    try:
        out = list(values)
    except TypeError:
        raise ConfigurationError(
            f"{name} must be a list of strings, got {values!r}{where}"
        ) from None
    for v in out:
        if not isinstance(v, str):
            raise ConfigurationError(f"{name} entries must be strings, got {v!r}{where}")
    return out


def _patterns(patterns: Iterable[str], where: str) -> re.Pattern[str] | None:
    """One regex for every ``exclude_patterns`` entry, compiled now; a bad one is refused."""
    listed = _strings(patterns, "exclude_patterns", where)
    for p in listed:
        try:
            re.compile(p)
        except re.error as e:
            raise ConfigurationError(
                f"exclude_patterns entry {p!r} is not a valid regular expression: {e}{where}"
            ) from None
    if not listed:
        return None
    return re.compile("|".join(f"(?:{p})" for p in listed))


def _methods(methods: Iterable[str], where: str) -> frozenset[str]:
    out = frozenset(m.upper() for m in _strings(methods, "exclude_methods", where))
    unknown = sorted(out - KNOWN_METHODS)
    if unknown:
        raise ConfigurationError(
            f"exclude_methods has {unknown}, which are not HTTP methods;"
            f" use some of {sorted(KNOWN_METHODS)}{where}"
        )
    return out


def _namespace(namespace: str | None, where: str) -> str:
    if namespace is None or namespace == "":
        return ""
    if not isinstance(namespace, str) or not LABEL_NAME.match(namespace):
        raise ConfigurationError(
            f"namespace must be a Prometheus name prefix (letters, digits and '_', not"
            f" starting with a digit), e.g. 'tickets'; got {namespace!r}{where}"
        )
    return namespace


def _const_labels(labels: Mapping[str, str] | None, where: str) -> tuple[tuple[str, str], ...]:
    if not labels:
        return ()
    if not isinstance(labels, Mapping):
        raise ConfigurationError(
            f"const_labels must be a dict of label name to value, e.g."
            f" {{'app_name': 'tickets'}}; got {labels!r}{where}"
        )
    out = []
    for name, value in labels.items():
        check_label_name("const_labels", name, where)
        if not isinstance(value, str):
            raise ConfigurationError(
                f"const_labels: the value of {name!r} must be a string, got {value!r}{where}"
            )
        out.append((name, value))
    return tuple(out)


def check_endpoint_resolver(resolver: object) -> None:
    """Refuse an ``endpoint_resolver`` that cannot be called (at start-up, not per request)."""
    if resolver is not None and not callable(resolver):
        raise ConfigurationError(f"endpoint_resolver must be callable, got {resolver!r}")


def resolve_collector(collector: object, name: str = "collector") -> MetricsCollector:
    """The collector an adapter records into: ``collector``, or the process-wide one if ``None``.

    Anything but a :class:`~eventmon.MetricsCollector` is refused here, at start-up,
    rather than failing on the first request; ``name`` is the option's name for the message.
    """
    if collector is None:
        return default_collector()
    if not isinstance(collector, MetricsCollector):
        raise ConfigurationError(
            f"{name} must be an eventmon.MetricsCollector (or None for the process-wide"
            f" one), got {collector!r}"
        )
    return collector


def resolve_dashboard(dashboard: Any, collector: MetricsCollector) -> Any:
    """The :class:`~eventmon.dashboard.Dashboard` an adapter's ``dashboard=`` asks for.

    ``None``/``False``: off (returns ``None``); ``True``: one on ``collector`` at
    ``/eventmon/``; a ``Dashboard``: that one. Anything else is a configuration error.
    """
    if dashboard is None or dashboard is False:
        return None
    from eventmon.dashboard import Dashboard

    if dashboard is True:
        return Dashboard(collector)
    if not isinstance(dashboard, Dashboard):
        raise ConfigurationError(
            f"dashboard must be True, False, None or a Dashboard, got {dashboard!r}"
        )
    return dashboard
