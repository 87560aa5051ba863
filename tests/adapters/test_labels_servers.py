"""Labels per request (``header_labels``, ``label_callbacks``) through real servers
on 127.0.0.1: Starlette under uvicorn, and Flask under gunicorn with two sync
workers whose series are merged by worker aggregation (``EVENTMON_MULTIPROC_DIR``).

The test clients of the adapter suite hand headers over as the test wrote them;
here the server parses them off the wire (uvicorn lower-cases ASGI header names,
gunicorn turns them into ``HTTP_X_TENANT``), and the page each server answers is
checked with Prometheus's own ``promtool``.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from eventmon import MetricsCollector
from servers import PYTHON, free_port, promtool_check, running, uvicorn_server

# A quote and a backslash, which the exposition format escapes in a label value (a
# newline, the third, cannot travel in a header).
QUOTED = 'q"u\\ote'


def request(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET on a fresh connection (so that requests spread over workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close", **headers})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def requests_by(
    text: str, *labels: str, sample: str = "http_requests_total"
) -> Counter[tuple[str, ...]]:
    """``sample``'s values summed by ``labels``, read with prometheus_client's parser."""
    out: Counter[tuple[str, ...]] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample:
                out[tuple(s.labels[name] for name in labels)] += int(s.value)
    return out


def test_uvicorn_starlette_header_and_callback_labels() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from eventmon.asgi import EventmonMiddleware

    async def order(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    def plan(scope: Any) -> str:
        # A callback gets the ASGI scope: here the query string says the plan.
        query = scope["query_string"].decode()
        return query.removeprefix("plan=") if query.startswith("plan=") else "free"

    collector = MetricsCollector(slow_hooks=())
    app = EventmonMiddleware(
        Starlette(routes=[Route("/orders/{order_id}", order)]),
        collector=collector,
        header_labels={"tenant": "X-Tenant"},
        label_callbacks={"plan": plan},
    )
    sent: list[tuple[str, dict[str, str]]] = (
        [(f"/orders/{i}", {"X-Tenant": "acme"}) for i in range(5)]
        + [(f"/orders/{i}?plan=pro", {"x-tenant": "acme"}) for i in range(2)]  # any case
        + [("/orders/9", {"X-TENANT": "globex"})] * 3
        + [("/orders/9", {})] * 2  # no header: ""
        + [("/orders/1", {"X-Tenant": QUOTED})]
        + [("/orders/1", {"X-Tenant": "t" * 150})]  # cut to 100 characters
    )
    try:
        with uvicorn_server(app) as base:
            port = int(base.rsplit(":", 1)[1])
            for path, headers in sent:
                assert request(port, path, headers) == (200, b"ok")
            status, page = request(port, "/metrics", {})
    finally:
        collector.shutdown()
    assert status == 200
    text = page.decode()
    promtool_check(text)
    assert requests_by(text, "endpoint", "tenant", "plan") == {
        ("/orders/{order_id}", "acme", "free"): 5,
        ("/orders/{order_id}", "acme", "pro"): 2,
        ("/orders/{order_id}", "globex", "free"): 3,
        ("/orders/{order_id}", "", "free"): 2,
        ("/orders/{order_id}", QUOTED, "free"): 1,
        ("/orders/{order_id}", "t" * 100, "free"): 1,
    }


def test_gunicorn_two_sync_workers_merge_the_tenant_label(tmp_path: Path) -> None:
    """Two real workers: requests, body sizes and exemplars, per tenant, merged on one page."""
    env = {
        "EVENTMON_MULTIPROC_DIR": str(tmp_path / "mp"),
        "EVENTMON_MULTIPROC_INTERVAL": "0.2",
        "MP_TENANT_LABEL": "1",
        "MP_SIZE_METRICS": "1",
        "MP_EXEMPLARS": "1",
    }
    tenants = {"acme": 24, "globex": 16, "": 8}  # "": no header at all
    plan = [t for t, n in tenants.items() for _ in range(n)]
    port = free_port()
    cmd = [
        PYTHON, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
        "--graceful-timeout", "5", "apps.mp_flask_app:app",
    ]  # fmt: skip
    served: list[tuple[str, int]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        tenant = plan[i]
        headers = {("X-Tenant" if i % 2 else "x-tenant"): tenant} if tenant else {}
        headers["traceparent"] = f"00-{i + 1:032x}-00f067aa0ba902b7-01"
        status, body = request(port, "/work/20", headers)
        assert status == 200, body
        with lock:
            served.append((tenant, int(body)))

    with running(cmd, port, env=env):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(len(plan))))
        # Each worker writes its state every 0.2 s; the page merges what is on disk.
        deadline = time.monotonic() + 15
        while True:
            status, page = request(port, "/metrics", {})
            text = page.decode()
            merged = requests_by(text, "endpoint", "status_code", "tenant")
            if sum(merged.values()) >= len(plan) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        _, openmetrics = request(port, "/metrics", {"Accept": "application/openmetrics-text"})
    assert status == 200
    workers = {pid for _, pid in served}
    assert len(workers) == 2, served  # both workers answered
    for tenant in tenants:  # and each tenant's requests reached both
        assert {pid for t, pid in served if t == tenant} == workers, (tenant, served)
    assert merged == {("/work/<int:ms>", "200", t): n for t, n in tenants.items()}
    # Body sizes are merged too: every response counted once, its bytes (the pid) summed.
    size_counts = requests_by(text, "tenant", sample="http_response_size_bytes_count")
    assert size_counts == {(t,): n for t, n in tenants.items()}
    size_sums = requests_by(text, "tenant", sample="http_response_size_bytes_sum")
    for tenant in tenants:
        assert size_sums[(tenant,)] == sum(len(str(pid)) for t, pid in served if t == tenant)
    # Exemplars from both workers reach the merged page: each is the trace of a request
    # of its own tenant, and every tenant has one.
    traced = {}
    for family in openmetrics_families(openmetrics.decode()):
        for s in family.samples:
            if s.exemplar is not None:
                traced[s.exemplar.labels["trace_id"]] = s.labels["tenant"]
    sent = {f"{i + 1:032x}": plan[i] for i in range(len(plan))}
    assert traced
    assert all(sent[trace] == tenant for trace, tenant in traced.items()), traced
    assert set(traced.values()) == set(tenants)
    promtool_check(text)
