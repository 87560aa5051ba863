"""The alert engine under worker aggregation: one evaluator, the instance's figures.

Workers are simulated in one process: several collectors aggregated into one
directory, each with its own engine, as a pre-fork server's workers would have.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventmon import MetricsCollector
from eventmon.alerting import AlertEngine, AlertRule
from eventmon.alerting.engine import EVALUATOR_GAUGE
from eventmon.alerting.metrics import RuleMetrics
from eventmon.alerting.notifiers import WebhookNotifier
from eventmon.core.process import ResourceLimits
from eventmon.exporters.multiprocess import disable, enable
from eventmon.exporters.multiprocess._leader import ALERTS_FILE, EVALUATOR_LOCK, EvaluatorLock


class Workers:
    """Collectors standing for worker processes sharing one aggregation directory."""

    def __init__(self, directory: Path, clock: object = None) -> None:
        self.directory = directory
        self.alive: set[int] = set()
        self.clock = clock
        self.collectors: list[MetricsCollector] = []

    def spawn(self, pid: int) -> MetricsCollector:
        kw = {"clock": self.clock} if self.clock is not None else {}
        c = MetricsCollector(slow_hooks=(), **kw)
        enable(c, self.directory, identity=(pid, "s"), is_alive=lambda p, _s: p in self.alive)
        self.alive.add(pid)
        self.collectors.append(c)
        return c

    def close(self) -> None:
        for c in self.collectors:
            disable(c)
            c.shutdown()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path / "mp")
    yield w
    w.close()


def _wait(cond, timeout: float = 30.0) -> None:
    # Generous: it polls, so a passing run waits no longer; a loaded CI machine needs it.
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _feed(c: MetricsCollector, k: int, n: int) -> None:
    for i in range(n):
        ep = ["/orders", "/events/{id}", "/health"][(i + k) % 3]
        status = [200, 201, 404, 503][(i * 7 + k) % 4]
        c.observe("GET", ep, status, ((i * 37 + k * 11) % 400 + 1) / 1000)
    c.increment_counter("payment_failures", {"psp": "a"}, k + 1)
    c.set_gauge("queue_depth", 10 * (k + 1))


# ---------------------------------------------------------------- the lock


def test_evaluator_lock_is_exclusive_and_passes_on_release(tmp_path: Path) -> None:
    a, b = EvaluatorLock(tmp_path), EvaluatorLock(tmp_path)
    assert a.poll()
    assert a.held
    assert not b.poll()
    assert not b.held
    assert a.poll()  # keeps it
    a.release()
    assert b.poll()
    assert not a.poll()
    mode = os.stat(tmp_path / EVALUATOR_LOCK).st_mode & 0o777
    assert mode == 0o600
    b.release()


def test_evaluator_lock_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep")
    os.symlink(target, tmp_path / EVALUATOR_LOCK)
    lock = EvaluatorLock(tmp_path)
    assert lock.poll()
    assert not (tmp_path / EVALUATOR_LOCK).is_symlink()
    assert target.read_text() == "keep"
    lock.release()


def test_a_closed_lock_is_not_taken_again_until_reopened(tmp_path: Path) -> None:
    mine, theirs = EvaluatorLock(tmp_path), EvaluatorLock(tmp_path)
    assert mine.poll()
    mine.close()
    assert not mine.poll()  # closed: it does not take the free lock
    assert theirs.poll()
    mine.reopen()
    assert not mine.poll()  # open again, but the lock is theirs
    theirs.release()
    assert mine.poll()
    mine.release()


def test_an_evaluation_still_running_after_the_engine_stopped_does_not_lead_again(
    workers: Workers, http_receiver
) -> None:
    """As at a lifespan's end: the task is cancelled, but its evaluation, in a worker
    thread, goes on after the engine resigned; it must not take the lock back."""
    rule = AlertRule("payment_failing", "payment_failures > 0")
    (engine,) = _engines(workers, http_receiver.url + "/ok", 1, rule)
    engine._safe_evaluate()
    assert engine.leading
    engine._resign()  # what stop() and the lifespan's end do
    engine._safe_evaluate()  # the evaluation that was still on its way
    assert not engine.leading
    other = EvaluatorLock(workers.directory)
    assert other.poll()  # the lock is free for another worker
    other.release()
    # Started again, the engine takes part in the election again.
    engine.start()
    try:
        _wait(lambda: engine.leading)
    finally:
        engine.stop()


def test_a_resign_during_a_poll_leaves_the_lock_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() on one thread while the loop's first poll runs on another (which then
    makes the lock and takes it): the engine must not end up holding it."""
    import threading

    from eventmon.alerting._leadership import Leadership

    c = MetricsCollector(slow_hooks=())
    enable(c, tmp_path / "mp", identity=(101, "s"), is_alive=lambda p, _s: True)
    try:
        leadership = Leadership(c)
        in_poll = threading.Event()
        original = EvaluatorLock.__init__

        def slow_init(self: EvaluatorLock, directory: Path) -> None:
            # The first poll is about to make its lock: resign() arrives now.
            in_poll.set()
            time.sleep(0.2)
            original(self, directory)

        monkeypatch.setattr(EvaluatorLock, "__init__", slow_init)
        loop = threading.Thread(target=leadership.poll)
        loop.start()
        assert in_poll.wait(10)
        leadership.resign()
        loop.join(10)
        monkeypatch.setattr(EvaluatorLock, "__init__", original)
        assert not leadership.leading
        other = EvaluatorLock(tmp_path / "mp")
        assert other.poll()  # free for another worker
        other.release()
        assert leadership.poll() == (False, False)  # resigned: it stays out
    finally:
        disable(c)
        c.shutdown()


def test_a_replaced_lock_file_counts_as_lost(tmp_path: Path) -> None:
    """A directory cleaned while serving must not leave two leaders on two files."""
    a, b = EvaluatorLock(tmp_path), EvaluatorLock(tmp_path)
    assert a.poll()
    (tmp_path / EVALUATOR_LOCK).unlink()
    assert b.poll()  # takes the new file
    assert not a.poll()  # a sees its file is gone and does not lead through it
    b.release()


# ------------------------------------------------------------- one notifier


def _engines(
    workers: Workers, url: str, n: int, rule: AlertRule, declare: tuple[str, ...] = ()
) -> list[AlertEngine]:
    engines = []
    for pid in range(101, 101 + n):
        c = workers.spawn(pid)
        engines.append(
            AlertEngine(
                c,
                [rule],
                notifiers=[WebhookNotifier(url)],
                interval=0.05,
                declare=["payment_failures", *declare],
            )
        )
    return engines


def _started_leader_first(engines: list[AlertEngine]) -> tuple[AlertEngine, AlertEngine]:
    """Start two engines; (the one that leads, the other) once one leads."""
    for e in engines:
        e.start()
    _wait(lambda: sum(e.leading for e in engines) == 1)
    (first,) = [e for e in engines if e.leading]
    (second,) = [e for e in engines if e is not first]
    return first, second


def test_only_one_worker_notifies(workers: Workers, http_receiver) -> None:
    rule = AlertRule("payment_failing", "payment_failures > 0")
    engines = _engines(workers, http_receiver.url + "/ok", 3, rule)
    try:
        for e in engines:
            e.start()
        _wait(lambda: sum(e.leading for e in engines) == 1)
        # The leader's first look is its baseline: feed only once it has looked.
        _wait(lambda: any(e.leading and e.evaluations >= 1 for e in engines))
        for k, c in enumerate(workers.collectors):
            _feed(c, k, 10)
        http_receiver.wait_for("/ok", 1, timeout=30)
        (leader,) = [e for e in engines if e.leading]
        # The leader has evaluated many times since: still one notice.
        done = leader.evaluations
        _wait(lambda: leader.evaluations >= done + 10)
        for e in engines:
            assert e.dispatcher.flush(10)
        (notice,) = http_receiver.on("/ok")
        assert notice.body["name"] == "payment_failing"
        assert notice.body["value"] > 0
        # The value is the instance's: 1 + 2 + 3 payment failures, not one worker's
        # (the others' counts arrive with their next periodic write).
        _wait(lambda: leader.alerts()[0].value == 6.0)
        followers = [e for e in engines if e is not leader]
        assert [e.evaluations for e in followers] == [0, 0]
        assert leader.firing() == ["payment_failing"]
        # The others show the leader's alerts (for their dashboards), as it published them.
        assert [e.firing() for e in followers] == [["payment_failing"]] * 2
        assert followers[0].alerts()[0].value == leader.alerts()[0].value
        gauges = [c.gauges()[EVALUATOR_GAUGE][()] for c in workers.collectors]
        assert sorted(gauges) == [0.0, 0.0, 1.0]
    finally:
        for e in engines:
            e.stop()


def test_the_next_worker_takes_over_when_the_leader_stops(workers: Workers, http_receiver) -> None:
    rule = AlertRule("payment_failing", "payment_failures > 0")
    engines = _engines(workers, http_receiver.url + "/ok", 2, rule)
    try:
        first, second = _started_leader_first(engines)
        first.stop()  # a worker leaving: its lock goes with it
        _wait(lambda: second.leading)
        assert not first.leading
        _feed(workers.collectors[engines.index(second)], 0, 3)
        (notice,) = http_receiver.wait_for("/ok", 1, timeout=30)
        assert notice.body["name"] == "payment_failing"
        assert first.evaluations == 0 or first.firing() == []
    finally:
        for e in engines:
            e.stop()


def test_a_new_leader_carries_on_a_firing_alert_without_sending_it_again(
    workers: Workers, http_receiver
) -> None:
    rule = AlertRule("queue_backed_up", "queue_depth > 50")
    engines = _engines(workers, http_receiver.url + "/ok", 2, rule, ("queue_depth",))
    try:
        first, second = _started_leader_first(engines)
        queue = workers.collectors[engines.index(second)]
        queue.set_gauge("queue_depth", 80)
        queue.multiprocess.write()
        (fired,) = http_receiver.wait_for("/ok", 1, timeout=30)
        assert fired.body["status"] == "firing"
        _wait(lambda: second.firing() == ["queue_backed_up"])  # published by the leader
        first.stop()  # the leader leaves while the alert fires
        _wait(lambda: second.leading)
        done = second.evaluations
        _wait(lambda: second.evaluations >= done + 10)
        assert second.dispatcher.flush(10)
        # Still the one notice: the new leader took the alert over, firing.
        assert len(http_receiver.on("/ok")) == 1
        assert second.firing() == ["queue_backed_up"]
        (status,) = second.alerts()
        assert status.active_since == pytest.approx(fired.body["startsAt"], abs=0.01)
        # And it is the new leader that sends the resolution, of the same alert.
        queue.set_gauge("queue_depth", 0)
        queue.multiprocess.write()
        resolved = http_receiver.wait_for("/ok", 2, timeout=30)[1]
        assert resolved.body["status"] == "resolved"
        assert resolved.body["startsAt"] == pytest.approx(fired.body["startsAt"], abs=0.01)
    finally:
        for e in engines:
            e.stop()


def test_a_stale_alerts_file_is_not_taken_over(workers: Workers, http_receiver) -> None:
    """A file from an earlier server run (older than a few intervals) revives nothing."""
    rule = AlertRule("queue_backed_up", "queue_depth > 50")
    (engine,) = _engines(workers, http_receiver.url + "/ok", 1, rule, ("queue_depth",))
    workers.directory.mkdir(parents=True, exist_ok=True)
    firing = {
        "name": "queue_backed_up",
        "state": "firing",
        "severity": "warning",
        "labels": {},
        "annotations": {},
        "value": 99.0,
        "active_since": time.time() - 3600,
        "fired_at": time.time() - 3600,
        "last_notified": time.time() - 3600,
        "resolved_at": None,
    }
    old = {"pid": 1, "time": time.time() - 3600, "alerts": [firing]}
    (workers.directory / ALERTS_FILE).write_text(json.dumps(old))
    try:
        engine.start()
        _wait(lambda: engine.leading and engine.evaluations >= 3)
        assert engine.firing() == []
        # The same file, fresh, is taken over by the next leader.
        engine.stop()
        (workers.directory / ALERTS_FILE).write_text(json.dumps({**old, "time": time.time()}))
        engine.start()
        _wait(lambda: engine.leading and engine.evaluations >= 4)
        assert engine.dispatcher.flush(10)
        # Taken over firing; the gauge is unset, so the condition is false: resolved.
        (resolved,) = http_receiver.wait_for("/ok", 1, timeout=30)
        assert resolved.body["status"] == "resolved"
    finally:
        engine.stop()


def test_a_killed_leader_process_is_replaced_within_an_interval(tmp_path: Path) -> None:
    """The kernel drops a SIGKILLed holder's lock; the engine here takes it."""
    import signal
    import subprocess
    import sys

    directory = tmp_path / "mp"
    directory.mkdir(mode=0o700)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from eventmon.exporters.multiprocess._leader import EvaluatorLock\n"
            f"lock = EvaluatorLock({str(directory)!r})\n"
            "assert lock.poll()\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"held\n"
        c = MetricsCollector(slow_hooks=())
        enable(c, directory)
        engine = AlertEngine(c, [AlertRule("busy", "active_connections > 100")], interval=0.05)
        engine.start()
        try:
            _wait(lambda: c.gauges().get(EVALUATOR_GAUGE) == {(): 0.0})
            assert not engine.leading
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            _wait(lambda: engine.leading)
            assert c.gauges()[EVALUATOR_GAUGE] == {(): 1.0}
        finally:
            engine.stop()
            disable(c)
            c.shutdown()
    finally:
        child.kill()
        child.wait(10)


def test_a_single_process_engine_always_leads_and_sets_no_gauge(clock) -> None:
    c = MetricsCollector(slow_hooks=(), clock=clock)
    engine = AlertEngine(c, [AlertRule("busy", "active_connections > 100")], clock=clock)
    assert engine.leading
    engine._safe_evaluate()
    assert engine.evaluations == 1
    assert EVALUATOR_GAUGE not in c.gauges()


# -------------------------------------------------------- the instance's figures

_REFS = [
    "requests_per_second",
    "error_rate",
    "availability",
    "avg_response_time",
    "active_connections",
    "p50_response_time",
    "p90_response_time",
    "p95_response_time",
    "p99_response_time",
    'p95_response_time{endpoint="/orders"}',
    'p50_response_time{endpoint="/events/{id}"}',
    "payment_failures",
    "payment_failures_total",
    "queue_depth",
]


def _refs() -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    out = []
    for key in _REFS:
        name, _, rest = key.partition("{")
        labels = (("endpoint", rest.split('"')[1]),) if rest else ()
        out.append((key, name, labels))
    return out


def test_merged_rule_values_equal_one_collector_fed_the_same_requests(
    tmp_path: Path, clock
) -> None:
    w = Workers(tmp_path / "mp", clock=clock)
    try:
        parts = [w.spawn(pid) for pid in (201, 202, 203)]
        single = MetricsCollector(slow_hooks=(), clock=clock)
        merged_m = RuleMetrics(parts[0], declare=["payment_failures"], clock=clock)
        single_m = RuleMetrics(single, declare=["payment_failures"], clock=clock)
        # The merged source's first look is a baseline only (the instance may
        # have served for hours): windowed values read NaN, never its past.
        first = merged_m.sample(_refs())
        assert math.isnan(first["requests_per_second"])
        assert math.isnan(first["payment_failures"])
        single_m.sample(_refs())
        for k, c in enumerate(parts):
            _feed(c, k, 50 + 17 * k)
            _feed(single, k, 50 + 17 * k)
            c.request_started()
            single.request_started()
        single.set_gauge("queue_depth", 30)  # the largest of the workers' gauges
        clock.advance(30)
        for c in parts[1:]:
            c.multiprocess.write()
        got = merged_m.sample(_refs())
        want = single_m.sample(_refs())
        assert got == pytest.approx(want, rel=1e-9)
        # And not one worker's slice:
        assert got["requests_per_second"] == pytest.approx((50 + 67 + 84) / 30)
        assert got["active_connections"] == 3
        assert got["payment_failures"] == 6
    finally:
        w.close()


def test_merged_values_slide_with_the_window(tmp_path: Path, clock) -> None:
    w = Workers(tmp_path / "mp", clock=clock)
    try:
        a, b = w.spawn(301), w.spawn(302)
        m = RuleMetrics(a, declare=["payment_failures"], clock=clock)
        refs = _refs()
        m.sample(refs)
        a.observe("GET", "/orders", 500, 0.1)
        b.observe("GET", "/orders", 200, 0.3)
        b.multiprocess.write()
        clock.advance(20)
        v = m.sample(refs)
        assert v["error_rate"] == 0.5
        assert v["avg_response_time"] == pytest.approx(200.0)
        assert v["requests_per_second"] == pytest.approx(2 / 20)
        clock.advance(61)  # both requests have left the window
        m.sample(refs)
        clock.advance(20)
        v = m.sample(refs)
        assert (v["requests_per_second"], v["error_rate"], v["availability"]) == (0.0, 0.0, 1.0)
    finally:
        w.close()


def test_merged_cpu_and_memory_are_the_instance_s(tmp_path: Path, clock) -> None:
    w = Workers(tmp_path / "mp", clock=clock)
    try:
        parts = [w.spawn(pid) for pid in (401, 402)]
        limits = ResourceLimits(cpu_cores=2.0, memory_bytes=1 << 40)
        m = RuleMetrics(parts[0], clock=clock)
        refs = [(n, n, ()) for n in ("memory_rss_bytes", "memory_usage", "cpu_usage")]
        from eventmon.alerting._merged import MergedSampler

        m._merged = MergedSampler(m.window, limits=limits)
        m.sample(refs)
        parts[1].multiprocess.write()
        clock.advance(10)
        v = m.sample(refs)
        # Both simulated workers are this process: twice its resident memory.
        view = parts[0].multiprocess.view()
        rss = sum(p[2] or 0 for p in view.processes())
        assert rss > 0
        assert v["memory_rss_bytes"] == pytest.approx(rss, rel=0.2)
        assert v["memory_usage"] == pytest.approx(rss / (1 << 40) * 100, rel=0.2)
        assert 0.0 <= v["cpu_usage"] <= 100.0
    finally:
        w.close()


def test_a_damaged_alerts_file_falls_back_to_the_worker_s_own_states(
    workers: Workers, http_receiver
) -> None:
    rule = AlertRule("payment_failing", "payment_failures > 0")
    leader, follower = _engines(workers, http_receiver.url + "/ok", 2, rule)
    try:
        # One tick each, by hand (no loops that would rewrite the file meanwhile).
        leader._prime()
        follower._prime()
        assert (leader.leading, follower.leading) == (True, False)
        workers.collectors[0].increment_counter("payment_failures")
        leader._safe_evaluate()
        assert follower.firing() == ["payment_failing"]  # published by the leader
        path = workers.directory / ALERTS_FILE
        for garbage in (b"{not json", b'{"alerts": [{"name": "x", "state": "on fire"}]}', b"[]"):
            path.write_bytes(garbage)
            assert [s.state for s in follower.alerts()] == ["inactive"]
        path.unlink()
        (workers.directory / "elsewhere").write_text('{"alerts": []}')
        os.symlink(workers.directory / "elsewhere", path)
        assert [s.state for s in follower.alerts()] == ["inactive"]  # never read through
    finally:
        leader.stop()
        follower.stop()


def test_several_percentiles_of_one_window_read_it_once(tmp_path: Path, clock) -> None:
    """p50 and p99 of the same endpoint in one rule: both NaN at the first look, then right."""
    w = Workers(tmp_path / "mp", clock=clock)
    try:
        (a,) = [w.spawn(601)]
        m = RuleMetrics(a, clock=clock)
        refs = [(n, n, ()) for n in ("p50_response_time", "p99_response_time")]
        first = m.sample(refs)
        assert math.isnan(first["p50_response_time"])
        assert math.isnan(first["p99_response_time"])
        for ms in range(1, 101):
            a.observe("GET", "/orders", 200, ms / 1000)
        clock.advance(10)
        v = m.sample(refs)
        assert v["p50_response_time"] == pytest.approx(50, rel=0.02)
        assert v["p99_response_time"] == pytest.approx(99, rel=0.02)
    finally:
        w.close()
