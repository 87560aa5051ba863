"""Database metrics for Django: queries, their time and errors, and failed connections.

Installed by the ``eventmon`` app (``INSTALLED_APPS = [..., "eventmon"]``, see
:mod:`eventmon.apps`), or by hand with :func:`install`. Every connection Django
creates gets an ``execute_wrapper`` that counts

* ``db_queries_total{database}``: statements executed (``executemany`` counts once),
* ``db_query_seconds_total{database}``: time spent in them,
* ``db_query_errors_total{database}``: statements that raised,

and failures to connect, or a connection lost under a statement, count in
``db_connection_errors_total``, which the default ``database_connection_failure``
alert rule reads. ``database`` is the connection's alias in ``settings.DATABASES``.
Counting never raises into the app: a fault is logged and counted as an internal error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

from django.db import InterfaceError, OperationalError, connections
from django.db.backends.signals import connection_created

from eventmon.alerting.metrics import DB_CONNECTION_ERRORS
from eventmon.collector import MetricsCollector

__all__ = ["DatabaseMetrics", "install"]

logger = logging.getLogger("eventmon.django")

QUERIES = "db_queries"
QUERY_SECONDS = "db_query_seconds"
QUERY_ERRORS = "db_query_errors"
#: errors that mean the database could not be reached (not a bad statement)
CONNECTION_ERRORS = (OperationalError, InterfaceError)
_Key = tuple[str, tuple[str]]  # (counter name, label values), as the collector files it


class DatabaseMetrics:
    """The execute wrapper and connect hook, counting into one collector."""

    def __init__(self, collector: MetricsCollector) -> None:
        self.collector = collector
        # Per alias, the keys the collector's lock-free counter files these series
        # under. increment_counter's checks (about 9 us here) run once per alias in
        # _learn; a statement then costs two dict updates on this thread's cell.
        self._keys: dict[str, tuple[_Key, _Key, _Key]] = {}
        self._inc = collector._user.counter_cells.inc
        collector.define_counter(QUERIES, "Database statements executed.", ("database",))
        collector.define_counter(
            QUERY_SECONDS, "Seconds spent executing statements.", ("database",)
        )
        collector.define_counter(QUERY_ERRORS, "Database statements that raised.", ("database",))
        # Exported at 0 from the start: Prometheus's increase() needs the series
        # before the first error to see it.
        collector.increment_counter(DB_CONNECTION_ERRORS, amount=0)

    def attach(self, connection: Any) -> None:
        """Instrument one ``DatabaseWrapper`` (idempotent)."""
        if any(w is self for w in connection.execute_wrappers):
            return
        # First in the list is outermost: the time includes the app's own wrappers.
        connection.execute_wrappers.insert(0, self)
        ensure = connection.ensure_connection
        if getattr(ensure, "_eventmon", False):
            return

        def ensure_connection() -> None:
            try:
                ensure()
            except CONNECTION_ERRORS:
                self._connection_error()
                raise

        ensure_connection._eventmon = True  # type: ignore[attr-defined]
        # On the instance: Django's class and other connections stay as they are.
        connection.ensure_connection = ensure_connection

    def __call__(
        self,
        execute: Callable[[str, Any, bool, dict[str, Any]], Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        start = perf_counter()
        try:
            return execute(sql, params, many, context)
        except BaseException as e:
            self._failed(context["connection"], e)
            raise
        finally:
            seconds = perf_counter() - start
            try:
                alias = context["connection"].alias
                keys = self._keys.get(alias) or self._learn(alias)
                inc = self._inc
                inc(keys[0], 1)
                inc(keys[1], seconds)
            except Exception:
                self._fault()

    def _learn(self, alias: str) -> tuple[_Key, _Key, _Key]:
        labels = {"database": alias}
        for name in (QUERIES, QUERY_SECONDS, QUERY_ERRORS):
            # Through the public call once: checks the labels, exports the series at 0.
            self.collector.increment_counter(name, labels, 0)
        keys = ((QUERIES, (alias,)), (QUERY_SECONDS, (alias,)), (QUERY_ERRORS, (alias,)))
        self._keys[alias] = keys
        return keys

    def _failed(self, connection: Any, error: BaseException) -> None:
        try:
            if not isinstance(error, Exception):
                return  # KeyboardInterrupt, a cancelled task: not the database's doing
            alias = connection.alias
            self._inc((self._keys.get(alias) or self._learn(alias))[2], 1)
            if isinstance(error, InterfaceError) or (
                isinstance(error, OperationalError) and _lost(connection)
            ):
                self._connection_error()
        except Exception:
            self._fault()

    def _connection_error(self) -> None:
        try:
            self.collector.increment_counter(DB_CONNECTION_ERRORS)
        except Exception:
            self._fault()

    def _fault(self) -> None:
        logger.exception("eventmon: counting a database metric failed")
        self.collector.internal_error("django.db")


def _lost(connection: Any) -> bool:
    """Whether the DB-API connection says it is closed (psycopg 2 and 3 do)."""
    raw = connection.connection
    return raw is None or bool(getattr(raw, "closed", False))


_installed: DatabaseMetrics | None = None


def install(collector: MetricsCollector) -> DatabaseMetrics:
    """Instrument every database connection Django creates from now on, and those it has.

    Idempotent: a second call returns the first call's :class:`DatabaseMetrics`.
    """
    global _installed
    if _installed is not None:
        return _installed
    metrics = DatabaseMetrics(collector)
    create = connections.create_connection

    def create_connection(alias: str) -> Any:
        connection = create(alias)
        metrics.attach(connection)
        return connection

    # On the handler instance: each thread's (or task's) connection object is made
    # here, before it first connects, so a failure to connect is seen too.
    connections.create_connection = create_connection

    def on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
        metrics.attach(connection)  # one made elsewhere, e.g. connection.copy()

    connection_created.connect(on_connect, weak=False, dispatch_uid="eventmon.django_db")
    for connection in connections.all(initialized_only=True):
        metrics.attach(connection)
    _installed = metrics
    return metrics
