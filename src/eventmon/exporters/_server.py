"""The metrics page on a port of its own: a small threaded standard-library HTTP server.

Public as :func:`eventmon.exporters.prometheus.start_metrics_server` and
:class:`eventmon.exporters.prometheus.MetricsServer`; the page itself is rendered by
:mod:`eventmon.exporters.prometheus` through the adapters' shared ``metrics_response``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector

__all__ = ["MetricsServer", "start_metrics_server"]


class MetricsServer:
    """The metrics page on a port of its own; made by :func:`start_metrics_server`.

    Serves until :meth:`shutdown` (idempotent; also on leaving a ``with`` block).
    """

    def __init__(self, httpd: Any, path: str) -> None:
        self._httpd = httpd
        self._path = path
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="eventmon-metrics-server",
            daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system when started with ``port=0``)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Where to scrape: ``http://127.0.0.1:9464/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self._path}"

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop serving and close the port; later calls do nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        # After a fork the serving thread is the parent's: waiting for it would hang.
        if self._pid == os.getpid():
            self._httpd.shutdown()
            self._thread.join(timeout)
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def start_metrics_server(
    port: int,
    host: str = "127.0.0.1",
    *,
    collector: MetricsCollector | None = None,
    token: str | None = None,
    path: str = "/metrics",
    unit: str = "s",
    namespace: str | None = None,
    const_labels: Mapping[str, str] | None = None,
    group_status_codes: bool = False,
) -> MetricsServer:
    """Serve the metrics page on its own port, from a small threaded stdlib HTTP server.

    Use it to keep metrics off the app's public port (then give the middleware
    ``metrics_path=None``). Returns at once; the server runs on daemon threads.

    Args:
        port: the port to listen on (``0``: any free one; see :attr:`MetricsServer.port`).
        host: the address to listen on; the default, ``127.0.0.1``, is reachable from
            this machine only. ``"0.0.0.0"`` listens on every interface.
        collector: whose metrics (default: the process-wide collector).
        token: if set, scrapes need ``Authorization: Bearer <token>`` (else 401);
            compared in constant time, as the dashboard's token is.
        path: where the page is; other paths answer 404.
        unit: ``"s"`` (default) or ``"ms"`` for the histogram's exposition.
        namespace, const_labels, group_status_codes: as the middleware's
            (:class:`eventmon.wsgi.EventmonMiddleware`).

    Example::

        server = start_metrics_server(9464, token=os.environ["METRICS_TOKEN"])
        ...
        server.shutdown()
    """
    import dataclasses
    import socket
    import urllib.parse
    from http import HTTPStatus
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from eventmon._adapter import AdapterOptions, metrics_response, resolve_collector
    from eventmon._auth import check_token
    from eventmon._exceptions import ConfigurationError

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be a whole number from 0 to 65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise ConfigurationError(f"host must be an address such as '127.0.0.1', got {host!r}")
    if path is None:
        raise ConfigurationError("path must start with '/', e.g. '/metrics'; got None")
    options = AdapterOptions.build(
        metrics_path=path,
        unit=unit,
        namespace=namespace,
        const_labels=const_labels,
        group_status_codes=group_status_codes,
        source="start_metrics_server",
    )
    options = dataclasses.replace(
        options, metrics_token=check_token(token, "start_metrics_server token", header=True)
    )
    source = resolve_collector(collector)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus scrapes
        timeout = 60  # an idle keep-alive connection gives its thread back

        def do_GET(self) -> None:
            if urllib.parse.urlsplit(self.path).path != options.metrics_path:
                self._send(404, (("Content-Type", "text/plain; charset=utf-8"),), b"Not Found\n")
                return
            page = metrics_response(
                source,
                self.command,
                self.headers.get("Accept"),
                self.headers.get("Authorization"),
                options=options,
                where="metrics_server",
            )
            self.send_response(page.status, HTTPStatus(page.status).phrase)
            for name, value in page.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(page.body)

        do_HEAD = do_GET

        def _send(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        httpd = Server((host, port), Handler)
    except OSError as e:
        raise ConfigurationError(
            f"start_metrics_server cannot listen on {host}:{port}: {e.strerror or e};"
            " choose another port (or 0 for any free one)"
        ) from e
    return MetricsServer(httpd, path)
