from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from eventmon import ConfigurationError
from eventmon.scaling import AutoScalingManager, StepPolicy
from eventmon.scaling.sources import LocalWorkersSource, MetricsUnavailable, PrometheusSource
from k8s_contract import FakeDeployment, ScaleServer
from servers import PYTHON, free_port, prometheus_server, running, wait_http

HERE = Path(__file__).resolve().parent

# ------------------------------------------------------------------ Kubernetes
# A contract test: the real `kubernetes` client against a loopback server that
# speaks the apps/v1 scale subresource (k8s_contract.py). No cluster runs here.


@pytest.fixture
def k8s():
    kubernetes = pytest.importorskip("kubernetes")
    deployments = {("shop", "web"): FakeDeployment(2, ready_delay=0.4)}
    with ScaleServer(deployments) as server:
        cfg = kubernetes.client.Configuration(host=server.url)
        api_client = kubernetes.client.ApiClient(cfg)
        api = kubernetes.client.AppsV1Api(api_client)
        yield server, deployments[("shop", "web")], api
        api_client.close()


def backend(api, **kw):
    from eventmon.scaling.backends.kubernetes import KubernetesBackend

    kw.setdefault("poll_interval", 0.05)
    return KubernetesBackend("web", namespace="shop", api=api, **kw)


def test_k8s_current_reads_the_scale_subresource(k8s):
    server, _dep, api = k8s
    assert backend(api).current() == 2
    req = server.requests[-1]
    assert (req["method"], req["path"]) == (
        "GET",
        "/apis/apps/v1/namespaces/shop/deployments/web/scale",
    )


def test_k8s_scale_out_patches_and_waits_for_ready_replicas(k8s):
    server, dep, api = k8s
    b = backend(api, ready_timeout=10)
    t0 = time.monotonic()
    assert b.scale_to(5) is True
    took = time.monotonic() - t0
    assert dep.replicas == 5
    assert dep.ready() == 5
    assert took >= 0.4  # it waited until the new replicas were ready
    patch = next(r for r in server.requests if r["method"] == "PATCH")
    assert patch["path"] == "/apis/apps/v1/namespaces/shop/deployments/web/scale"
    assert patch["content_type"] in (
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    )
    assert b'"replicas": 5' in patch["body"] or b'"replicas":5' in patch["body"]
    assert any(
        r["method"] == "GET" and r["path"] == "/apis/apps/v1/namespaces/shop/deployments/web"
        for r in server.requests
    )


def test_k8s_scale_in_does_not_wait(k8s):
    server, dep, api = k8s
    dep.set(6)
    dep.ready_at = [0.0] * 6
    b = backend(api, ready_timeout=10)
    assert b.scale_to(3) is True
    assert dep.replicas == 3
    assert not any(r["path"].endswith("/deployments/web") for r in server.requests)


def test_k8s_ready_timeout_reports_unconfirmed(k8s):
    _server, dep, api = k8s
    dep.ready_delay = 30
    assert backend(api, ready_timeout=0.3).scale_to(4) is False
    assert dep.replicas == 4


def test_k8s_unknown_deployment_raises_the_api_error(k8s):
    from kubernetes.client.exceptions import ApiException

    from eventmon.scaling.backends.kubernetes import KubernetesBackend

    _server, _dep, api = k8s
    b = KubernetesBackend("nope", namespace="shop", api=api)
    with pytest.raises(ApiException) as e:
        b.current()
    assert e.value.status == 404


def test_k8s_through_the_manager(k8s):
    _server, dep, api = k8s

    class Hot:
        def read(self):
            return {"cpu_percent": 95.0}

    m = AutoScalingManager(
        backend(api, ready_timeout=10),
        Hot(),
        policy=StepPolicy(scale_down_stabilization=0),
    )
    event = m.evaluate()
    assert event is not None
    assert (event.from_instances, event.to_instances, event.backend) == (2, 3, "kubernetes")
    assert event.served
    assert event.duration is not None
    assert event.duration >= 0.4
    assert dep.replicas == 3


def test_k8s_rejects_bad_counts(k8s):
    _server, _dep, api = k8s
    with pytest.raises(ConfigurationError):
        backend(api).scale_to(-1)
    with pytest.raises(ConfigurationError):
        backend(api, ready_timeout=-1)


# ------------------------------------------------------------------ Prometheus


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    config = "global:\n  scrape_interval: 15s\n"
    with prometheus_server(tmp_path_factory.mktemp("prom"), config) as prom:
        yield prom.url


@pytest.mark.slow
def test_prometheus_source_vector_and_scalar(prometheus):
    assert PrometheusSource(prometheus, "vector(42)").read()["cpu_percent"] == 42.0
    assert PrometheusSource(prometheus, "scalar(vector(7.5))").read()["cpu_percent"] == 7.5


@pytest.mark.slow
def test_prometheus_source_combines_series(prometheus):
    q = (
        '(label_replace(vector(10), "pod", "a", "", "")'
        ' or label_replace(vector(30), "pod", "b", "", ""))'
    )
    assert PrometheusSource(prometheus, q).read() == {"cpu_percent": 20.0, "series": 2.0}
    assert PrometheusSource(prometheus, q, combine="max").read()["cpu_percent"] == 30.0
    assert PrometheusSource(prometheus, q, combine="sum", metric="load").read()["load"] == 40.0


@pytest.mark.slow
def test_prometheus_source_failures_raise_unavailable(prometheus):
    with pytest.raises(MetricsUnavailable, match="no samples"):
        PrometheusSource(prometheus, 'up{job="nothing-scraped"}').read()
    with pytest.raises(MetricsUnavailable, match="400"):
        PrometheusSource(prometheus, "rate(((").read()
    with pytest.raises(MetricsUnavailable, match="failed"):
        PrometheusSource(f"http://127.0.0.1:{free_port()}", "vector(1)", timeout=1).read()


def test_prometheus_source_configuration_mistakes():
    with pytest.raises(ConfigurationError, match="base URL"):
        PrometheusSource("prometheus:9090", "up")
    with pytest.raises(ConfigurationError, match="combine"):
        PrometheusSource("http://x:9090", "up", combine="median")
    with pytest.raises(ConfigurationError, match="query"):
        PrometheusSource("http://x:9090", "")


# ------------------------------------------------------- gunicorn and uvicorn


def gunicorn_cmd(port: int, workers: int = 2) -> list[str]:
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "-w",
        str(workers),
        "-k",
        "gthread",
        "--threads",
        "4",
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        str(HERE),
        "scaling_app:wsgi_app",
    ]


def uvicorn_cmd(port: int, workers: int = 2) -> list[str]:
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "--workers",
        str(workers),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--app-dir",
        str(HERE),
        "--log-level",
        "warning",
        "scaling_app:asgi_app",
    ]


def serving_pids(port: int, want: set[str] | None = None, seconds: float = 10.0) -> set[str]:
    """Worker pids seen answering /pid; with `want`, ask until all of them answered.

    An idle pre-fork server hands most connections to whichever worker wakes first,
    so sequential requests can miss a worker: ask in concurrent batches.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/pid", timeout=5) as r:
            return str(r.headers["X-Worker-Pid"])

    pids: set[str] = set()
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(16) as pool:
        while True:
            pids.update(pool.map(one, range(64)))
            if want is None or want <= pids or time.monotonic() > deadline:
                return pids


@pytest.mark.slow
@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_prefork_backend_adds_serving_workers_and_removes_them(server):
    from eventmon.scaling.backends.gunicorn import GunicornBackend
    from eventmon.scaling.backends.uvicorn import UvicornBackend

    port = free_port()
    cmd = gunicorn_cmd(port) if server == "gunicorn" else uvicorn_cmd(port)
    cls = GunicornBackend if server == "gunicorn" else UvicornBackend
    with running(cmd, port) as proc:
        wait_http(f"http://127.0.0.1:{port}/pid")
        b = cls(proc.pid, ready_timeout=20)
        deadline = time.monotonic() + 15
        while b.current() != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.current() == 2
        before = {p.pid for p in b.workers()}
        assert b.scale_to(4) is True
        assert b.current() == 4
        new = {p.pid for p in b.workers()} - before
        assert len(new) == 2
        # "ready" must mean serving: the new workers answer requests right away.
        assert all(b.is_ready(pid) for pid in new)
        assert {str(p) for p in new} <= serving_pids(port, {str(p) for p in new})
        assert b.scale_to(2) is True
        assert b.current() == 2
        survivors = {p.pid for p in b.workers()}
        if server == "gunicorn":
            assert survivors == new  # TTOU retires the oldest
        else:
            assert survivors == before  # uvicorn retires the newest
        deadline = time.monotonic() + 15
        while b.draining() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not b.draining()
        assert serving_pids(port) <= {str(p) for p in survivors}


@pytest.mark.slow
def test_local_workers_source_reads_worker_cpu():
    port = free_port()
    with running(gunicorn_cmd(port), port) as proc:
        wait_http(f"http://127.0.0.1:{port}/pid")
        src = LocalWorkersSource(proc.pid)
        with pytest.raises(MetricsUnavailable):
            src.read()  # first sight of the workers: nothing measured yet
        time.sleep(0.5)
        idle = src.read()
        assert idle["workers"] == 2
        assert idle["cpu_percent"] < 20
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/cpu?ms=50", timeout=5).read()
        busy = src.read()
        assert busy["cpu_percent_total"] > 30
        assert busy["cpu_percent_max"] >= busy["cpu_percent"]


def test_backend_configuration_mistakes(tmp_path):
    from eventmon.scaling.backends.gunicorn import GunicornBackend
    from eventmon.scaling.backends.uvicorn import UvicornBackend

    with pytest.raises(ConfigurationError, match="exactly one"):
        GunicornBackend()
    with pytest.raises(ConfigurationError, match="exactly one"):
        UvicornBackend(123, pidfile=tmp_path / "p")
    with pytest.raises(ConfigurationError, match="pid"):
        GunicornBackend(-4)
    with pytest.raises(ConfigurationError, match="master_pid"):
        LocalWorkersSource(0)


def test_pidfile_that_is_missing_is_a_scaling_failure(tmp_path):
    from eventmon.scaling.backends.gunicorn import GunicornBackend, ScalingFailed

    b = GunicornBackend(pidfile=tmp_path / "gunicorn.pid")
    with pytest.raises(ScalingFailed, match="cannot read a pid"):
        b.current()
