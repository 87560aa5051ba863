"""Per-thread journals: the request path appends, readers fold.

Recording a request is one ``list.append`` of a tuple onto a list that only the
current thread appends to: no lock, nothing shared, no contention however many
threads serve requests. Readers (a scrape, the realtime snapshot, the alert
engine) drain every journal into the shared aggregates under one lock. A writer
whose journal reaches ``limit`` entries drains it itself, so memory stays
bounded even when nobody reads.

Why draining is safe without the writer taking the lock: the drainer copies the
first ``n`` entries and then deletes exactly those ``n``; each is a single C-level
list operation, and the owner only ever appends at the end, so an entry appended
in between survives at position ``n`` or later and is drained next time. Nothing
is lost and nothing is counted twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from eventmon.core._native import speedups

__all__ = ["Journals", "ThreadJournal"]

Entry = tuple[Any, ...]
_P = ParamSpec("_P")
_T = TypeVar("_T")


if TYPE_CHECKING or speedups is None:

    class ThreadJournal:
        """The current thread's entries plus its in-flight counters.

        ``eventmon.core._speedups.Journal`` is the same in C, used when built.
        """

        __slots__ = ("entries", "finished", "started", "thread")

        def __init__(self) -> None:
            self.entries: list[Entry] = []
            self.started = 0
            self.finished = 0
            self.thread = threading.current_thread()

else:
    ThreadJournal = speedups.Journal


class Journals:
    """Every thread's journal, and the lock under which they are folded."""

    __slots__ = ("__weakref__", "_journals", "_retired_inflight", "fold", "limit", "local", "lock")

    def __init__(self, fold: Callable[[list[Entry]], None], limit: int = 1024) -> None:
        self.fold = fold
        self.limit = limit
        self.lock = threading.RLock()
        self.local = threading.local()
        self._journals: list[ThreadJournal] = []
        self._retired_inflight = 0  # started - finished of journals whose thread exited
        if hasattr(os, "register_at_fork"):
            import weakref

            ref = weakref.ref(self)

            def _after_fork() -> None:
                me = ref()
                if me is not None:
                    me._after_fork_in_child()

            os.register_at_fork(after_in_child=_after_fork)

    def mine(self) -> ThreadJournal:
        """The current thread's journal, created on first use."""
        try:
            journal: ThreadJournal = self.local.journal
        except AttributeError:
            journal = ThreadJournal()
            with self.lock:
                self._journals.append(journal)
            self.local.journal = journal
        return journal

    def drain_one(self, journal: ThreadJournal) -> None:
        """Fold one journal (called by its owner when it is full)."""
        with self.lock:
            entries = journal.entries
            n = len(entries)
            if n:
                batch = entries[:n]
                del entries[:n]
                self.fold(batch)

    def drain(self) -> None:
        """Fold every journal; forget journals of exited threads once empty."""
        with self.lock:
            alive = []
            for journal in self._journals:
                # Ask before draining: a thread that exits after we look may still
                # append, and its journal must then survive until the next drain.
                exited = not journal.thread.is_alive()
                entries = journal.entries
                n = len(entries)
                if n:
                    batch = entries[:n]
                    del entries[:n]
                    self.fold(batch)
                if not exited:
                    alive.append(journal)
                else:
                    self._retired_inflight += journal.started - journal.finished
            self._journals = alive

    def read(self, reader: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Drain every journal, then ``reader(*args, **kwargs)``, both under the lock."""
        with self.lock:
            self.drain()
            return reader(*args, **kwargs)

    def add_fold_listener(
        self, listener: Callable[[list[Entry]], object], on_error: Callable[[str], None]
    ) -> None:
        """Also hand each folded batch to ``listener``.

        One that raises is reported to ``on_error("fold_listener")``, never propagated.
        """
        with self.lock:
            previous = self.fold

            def fold(batch: list[Entry]) -> None:
                previous(batch)
                try:
                    listener(batch)
                except Exception:
                    on_error("fold_listener")

            self.fold = fold

    def in_flight(self) -> int:
        """Requests started and not yet finished, over all threads."""
        with self.lock:
            journals = list(self._journals)
            total = self._retired_inflight
        for j in journals:
            total += j.started - j.finished
        return max(total, 0)

    def _after_fork_in_child(self) -> None:
        # Only the forking thread survives a fork; its journal (if any) carries on.
        self.lock = threading.RLock()
        me = getattr(self.local, "journal", None)
        self._journals = [me] if me is not None else []
        self._retired_inflight = 0
