"""Kubernetes: set a Deployment's replicas through its ``scale`` subresource (apps/v1).

Uses the official ``kubernetes`` client (``pip install 'eventmon[k8s]'``),
imported only when the backend is created. Draining is the Deployment's own:
a removed pod gets SIGTERM after its ``preStop`` hook and has
``terminationGracePeriodSeconds`` to finish its requests (see docs/scaling.md).
A scale-out waits until the Deployment reports that many ready replicas.
"""

from __future__ import annotations

import time
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon._validate import seconds
from eventmon.scaling.backends._prefork import ScalingFailed
from eventmon.types import Clock

__all__ = ["KubernetesBackend", "ScalingFailed"]


class KubernetesBackend:
    """Replica count of one Deployment.

    Args:
        deployment: the Deployment's name.
        namespace: its namespace (default ``"default"``).
        api: a ``kubernetes.client.AppsV1Api``; by default one is built from
            the in-cluster service account, else from ``~/.kube/config``.
        ready_timeout: seconds a scale-out waits for ready replicas (0: do not wait).
    """

    name = "kubernetes"

    def __init__(
        self,
        deployment: str,
        *,
        namespace: str = "default",
        api: Any = None,
        ready_timeout: float = 300.0,
        poll_interval: float = 2.0,
        request_timeout: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if not deployment or not isinstance(deployment, str):
            raise ConfigurationError("deployment must be the Deployment's name")
        ready_timeout = seconds("ready_timeout", ready_timeout, allow_zero=True)
        poll_interval = seconds("poll_interval", poll_interval)
        request_timeout = seconds("request_timeout", request_timeout)
        if api is None:
            api = _default_api()
        self.deployment = deployment
        self.namespace = namespace
        self.api = api
        self.ready_timeout = float(ready_timeout)
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.clock = clock

    def current(self) -> int:
        """The Deployment's desired replica count (``spec.replicas`` of its scale)."""
        scale = self.api.read_namespaced_deployment_scale(
            self.deployment, self.namespace, _request_timeout=self.request_timeout
        )
        return int(scale.spec.replicas or 0)

    def ready_replicas(self) -> int:
        """Replicas that pass their readiness probe now."""
        dep = self.api.read_namespaced_deployment(
            self.deployment, self.namespace, _request_timeout=self.request_timeout
        )
        status = dep.status
        return int((status.ready_replicas if status is not None else 0) or 0)

    def scale_to(self, n: int) -> bool:
        """Patch ``spec.replicas``; on a scale-out, wait for ``n`` ready replicas."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigurationError(f"a replica count must be an int >= 0, got {n!r}")
        before = self.current()
        self.api.patch_namespaced_deployment_scale(
            self.deployment,
            self.namespace,
            {"spec": {"replicas": n}},
            _request_timeout=self.request_timeout,
        )
        if n <= before or self.ready_timeout == 0:
            return True
        deadline = self.clock() + self.ready_timeout
        while True:
            if self.ready_replicas() >= n:
                return True
            if self.clock() >= deadline:
                return False
            time.sleep(self.poll_interval)


def _default_api() -> Any:
    try:
        from kubernetes import client, config
    except ImportError as e:
        raise ConfigurationError(
            "the Kubernetes backend needs the kubernetes client: pip install 'eventmon[k8s]'"
        ) from e
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except Exception as e:
            raise ConfigurationError(
                "no Kubernetes credentials: run in a pod with a service account, set up"
                " ~/.kube/config, or pass api=kubernetes.client.AppsV1Api(...)"
            ) from e
    return client.AppsV1Api()
