"""What every framework adapter shares: validated options, exclusions, the metrics page.

Private: the adapters (``wsgi``, ``flask``, ``django``) build one
:class:`AdapterOptions` at start-up, ask it per request whether a path is
excluded, and hand ``/metrics`` requests to :func:`metrics_response`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from eventmon._auth import bearer_credentials, check_token, token_matches
from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector, default_collector
from eventmon.core.registry import KNOWN_METHODS
from eventmon.exporters.prometheus import RESERVED_LABELS, choose_format, render

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
            extra_labels=_extra_labels(header_labels, label_callbacks, consts, where),
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
    if not isinstance(namespace, str) or not _NAME.match(namespace):
        raise ConfigurationError(
            f"namespace must be a Prometheus name prefix (letters, digits and '_', not"
            f" starting with a digit), e.g. 'tickets'; got {namespace!r}{where}"
        )
    return namespace


_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


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
        if not isinstance(name, str) or not _NAME.match(name) or name.startswith("__"):
            raise ConfigurationError(
                f"const_labels: {name!r} is not a valid label name (letters, digits and '_',"
                f" not starting with a digit or '__'){where}"
            )
        if name in RESERVED_LABELS:
            raise ConfigurationError(
                f"const_labels: {name!r} is a label eventmon's own series already have;"
                f" choose another name{where}"
            )
        if not isinstance(value, str):
            raise ConfigurationError(
                f"const_labels: the value of {name!r} must be a string, got {value!r}{where}"
            )
        out.append((name, value))
    return tuple(out)


#: Longest extra label value kept (characters); a longer one is cut to this.
MAX_LABEL_VALUE = 100

_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (a token)


class ExtraLabels:
    """Per-request labels besides method, endpoint and status: from headers and callbacks.

    Built once at start-up by :meth:`AdapterOptions.build`. :attr:`names` are sorted,
    so two adapters given the same names in another order record the same series.
    An adapter calls :meth:`key` when a request ends; it returns the endpoint to
    record, ``(template, *values)``. A missing header gives ``""``; a callback's
    result is ``str()``-ed; a callback that raises is logged and counted (internal
    error ``label_callback``) and gives ``""``; a value is cut to
    :data:`MAX_LABEL_VALUE` characters.
    """

    __slots__ = ("_plan", "asgi_headers", "names", "wsgi_headers")

    def __init__(
        self, headers: Mapping[str, str], callbacks: Mapping[str, Callable[[Any], object]]
    ) -> None:
        self.names: tuple[str, ...] = tuple(sorted([*headers, *callbacks]))
        # Per name, in order: the header's position among the headers, or its callback.
        plan: list[int | Callable[[Any], object]] = []
        header_names: list[str] = []
        for name in self.names:
            if name in headers:
                plan.append(len(header_names))
                header_names.append(headers[name])
            else:
                plan.append(callbacks[name])
        self._plan = tuple(plan)
        #: The headers as WSGI environ (and Django ``META``) keys: ``HTTP_X_TENANT_ID``.
        self.wsgi_headers = tuple(_cgi_name(h) for h in header_names)
        #: The headers as ASGI spells them: lower-case bytes.
        self.asgi_headers = tuple(h.lower().encode("latin-1") for h in header_names)

    def key(
        self, endpoint: str, request: object, headers: Iterable[object], collector: Any
    ) -> tuple[str, ...]:
        """``(endpoint, *values)``: ``headers`` are the header values, in the order of
        :attr:`wsgi_headers` (``None`` or absent: ``""``); ``request`` goes to callbacks."""
        found = list(headers)
        out = [endpoint]
        for source in self._plan:
            if type(source) is int:
                value: object = found[source]
                if value is None:
                    value = ""
            else:
                try:
                    value = source(request)  # type: ignore[operator]
                except Exception:
                    collector.internal_error("label_callback")
                    value = ""
            if type(value) is not str:
                try:
                    value = str(value)
                except Exception:
                    collector.internal_error("label_callback")
                    value = ""
            out.append(value[:MAX_LABEL_VALUE])
        return tuple(out)

    def wsgi_key(
        self, endpoint: str, environ: Mapping[str, Any], collector: Any
    ) -> tuple[str, ...]:
        """:meth:`key` for a WSGI environ (or a Django request's ``META``, with ``request``)."""
        get = environ.get
        return self.key(endpoint, environ, [get(h) for h in self.wsgi_headers], collector)

    def asgi_key(self, endpoint: str, scope: Mapping[str, Any], collector: Any) -> tuple[str, ...]:
        """:meth:`key` for an ASGI scope: its headers are a list of (name, value) bytes."""
        wanted = self.asgi_headers
        values: list[str | None] = [None] * len(wanted)
        if wanted:
            for name, value in scope.get("headers", ()):
                if name in wanted:
                    i = wanted.index(name)
                    if values[i] is None:  # the first of repeated headers, as WSGI servers
                        values[i] = value.decode("latin-1")
        return self.key(endpoint, scope, values, collector)


def _cgi_name(header: str) -> str:
    upper = header.upper().replace("-", "_")
    # CGI names Content-Type and Content-Length without the HTTP_ prefix.
    return upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper


def _extra_labels(
    headers: Mapping[str, str] | None,
    callbacks: Mapping[str, Callable[[Any], object]] | None,
    const_labels: tuple[tuple[str, str], ...],
    where: str,
) -> ExtraLabels | None:
    if not headers and not callbacks:
        return None
    headers = _label_map(headers, "header_labels", "{'tenant': 'X-Tenant-ID'}", where)
    callbacks = _label_map(callbacks, "label_callbacks", "{'tenant': tenant_of}", where)
    consts = {name for name, _ in const_labels}
    for option, mapping in (("header_labels", headers), ("label_callbacks", callbacks)):
        for name in mapping:
            if name in consts:
                raise ConfigurationError(
                    f"{option}: {name!r} is also in const_labels; a label takes one of them{where}"
                )
    for name in headers:
        if name in callbacks:
            raise ConfigurationError(
                f"{name!r} is in both header_labels and label_callbacks;"
                f" a label comes from one of them{where}"
            )
    for name, header in headers.items():
        if not isinstance(header, str) or not _HEADER.match(header):
            raise ConfigurationError(
                f"header_labels: the header of {name!r} must be a header name such as"
                f" 'X-Tenant-ID', got {header!r}{where}"
            )
    for name, callback in callbacks.items():
        if not callable(callback):
            raise ConfigurationError(
                f"label_callbacks: {name!r} must map to a callable taking the request,"
                f" got {callback!r}{where}"
            )
    return ExtraLabels(headers, callbacks)


def _label_map(labels: Any, option: str, example: str, where: str) -> dict[str, Any]:
    if not labels:
        return {}
    if not isinstance(labels, Mapping):
        raise ConfigurationError(
            f"{option} must be a dict of label name to source, e.g. {example};"
            f" got {labels!r}{where}"
        )
    for name in labels:
        if not isinstance(name, str) or not _NAME.match(name) or name.startswith("__"):
            raise ConfigurationError(
                f"{option}: {name!r} is not a valid label name (letters, digits and '_',"
                f" not starting with a digit or '__'){where}"
            )
        if name in RESERVED_LABELS:
            raise ConfigurationError(
                f"{option}: {name!r} is a label eventmon's own series already have;"
                f" choose another name{where}"
            )
    return dict(labels)


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


class MetricsPage(NamedTuple):
    """The answer to a request for the metrics page."""

    status: int
    headers: tuple[tuple[str, str], ...]
    """Content-Type and Content-Length; WWW-Authenticate on a 401."""
    body: bytes
    """Empty for HEAD (Content-Length still says how long the page is)."""


def _plain(status: int, text: bytes, *extra: tuple[str, str]) -> MetricsPage:
    headers = (("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text))))
    return MetricsPage(status, headers + extra, text)


_UNAUTHORIZED = _plain(
    401,
    b"a valid token is required: Authorization: Bearer <token>\n",
    ("WWW-Authenticate", 'Bearer realm="eventmon metrics"'),
)


def metrics_response(
    collector: MetricsCollector,
    method: str,
    accept: str | None,
    authorization: str | None,
    *,
    options: AdapterOptions,
    where: str,
) -> MetricsPage:
    """The metrics page for one request.

    With ``options.metrics_token`` set, a request without that bearer token gets
    a 401 (compared in constant time, as the dashboard does). GET and HEAD only;
    a fault while rendering is counted under ``where`` and answered with a 500,
    never raised into the host app.
    """
    if not token_matches(options.metrics_token, bearer_credentials(authorization)):
        return _UNAUTHORIZED
    if method not in ("GET", "HEAD"):
        return _plain(405, b"Method Not Allowed\n", ("Allow", "GET, HEAD"))
    openmetrics, content_type = choose_format(accept)
    try:
        body = render(
            collector,
            openmetrics=openmetrics,
            unit=options.unit,
            namespace=options.namespace,
            const_labels=options.const_labels,
            group_status_codes=options.group_status_codes,
        )
    except Exception:
        collector.internal_error(where)
        return _plain(500, b"eventmon could not render metrics\n")
    headers = (("Content-Type", content_type), ("Content-Length", str(len(body))))
    return MetricsPage(200, headers, b"" if method == "HEAD" else body)


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
