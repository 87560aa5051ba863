"""A small HTTP server on 127.0.0.1 that speaks the apps/v1 Deployment scale subresource.

It is a contract stand-in for the Kubernetes API server, not a cluster: it
answers the requests eventmon's Kubernetes backend makes (GET and PATCH on
``/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale``, GET on the
Deployment for ``readyReplicas``) with the shapes and status codes the real
API server uses, and records every request so tests can check them. Replicas
become ready ``ready_delay`` seconds after a scale-out.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/?]+)(/scale)?(?:\?.*)?$")
PATCH_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}


class FakeDeployment:
    def __init__(self, replicas: int, ready_delay: float) -> None:
        self.replicas = replicas
        self.ready_delay = ready_delay
        self.ready_at: list[float] = [0.0] * replicas  # when each replica is ready
        self.generation = 1

    def ready(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self.ready_at[: self.replicas] if t <= now)

    def set(self, n: int) -> None:
        now = time.monotonic()
        if n > len(self.ready_at):
            self.ready_at += [now + self.ready_delay] * (n - len(self.ready_at))
        self.ready_at = self.ready_at[:n]
        self.replicas = n
        self.generation += 1


class ScaleServer:
    def __init__(self, deployments: dict[tuple[str, str], FakeDeployment]) -> None:
        self.deployments = deployments
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": message,
                        "reason": reason,
                        "code": code,
                    },
                )

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                server.requests.append(
                    {
                        "method": method,
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "body": raw,
                    }
                )
                m = PATH.match(self.path)
                if not m:
                    return self._status(404, "NotFound", f"no route {self.path}")
                ns, name, scale = m.group(1), m.group(2), bool(m.group(3))
                dep = server.deployments.get((ns, name))
                if dep is None:
                    return self._status(404, "NotFound", f'deployments.apps "{name}" not found')
                if method == "PATCH":
                    if not scale:
                        return self._status(405, "MethodNotAllowed", "patch the scale")
                    ctype = (self.headers.get("Content-Type") or "").split(";")[0]
                    if ctype not in PATCH_TYPES:
                        return self._status(
                            415,
                            "UnsupportedMediaType",
                            "the body of the request was in an unknown format - accepted"
                            f" media types include: {', '.join(sorted(PATCH_TYPES))}",
                        )
                    try:
                        replicas = json.loads(raw)["spec"]["replicas"]
                    except (ValueError, KeyError, TypeError):
                        return self._status(400, "BadRequest", "invalid patch")
                    if not isinstance(replicas, int) or replicas < 0:
                        return self._status(
                            422, "Invalid", "spec.replicas: must be greater than or equal to 0"
                        )
                    dep.set(replicas)
                if scale:
                    return self._send(200, server.scale_obj(ns, name, dep))
                return self._send(200, server.deployment_obj(ns, name, dep))

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def scale_obj(ns: str, name: str, dep: FakeDeployment) -> dict[str, Any]:
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(dep.generation)},
            "spec": {"replicas": dep.replicas},
            "status": {"replicas": dep.replicas, "selector": f"app={name}"},
        }

    @staticmethod
    def deployment_obj(ns: str, name: str, dep: FakeDeployment) -> dict[str, Any]:
        labels = {"app": name}
        return {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": name, "namespace": ns, "generation": dep.generation},
            "spec": {
                "replicas": dep.replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                },
            },
            "status": {
                "observedGeneration": dep.generation,
                "replicas": dep.replicas,
                "readyReplicas": dep.ready(),
                "availableReplicas": dep.ready(),
            },
        }

    def __enter__(self) -> ScaleServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
