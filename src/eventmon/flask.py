"""Flask extension: request metrics labelled by route template, in one line.

::

    from eventmon.flask import Eventmon

    Eventmon(app)                       # or: eventmon = Eventmon(); eventmon.init_app(app)

It wraps ``app.wsgi_app`` in :class:`eventmon.wsgi.EventmonMiddleware` (so
responses are timed until their last byte, streams included; a test client's
request is recorded as the rule in docs/frameworks.md says) and labels
each request with its ``url_rule.rule`` (``/events/<int:event_id>``, blueprint
prefixes included). Requests that match no rule share one label value.

Options come from the keyword arguments, else from ``app.config``:
``EVENTMON_METRICS_PATH`` (default ``"/metrics"``, ``None`` to not serve),
``EVENTMON_METRICS_TOKEN`` (a bearer token the metrics page requires),
``EVENTMON_EXCLUDE_PATHS``, ``EVENTMON_EXCLUDE_PATTERNS``, ``EVENTMON_EXCLUDE_METHODS``,
``EVENTMON_NAMESPACE``, ``EVENTMON_CONST_LABELS``, ``EVENTMON_GROUP_STATUS_CODES``,
``EVENTMON_SIZE_METRICS``, ``EVENTMON_HEADER_LABELS``, ``EVENTMON_LABEL_CALLBACKS``,
``EVENTMON_UNIT``, ``EVENTMON_COLLECTOR`` and
``EVENTMON_DASHBOARD`` (``True`` or an :class:`eventmon.dashboard.Dashboard`:
the built-in dashboard, served under its prefix and not recorded).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, request

from eventmon._adapter import resolve_collector
from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector
from eventmon.wsgi import ENDPOINT_KEY, EventmonMiddleware

__all__ = ["Eventmon"]

_UNSET: Any = object()
_CONFIG_KEYS = {
    "EVENTMON_METRICS_PATH": "metrics_path",
    "EVENTMON_METRICS_TOKEN": "metrics_token",
    "EVENTMON_EXCLUDE_PATHS": "exclude_paths",
    "EVENTMON_EXCLUDE_PATTERNS": "exclude_patterns",
    "EVENTMON_EXCLUDE_METHODS": "exclude_methods",
    "EVENTMON_NAMESPACE": "namespace",
    "EVENTMON_CONST_LABELS": "const_labels",
    "EVENTMON_GROUP_STATUS_CODES": "group_status_codes",
    "EVENTMON_SIZE_METRICS": "size_metrics",
    "EVENTMON_HEADER_LABELS": "header_labels",
    "EVENTMON_LABEL_CALLBACKS": "label_callbacks",
    "EVENTMON_UNIT": "unit",
    "EVENTMON_COLLECTOR": "collector",
    "EVENTMON_DASHBOARD": "dashboard",
}


def _rule_noting_context() -> Any:
    """A request context class that notes the matched rule's template in the environ.

    Flask documents ``RequestContext.match_request`` as the place to hook into
    matching; noting the template there costs one call per request (a
    ``before_request`` hook costs several) and creates no reference cycle.
    ``None`` on a Flask without that hook: a ``before_request`` hook is used then.
    """
    try:
        from flask.ctx import RequestContext
    except ImportError:  # pragma: no cover - a future Flask without request contexts
        return None
    base_match: Any = getattr(RequestContext, "match_request", None)
    if base_match is None:  # pragma: no cover
        return None

    class RuleNotingContext(RequestContext):
        def match_request(self) -> None:
            base_match(self)  # Flask's own, without a super() lookup
            request = self.request
            rule = request.url_rule
            if rule is not None:
                request.environ[ENDPOINT_KEY] = rule.rule

    return RuleNotingContext


_RuleNotingContext = _rule_noting_context()


def _note_endpoint() -> None:
    rule = request.url_rule
    if rule is not None:
        request.environ[ENDPOINT_KEY] = rule.rule


class Eventmon:
    """Instruments Flask apps; one instance may serve several apps (app factories).

    Args:
        app: the app to instrument now (or call :meth:`init_app` later).
        collector: where to record (default: ``EVENTMON_COLLECTOR``, else the
            process-wide collector).
        metrics_path: where to serve Prometheus metrics; ``None``: don't.
        metrics_token: if set, the metrics page answers 401 unless the request
            carries ``Authorization: Bearer <metrics_token>``.
        exclude_paths: paths not recorded; an entry ending in ``*`` is a prefix.
        exclude_patterns, exclude_methods: as :class:`eventmon.wsgi.EventmonMiddleware`'s.
        namespace, const_labels, group_status_codes: as the WSGI middleware's.
        size_metrics: as the WSGI middleware's (body size histograms).
        header_labels, label_callbacks: extra request labels, as the WSGI
            middleware's; a callback gets the WSGI environ (the Flask request is
            ``environ["werkzeug.request"]``).
        unit: ``"s"`` (default) or ``"ms"`` for the histogram's exposition.
        dashboard: ``True`` (one on this collector at ``/eventmon/``) or an
            :class:`eventmon.dashboard.Dashboard`; off by default.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        collector: MetricsCollector | None = None,
        metrics_path: str | None = _UNSET,
        metrics_token: str | None = _UNSET,
        exclude_paths: Iterable[str] = _UNSET,
        exclude_patterns: Iterable[str] = _UNSET,
        exclude_methods: Iterable[str] = _UNSET,
        namespace: str | None = _UNSET,
        const_labels: Mapping[str, str] | None = _UNSET,
        group_status_codes: bool = _UNSET,
        size_metrics: bool = _UNSET,
        header_labels: Mapping[str, str] | None = _UNSET,
        label_callbacks: Mapping[str, Callable[[dict[str, Any]], object]] | None = _UNSET,
        unit: str = _UNSET,
        dashboard: Any = _UNSET,
    ) -> None:
        self._given: dict[str, Any] = {
            k: v
            for k, v in (
                ("collector", collector),
                ("metrics_path", metrics_path),
                ("metrics_token", metrics_token),
                ("exclude_paths", exclude_paths),
                ("exclude_patterns", exclude_patterns),
                ("exclude_methods", exclude_methods),
                ("namespace", namespace),
                ("const_labels", const_labels),
                ("group_status_codes", group_status_codes),
                ("size_metrics", size_metrics),
                ("header_labels", header_labels),
                ("label_callbacks", label_callbacks),
                ("unit", unit),
                ("dashboard", dashboard),
            )
            if v is not _UNSET and not (k == "collector" and v is None)
        }
        if collector is not None:
            resolve_collector(collector)  # refused now, not when an app is registered
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` and note each request's route template."""
        if "eventmon" in app.extensions:
            raise ConfigurationError(
                f"eventmon is already registered on Flask app {app.name!r}: call"
                " Eventmon(app) or init_app(app) once per app"
            )
        options: dict[str, Any] = {}
        for key, name in _CONFIG_KEYS.items():
            if key in app.config:
                options[name] = app.config[key]
        options.update(self._given)
        name = "collector" if "collector" in self._given else "EVENTMON_COLLECTOR"
        collector = resolve_collector(options.pop("collector", None), name)
        # The app holds the middleware; the middleware reaches the app only through a
        # weak reference, so instrumenting adds no reference cycle and an app dropped
        # by its last owner is freed at once, as an uninstrumented one is.
        app_ref = weakref.ref(app)
        wrapped: Any
        if "wsgi_app" in vars(app):  # already wrapped by someone (that object holds the app)
            wrapped = app.wsgi_app
        else:
            flask_wsgi_app: Any = type(app).wsgi_app

            def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
                return flask_wsgi_app(app_ref(), environ, start_response)

        middleware = EventmonMiddleware(wrapped, collector=collector, **options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        context_class = _RuleNotingContext
        if context_class is not None and type(app).request_context is Flask.request_context:

            def request_context(environ: dict[str, Any]) -> Any:
                return context_class(app_ref(), environ)

            app.request_context = request_context  # type: ignore[method-assign]
        else:
            # The app customises its request context: note the rule from a hook instead.
            app.before_request_funcs.setdefault(None, []).insert(0, _note_endpoint)
        app.extensions["eventmon"] = middleware

    @staticmethod
    def collector_of(app: Flask) -> MetricsCollector:
        """The collector an instrumented app records into."""
        middleware: EventmonMiddleware = app.extensions["eventmon"]
        return middleware.collector
