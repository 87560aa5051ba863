"""eventmon's own counts: slow requests, and faults inside eventmon.

Both are labelled under the collector's :class:`~eventmon.core.registry.LabelPolicy`
(``http_slow_requests_total``, ``eventmon_internal_errors_total``), so their label
sets are capped like every other metric's.
"""

from __future__ import annotations

import logging
from typing import Any

from eventmon.core.aggregates import RequestAggregates
from eventmon.core.counter import Counter
from eventmon.core.registry import LabelPolicy
from eventmon.hooks import SlowRequestDispatcher

__all__ = ["InternalErrors", "SlowRequests"]

logger = logging.getLogger("eventmon")

_method_label = LabelPolicy.method


class SlowRequests:
    """Slow requests by (method, endpoint, *extra label values), handed on to the hooks."""

    __slots__ = ("_aggregates", "_counter", "_hooks", "_sets")

    def __init__(
        self, label_policy: LabelPolicy, aggregates: RequestAggregates, hooks: SlowRequestDispatcher
    ) -> None:
        self._aggregates = aggregates  # for the extra labels of an endpoint
        self._hooks = hooks
        self._counter = Counter()
        self._sets = label_policy.metric("http_slow_requests_total", 2)

    def record(self, method: str, endpoint: Any, status_code: int, seconds: float) -> None:
        """Count one slow request and queue it for the hooks (the request path calls this)."""
        if type(endpoint) is str and not self._aggregates.extra_names:
            self._counter.inc(self._sets.admit((_method_label(method), endpoint)))
        else:
            # Labelled by (method, template, *extra values); hooks get the template.
            endpoint, extra, _ = self._aggregates.labelled(endpoint)
            self._counter.inc(self._sets.admit((_method_label(method), endpoint, *extra)))
        self._hooks.submit(method, endpoint, status_code, seconds)

    def counts(self) -> dict[tuple[str, ...], int]:
        """Slow requests by (method, endpoint), then the extra label values if any."""
        return {k: int(v) for k, v in self._counter.items().items()}  # type: ignore[misc]


class InternalErrors:
    """Faults inside eventmon, counted by place; logged, but rate-limited."""

    __slots__ = ("_counter", "_log_budget", "_sets")

    def __init__(self, label_policy: LabelPolicy) -> None:
        self._counter = Counter()
        self._sets = label_policy.metric("eventmon_internal_errors_total", 1)
        self._log_budget: dict[str, int] = {}

    def count(self, where: str) -> None:
        """Count a fault (the caller has logged it)."""
        self._counter.inc(self._sets.admit((where,))[0])

    def report(self, where: str) -> None:
        """Log the current exception (rate-limited) and count it; never raises."""
        try:
            where = self._sets.admit((where,))[0]
            self._counter.inc(where)
            seen = self._log_budget.get(where, 0)
            self._log_budget[where] = seen + 1
            # The first ten of a kind in full, then one in a thousand: a fault on
            # every request must not flood the host's logs.
            if seen < 10 or seen % 1000 == 0:
                logger.exception("eventmon: internal error in %s (request not affected)", where)
        except Exception:  # pragma: no cover - logging itself failed
            pass

    def counts(self) -> dict[str, int]:
        """Faults by place."""
        return {str(k): int(v) for k, v in self._counter.items().items()}
