"""eventmon's alerts in a real Alertmanager (prometheus-alertmanager on 127.0.0.1)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from eventmon import MetricsCollector
from eventmon.alerting import AlertEngine, AlertRule
from eventmon.alerting.notifiers import AlertmanagerNotifier
from servers import free_port, require_binary, running, wait_http

pytestmark = pytest.mark.slow


def _alerts(base: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(base + "/api/v2/alerts", timeout=5) as r:
        data: list[dict[str, Any]] = json.load(r)
        return data


def _wait(pred: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    return pred()


def test_alert_shows_in_alertmanager_is_resent_and_resolves(
    tmp_path: Path, http_receiver, clock
) -> None:
    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    # Alertmanager routes what it receives to a webhook: our HTTP receiver.
    config.write_text(
        "route:\n  receiver: hook\n  group_wait: 1s\n  group_interval: 1s\n"
        "  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n"
        f"      - url: {http_receiver.url}/ok\n        send_resolved: true\n"
    )
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    base = f"http://127.0.0.1:{port}"
    col = MetricsCollector(slow_hooks=(), clock=clock)
    col.set_gauge("queue_depth", 50)
    with running(cmd, port):
        wait_http(base + "/-/ready")
        notifier = AlertmanagerNotifier(base, resend_interval=0.5, labels={"instance": "web-1"})
        engine = AlertEngine(
            col,
            [AlertRule("deep_queue", "queue_depth > 10", severity="critical",
                       labels={"team": "web"}, annotations={"summary": "queue too deep"})],
            notifiers=[notifier],
            clock=clock,
        )  # fmt: skip
        (notice,) = engine.evaluate()
        assert notice.status == "firing"
        (alert,) = _wait(lambda: _alerts(base))
        assert alert["labels"] == {
            "alertname": "deep_queue",
            "severity": "critical",
            "team": "web",
            "instance": "web-1",
        }
        assert alert["annotations"]["summary"] == "queue too deep"
        assert alert["status"]["state"] == "active"
        first_update = alert["updatedAt"]
        # Alertmanager forgets an alert once endsAt (2 s ahead here) passes; the
        # notifier re-posts it every 0.5 s, so it is still active 3 s later.
        time.sleep(3)
        (alert,) = _alerts(base)
        assert alert["status"]["state"] == "active"
        assert alert["updatedAt"] > first_update
        # Alertmanager's own routing delivered it to the webhook receiver.
        (hook,) = http_receiver.wait_for("/ok", 1, timeout=10)
        assert hook.body["status"] == "firing"
        assert hook.body["alerts"][0]["labels"]["alertname"] == "deep_queue"
        # Clear the condition: a resolved post ends the alert in Alertmanager.
        col.set_gauge("queue_depth", 1)
        clock.advance(15)
        assert [n.status for n in engine.evaluate()] == ["resolved"]
        assert _wait(lambda: _alerts(base) == [])
        resolved = _wait(
            lambda: [r for r in http_receiver.on("/ok") if r.body["status"] == "resolved"]
        )
        assert resolved[0].body["alerts"][0]["labels"]["alertname"] == "deep_queue"
        engine.stop()
        assert notifier.active() == []
