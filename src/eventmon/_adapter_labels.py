"""Per-request labels besides method, endpoint and status: ``header_labels`` and
``label_callbacks``, checked at start-up and read when a request ends.

Private: :class:`eventmon._adapter.AdapterOptions` builds the :class:`ExtraLabels`
every adapter uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.exporters.prometheus import RESERVED_LABELS

__all__ = ["LABEL_NAME", "MAX_LABEL_VALUE", "ExtraLabels", "build_extra_labels", "check_label_name"]

#: A Prometheus label (and metric-name part) name.
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

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


def build_extra_labels(
    headers: Mapping[str, str] | None,
    callbacks: Mapping[str, Callable[[Any], object]] | None,
    const_labels: tuple[tuple[str, str], ...],
    where: str,
) -> ExtraLabels | None:
    """The :class:`ExtraLabels` of an adapter's options, or ``None`` when it has none.

    Refuses (:class:`~eventmon.ConfigurationError`) a label name that is invalid,
    reserved, in ``const_labels`` or in both options, a header that is not a header
    name, and a callback that cannot be called; ``where`` ends each message.
    """
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
        check_label_name(option, name, where)
    return dict(labels)


def check_label_name(option: str, name: object, where: str) -> None:
    """Refuse a label name an adapter ``option`` gives that Prometheus or eventmon cannot use."""
    if not isinstance(name, str) or not LABEL_NAME.match(name) or name.startswith("__"):
        raise ConfigurationError(
            f"{option}: {name!r} is not a valid label name (letters, digits and '_',"
            f" not starting with a digit or '__'){where}"
        )
    if name in RESERVED_LABELS:
        raise ConfigurationError(
            f"{option}: {name!r} is a label eventmon's own series already have;"
            f" choose another name{where}"
        )
