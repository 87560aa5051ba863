"""A lock-free labelled counter: per-thread cells, summed on read.

Each thread increments a dict that only it writes, so an increment is a dict
lookup and an add with no lock and nothing shared. A reader sums the cells of
every thread; cells of threads that have exited are folded into a retired total
so that a server that creates a thread per request does not accumulate cells.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Hashable

__all__ = ["Counter"]


class _Cell:
    __slots__ = ("thread", "values")

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.values: dict[Hashable, float] = {}


class Counter:
    """Counts per key (usually a tuple of label values); exact under any number of threads.

    Example::

        >>> c = Counter()
        >>> c.inc(("GET", "/events"))
        >>> c.inc(("GET", "/events"), 2)
        >>> c.value(("GET", "/events"))
        3
    """

    __slots__ = ("__weakref__", "_cells", "_local", "_lock", "_retired")

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cells: list[_Cell] = []
        self._retired: dict[Hashable, float] = {}
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def _after_fork() -> None:
                me = ref()
                if me is not None:
                    me.reset_after_fork()

            os.register_at_fork(after_in_child=_after_fork)

    def _cell(self) -> dict[Hashable, float]:
        cell = _Cell()
        with self._lock:
            self._cells.append(cell)
        self._local.cell = cell.values
        return cell.values

    def inc(self, key: Hashable = (), amount: float = 1) -> None:
        """Add ``amount`` (default 1) to ``key``'s count."""
        try:
            values = self._local.cell
        except AttributeError:
            values = self._cell()
        values[key] = values.get(key, 0) + amount

    def items(self) -> dict[Hashable, float]:
        """Every key with its total over all threads, living and exited."""
        with self._lock:
            total = dict(self._retired)
            alive = []
            for cell in self._cells:
                # Ask whether the owner has exited *before* reading: a cell read first
                # could gain increments before its thread exits, and retiring that
                # stale copy would lose them.
                exited = not cell.thread.is_alive()
                # A copy is one C call: it cannot interleave with the owner's writes.
                values = cell.values.copy()
                for key, v in values.items():
                    total[key] = total.get(key, 0) + v
                if not exited:
                    alive.append(cell)
                else:
                    for key, v in values.items():
                        self._retired[key] = self._retired.get(key, 0) + v
            self._cells = alive
        return total

    def value(self, key: Hashable = ()) -> float:
        """The total of one key."""
        return self.items().get(key, 0)

    def reset_after_fork(self) -> None:
        """Make the lock usable in a forked child (called by an at-fork hook).

        Another thread may have held the lock when the process forked; that
        thread does not exist in the child, so the lock would never be released.
        """
        self._lock = threading.Lock()
