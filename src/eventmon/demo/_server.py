"""Runs the demo: the app and its server, the load, the simulated fleet and its scaler.

Starlette runs under uvicorn; Flask and Django under a threaded WSGI server
from the standard library. Everything else is the same for all three.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import socket
import threading
import time
from typing import Any

from eventmon.collector import MetricsCollector
from eventmon.dashboard import Dashboard
from eventmon.demo._alerts import make_autoscaler, make_engine, scaling_view
from eventmon.demo._app import TICKETS, Ticketing, template
from eventmon.demo._load import LoadGenerator
from eventmon.demo._state import DemoState, SimulatedCluster, load_profile

__all__ = ["DemoServer"]

logger = logging.getLogger("eventmon.demo")


class DemoServer:
    """One demo run: build everything, serve until told to stop, clean up."""

    def __init__(self, sock: socket.socket, args: argparse.Namespace) -> None:
        self.sock = sock
        self.args = args
        self.port = int(sock.getsockname()[1])
        # A short window: the demo's figures react within seconds, not a minute.
        self.collector = MetricsCollector(window=10, slow_threshold=1.0, slow_hooks=())
        self.state = DemoState(
            cycle=args.cycle,
            opening_at=args.opening_at,
            opening_for=args.opening_for,
            clock=time.monotonic,
        )
        self.cluster = SimulatedCluster(self._rps, instances=2)
        self.profile = load_profile()
        self.stopping = threading.Event()
        self.framework: str = args.framework
        self.ticketing = Ticketing(self.state)
        self.engine = make_engine(self.collector, template(TICKETS, self.framework))
        self.autoscaler = make_autoscaler(self.cluster, self.collector, self.engine, self._floor)
        self.dashboard = Dashboard(
            self.collector,
            token=args.token,
            alerts_provider=self.engine.alerts,
            scaling_provider=lambda: scaling_view(self.autoscaler, self.cluster),
            forecast_provider=self._forecast,
            max_stream_seconds=60,
        )
        self.load: LoadGenerator | None = None
        self._threads: list[threading.Thread] = []

    # --------------------------------------------------------------- providers

    def _rps(self) -> float:
        return self.collector.get_realtime_metrics().requests_per_second

    def _floor(self, now: float) -> int | None:
        """Pre-scale ahead of each opening: the predictive floor for the known schedule."""
        phase = self.state.elapsed() % self.state.cycle
        until = (self.state.opening_at - phase) % self.state.cycle
        if until <= 5.0 or self.state.opening:
            peak = float(self.args.rate) * float(self.args.spike)
            return min(20, max(2, math.ceil(peak / (self.cluster.capacity_rps * 0.7))))
        return None

    def _forecast(self) -> Any:
        """The next minutes of traffic the demo's schedule implies (cycle-aware)."""
        now = self.state.elapsed()
        points = []
        for step in range(0, 121, 5):
            t = now + step
            phase = t % self.state.cycle
            opening = (
                self.state.opening_at <= phase < self.state.opening_at + self.state.opening_for
            )
            rate = self.args.rate * self.profile.rate_factor(t / 120.0)
            if opening:
                rate *= self.args.spike
            points.append({"in_seconds": step, "value": round(rate, 1)})
        until = (self.state.opening_at - now % self.state.cycle) % self.state.cycle
        return {
            "source": "demo schedule",
            "next_opening_in_seconds": round(until, 1),
            "peak_rps": max(p["value"] for p in points),
            "points": points,
        }

    # ------------------------------------------------------------------ loops

    def _sample_loop(self) -> None:
        while not self.stopping.wait(1.0):
            self.dashboard.sample()

    def _start_thread(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ------------------------------------------------------------------ serve

    def serve(self) -> int:
        """Serve until Ctrl-C (SIGINT), SIGTERM or ``--duration``; returns the exit code."""
        from eventmon.demo._frameworks import build_app

        app = build_app(self.framework, self.ticketing, self.collector, self.dashboard)
        self._start_thread(self._sample_loop, "eventmon-demo-sampler")
        self.engine.start()
        self.autoscaler.start()
        interrupted = False
        try:
            if self.framework == "starlette":
                interrupted = self._serve_asgi(app)
            else:
                interrupted = self._serve_wsgi(app)
        finally:
            self.stopping.set()
            if self.load is not None:
                self.load.stop()
            self.autoscaler.stop(5.0)
            self.engine.stop(2.0)
            for t in self._threads:
                t.join(3.0)
            self.sock.close()
            self.collector.shutdown()
        total = self.collector.total_requests()
        sent = self.load.sent if self.load is not None else 0
        print(
            f"eventmon demo: stopped{' (Ctrl-C)' if interrupted else ''};"
            f" {total} requests served, {sent} sent by the load generator",
            flush=True,
        )
        return 0

    def _serve_asgi(self, app: Any) -> bool:
        """uvicorn on the socket; True if stopped by Ctrl-C."""
        import uvicorn

        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)

        def announce() -> None:
            while not server.started and not self.stopping.wait(0.05):
                pass
            if not self.stopping.is_set():
                self._announce()

        def stop() -> None:
            server.should_exit = True

        # Our own SIGINT handler, so that knowing about the Ctrl-C does not depend on
        # when it arrives: uvicorn swaps in its handlers while serving and, once
        # stopped, hands the signal back to this one (asyncio's own handler, which
        # would otherwise be there, may turn it into a KeyboardInterrupt or not,
        # depending on timing).
        signalled: list[int] = []

        def on_sigint(signum: int, frame: Any) -> None:
            signalled.append(signum)
            stop()

        self._start_thread(announce, "eventmon-demo-announce")
        self._stop_after_duration(stop)
        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            server.run(sockets=[self.sock])
        except KeyboardInterrupt:
            return True
        finally:
            signal.signal(signal.SIGINT, previous)
        return bool(signalled)

    def _serve_wsgi(self, app: Any) -> bool:
        """A threaded WSGI server on the socket; True if stopped by Ctrl-C."""
        from eventmon.demo._wsgi import make_server

        server = make_server(self.sock, app)
        signalled: list[int] = []

        def stop() -> None:
            # shutdown() waits for serve_forever() to return: not from its own thread.
            threading.Thread(target=server.shutdown, name="eventmon-demo-stop").start()

        def on_signal(signum: int, frame: Any) -> None:
            signalled.append(signum)
            stop()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._stop_after_duration(stop)
        try:
            self._announce()
            server.serve_forever(poll_interval=0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            server.server_close()
        return signal.SIGINT in signalled

    def _stop_after_duration(self, stop: Any) -> None:
        if self.args.duration > 0:

            def deadline() -> None:
                if not self.stopping.wait(self.args.duration):
                    stop()

            self._start_thread(deadline, "eventmon-demo-deadline")

    def _announce(self) -> None:
        """Print the URLs, then start the load: the app is listening."""
        base = f"http://127.0.0.1:{self.port}"
        token = f"?token={self.args.token}" if self.args.token else ""
        print(
            f"eventmon demo: sample event-ticketing app ({self.framework}) on {base}\n"
            f"  dashboard  {base}{self.dashboard.prefix}{token}\n"
            f"  metrics    {base}/metrics\n"
            f"  ticket sale opens {self.args.opening_at:g}s into every {self.args.cycle:g}s"
            f" cycle; Ctrl-C to stop",
            flush=True,
        )
        if not self.args.no_load:
            self.load = LoadGenerator(
                self.port,
                self.profile,
                self.state,
                base_rate=self.args.rate,
                spike=self.args.spike,
            )
            self.load.start()
