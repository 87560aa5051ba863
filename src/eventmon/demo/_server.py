"""Runs the demo: the app under uvicorn, the load, the simulated fleet and its scaler."""

from __future__ import annotations

import argparse
import logging
import math
import socket
import threading
import time
from typing import Any

from eventmon.collector import MetricsCollector
from eventmon.dashboard import Dashboard
from eventmon.demo._alerts import make_autoscaler, make_engine, scaling_view
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
        self.engine = make_engine(self.collector)
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
        import uvicorn

        from eventmon.asgi import EventmonMiddleware
        from eventmon.demo._app import build_starlette_app

        app = EventmonMiddleware(
            build_starlette_app(self.state), collector=self.collector, dashboard=self.dashboard
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        base = f"http://127.0.0.1:{self.port}"
        token = f"?token={self.args.token}" if self.args.token else ""

        def announce() -> None:
            while not server.started and not self.stopping.wait(0.05):
                pass
            if self.stopping.is_set():
                return
            print(
                f"eventmon demo: sample event-ticketing app ({self.args.framework}) on {base}\n"
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

        def deadline() -> None:
            if not self.stopping.wait(self.args.duration):
                server.should_exit = True

        self._start_thread(announce, "eventmon-demo-announce")
        self._start_thread(self._sample_loop, "eventmon-demo-sampler")
        self.engine.start()
        self.autoscaler.start()
        if self.args.duration > 0:
            self._start_thread(deadline, "eventmon-demo-deadline")
        interrupted = False
        try:
            server.run(sockets=[self.sock])
        except KeyboardInterrupt:
            interrupted = True  # uvicorn re-raises the Ctrl-C it handled; we are done anyway
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
