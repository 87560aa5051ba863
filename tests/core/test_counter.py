from __future__ import annotations

import itertools
import threading

from eventmon.core.counter import Counter


def test_exact_total_under_eight_threads() -> None:
    counter = Counter()
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(100_000):
            counter.inc(("GET", "/events"))
        counter.inc(("thread", str(i)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.value(("GET", "/events")) == 800_000
    assert sum(counter.value(("thread", str(i))) for i in range(8)) == 8


def test_reads_during_writes_never_decrease_and_end_exact() -> None:
    counter = Counter()
    stop = threading.Event()
    seen: list[float] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(counter.value("k"))

    r = threading.Thread(target=reader)
    r.start()
    writers = [
        threading.Thread(target=lambda: [counter.inc("k") for _ in range(50_000)]) for _ in range(4)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    r.join()
    assert counter.value("k") == 200_000
    assert all(a <= b for a, b in itertools.pairwise(seen))


def test_cells_of_exited_threads_are_retired_not_lost() -> None:
    counter = Counter()
    for _ in range(50):
        t = threading.Thread(target=lambda: counter.inc("x", 2))
        t.start()
        t.join()
    assert counter.value("x") == 100
    # Exited threads' cells were folded away: only live ones remain.
    assert len(counter._cells) <= 1
    assert counter.value("x") == 100


def test_a_forked_child_can_read_even_if_the_lock_was_held_at_fork() -> None:
    import os
    import warnings

    from servers import wait_child

    counter = Counter()
    counter.inc("k", 5)
    with counter._lock, warnings.catch_warnings():  # another thread mid-read at fork time
        # Python 3.12+ warns about fork() in a process with threads: that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
        if pid == 0:  # the child: reading must not deadlock, and counts are inherited
            ok = False
            try:
                ok = counter.value("k") == 5
            finally:
                os._exit(0 if ok else 1)
    code = wait_child(pid)
    assert code == 0
