"""The request path: what ``begin``, ``end`` and ``observe`` do for each request.

:class:`RequestPath` is the Python reference. With the C accelerator built,
:meth:`RequestPath.recorder` gives ``eventmon.core._speedups.Recorder``, the same
path in C on the same journals (``tests/core/test_recorder.py`` holds them to
the same results). :class:`~eventmon.MetricsCollector` puts the chosen one's
bound methods on itself, so a request calls them with no layer in between.

Each request appends one ``(method, endpoint, status_code, seconds, end)`` entry
to its thread's journal (:mod:`eventmon.core.journal`); a full journal is folded
by its own thread. Durations are seconds, read from the collector's clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.core._native import speedups
from eventmon.core.exemplars import ExemplarStore, current_trace
from eventmon.core.journal import Journals, ThreadJournal
from eventmon.core.registry import LabelPolicy
from eventmon.types import Clock

__all__ = ["RequestPath", "check_journal_limit", "check_slow_threshold"]

_INF = math.inf
_method_label = LabelPolicy.method
# Past this a thread's pending entries hold over 100 MB before anybody folds them.
_MAX_JOURNAL_LIMIT = 1_000_000

#: ``on_slow(method, endpoint, status_code, seconds)``, called in the request's thread.
SlowCallback = Callable[[str, Any, int, float], None]


def check_journal_limit(journal_limit: object) -> int:
    """``journal_limit`` if it is a whole number from 1 to 1,000,000, else ConfigurationError."""
    if (
        not isinstance(journal_limit, int)
        or isinstance(journal_limit, bool)
        or not 1 <= journal_limit <= _MAX_JOURNAL_LIMIT
    ):
        raise ConfigurationError(
            f"journal_limit must be a whole number from 1 to {_MAX_JOURNAL_LIMIT:,},"
            f" got {journal_limit!r}"
        )
    return journal_limit


def check_slow_threshold(seconds: object) -> float:
    """``seconds`` as a float if it is a number >= 0, else ConfigurationError."""
    if not (isinstance(seconds, (int, float)) and seconds >= 0):
        raise ConfigurationError(
            f"slow_threshold must be a number of seconds >= 0, got {seconds!r}"
        )
    return float(seconds)


class RequestPath:
    """The Python request path of one collector, over its ``journals``.

    ``on_slow`` is called for each request slower than ``slow_threshold`` seconds;
    a thread folds its journal once it holds ``limit`` entries.
    """

    __slots__ = (
        "_drain_one",
        "_local",
        "_mine",
        "_on_slow",
        "clock",
        "exemplars",
        "limit",
        "slow_threshold",
        "wall_offset",
    )

    def __init__(
        self,
        journals: Journals,
        on_slow: SlowCallback,
        clock: Clock,
        slow_threshold: float,
        limit: int,
    ) -> None:
        # The journals' parts, bound once: each is one attribute read per request.
        self._local = journals.local
        self._mine = journals.mine
        self._drain_one = journals.drain_one
        self._on_slow = on_slow
        self.clock = clock
        self.slow_threshold = slow_threshold
        self.limit = limit
        #: Where :meth:`end_traced` and :meth:`observe_traced` keep exemplars.
        self.exemplars: ExemplarStore | None = None
        self.wall_offset = 0.0

    def recorder(self) -> Any:
        """This path in C (``_speedups.Recorder``), or ``None`` without the accelerator.

        Its ``slow_threshold`` is its own: set both when it changes.
        """
        if speedups is None:
            return None
        return speedups.Recorder(
            self._local,
            self._mine,
            self._drain_one,
            self._on_slow,
            self.clock,
            self.slow_threshold,
            self.limit,
        )

    def trace(self, store: ExemplarStore) -> None:
        """Keep exemplars in ``store`` from now on (for the ``*_traced`` methods)."""
        # Wall time of an end instant without another clock read per request.
        self.wall_offset = time.time() - self.clock()
        self.exemplars = store

    def observe(self, method: str, endpoint: str, status_code: int, seconds: float) -> None:
        """Record one finished request that took ``seconds``."""
        if not isinstance(status_code, int):
            raise TypeError(f"status_code must be an int, got {status_code!r}")
        # One chained comparison: refuses NaN, infinities, negatives and non-numbers.
        if not 0.0 <= seconds < _INF:
            raise ValueError(_bad_seconds(seconds))
        slow = seconds > self.slow_threshold
        try:
            journal = self._local.journal
        except AttributeError:
            journal = self._mine()
        entries = journal.entries
        entries.append((method, endpoint, status_code, seconds, self.clock()))
        if slow:
            self._on_slow(method, endpoint, status_code, seconds)
        if len(entries) >= self.limit:
            self._drain_one(journal)

    def begin(self) -> ThreadJournal:
        """Count a request as in progress; returns the token for :meth:`end`."""
        try:
            journal: ThreadJournal = self._local.journal
        except AttributeError:
            journal = self._mine()
        journal.started += 1
        return journal

    def end(
        self, token: ThreadJournal, method: str, endpoint: str, status_code: int, start: float
    ) -> None:
        """Record the request begun with ``token`` at ``start`` (``clock()`` seconds)."""
        # First, so that the request stops being in progress whatever fails below.
        token.finished += 1
        if not isinstance(status_code, int):
            raise TypeError(f"status must be an int, got {status_code!r}")
        end = self.clock()
        seconds = end - start
        if not 0.0 <= seconds < _INF:
            raise ValueError(_bad_seconds(seconds))
        entries = token.entries
        entries.append((method, endpoint, status_code, seconds, end))
        if seconds > self.slow_threshold:
            self._on_slow(method, endpoint, status_code, seconds)
        if len(entries) >= self.limit:
            self._drain_one(token)

    def end_traced(
        self, token: ThreadJournal, method: str, endpoint: str, status_code: int, start: float
    ) -> None:
        """:meth:`end` plus the exemplar of the context's trace, if any."""
        token.finished += 1
        if not isinstance(status_code, int):
            raise TypeError(f"status must be an int, got {status_code!r}")
        end = self.clock()
        seconds = end - start
        if not 0.0 <= seconds < _INF:
            raise ValueError(_bad_seconds(seconds))
        entries = token.entries
        entries.append((method, endpoint, status_code, seconds, end))
        trace_id = current_trace.get()
        store = self.exemplars
        if trace_id is not None and store is not None:
            store.offer(
                _method_label(method),
                endpoint,
                status_code,
                seconds,
                trace_id,
                end + self.wall_offset,
            )
        if seconds > self.slow_threshold:
            self._on_slow(method, endpoint, status_code, seconds)
        if len(entries) >= self.limit:
            self._drain_one(token)

    def observe_traced(self, method: str, endpoint: str, status_code: int, seconds: float) -> None:
        """:meth:`observe` plus the exemplar of the context's trace, if any."""
        self.observe(method, endpoint, status_code, seconds)
        trace_id = current_trace.get()
        store = self.exemplars
        if trace_id is not None and store is not None:
            store.offer(
                _method_label(method),
                endpoint,
                status_code,
                seconds,
                trace_id,
                self.clock() + self.wall_offset,
            )


def _bad_seconds(seconds: object) -> str:
    return f"seconds must be a finite number >= 0, got {seconds!r}"
