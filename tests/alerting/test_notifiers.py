"""Channels against real peers on 127.0.0.1: an HTTP server and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from eventmon import ConfigurationError, MetricsCollector
from eventmon.alerting.notifiers import (
    AlertmanagerNotifier,
    AlertNotice,
    DashboardFeed,
    EmailNotifier,
    NotificationDispatcher,
    ScalingEvent,
    SlackNotifier,
    WebhookNotifier,
)
from servers import free_port, require_binary

pytestmark = pytest.mark.slow

FIRING = AlertNotice(
    name="high_error_rate",
    status="firing",
    severity="critical",
    labels={"team": "web"},
    annotations={"summary": "More than 5 % of requests fail"},
    value=0.25,
    starts_at=1_700_000_000.0,
    condition="error_rate > 0.05",
)
RESOLVED = AlertNotice(
    name="high_error_rate",
    status="resolved",
    severity="critical",
    labels={"team": "web"},
    starts_at=1_700_000_000.0,
    ends_at=1_700_000_300.0,
    condition="error_rate > 0.05",
)


def test_slack_payload_reaches_the_webhook(http_receiver) -> None:
    d = NotificationDispatcher([SlackNotifier(http_receiver.url + "/ok", channel="#ops")])
    d.dispatch(FIRING)
    d.dispatch(RESOLVED)
    assert d.flush(10)
    first, second = http_receiver.wait_for("/ok", 2)
    assert first.headers["Content-Type"] == "application/json"
    assert first.body["text"] == "[FIRING] high_error_rate (critical)"
    assert first.body["channel"] == "#ops"
    att = first.body["attachments"][0]
    assert att["color"] == "#d7263d"
    assert "More than 5 % of requests fail" in att["text"]
    assert {"title": "value", "value": "0.25", "short": True} in att["fields"]
    assert second.body["text"].startswith("[RESOLVED]")
    assert second.body["attachments"][0]["color"] == "#2a9d8f"
    assert d.stats()["slack"].sent == 2
    d.shutdown()


def test_slack_429_waits_for_retry_after(http_receiver) -> None:
    # Backoff is 5 s, so a delivery about 1 s later shows Retry-After: 1 was used.
    d = NotificationDispatcher([SlackNotifier(http_receiver.url + "/limited")], backoff=5)
    started = time.monotonic()
    d.dispatch(FIRING)
    (got,) = http_receiver.wait_for("/limited", 1, timeout=10)
    waited = got.at - started
    assert 0.9 <= waited < 3.0
    assert http_receiver.hits["/limited"] == 2
    assert d.flush(5)
    stats = d.stats()["slack"]
    assert (stats.sent, stats.retries, stats.failed) == (1, 1, 0)
    assert "429" in stats.last_error
    d.shutdown()


def test_webhook_json_for_alerts_and_scaling_events(http_receiver) -> None:
    d = NotificationDispatcher(
        [WebhookNotifier(http_receiver.url + "/ok", headers={"Authorization": "Bearer t"})]
    )
    d.dispatch(FIRING)
    d.notify_scaling_event({"from": 2, "to": 5, "reason": "cpu 91%", "duration": 33.5})
    alert, scaling = http_receiver.wait_for("/ok", 2)
    assert alert.headers["Authorization"] == "Bearer t"
    assert alert.body["kind"] == "alert"
    assert alert.body["status"] == "firing"
    assert alert.body["labels"] == {"team": "web"}
    assert alert.body["value"] == 0.25
    assert scaling.body["kind"] == "scaling"
    assert (scaling.body["from"], scaling.body["to"], scaling.body["direction"]) == (2, 5, "out")
    assert scaling.body["duration"] == 33.5
    assert scaling.body["reason"] == "cpu 91%"
    d.shutdown()


def test_failures_are_retried_with_backoff_logged_and_counted(http_receiver, caplog) -> None:
    col = MetricsCollector(slow_hooks=())
    d = NotificationDispatcher(
        [WebhookNotifier(http_receiver.url + "/fail")],
        retries=2,
        backoff=0.05,
        on_error=col.record_internal_error,
    )
    d.dispatch(FIRING)
    assert d.flush(10)
    assert http_receiver.hits["/fail"] == 3
    stats = d.stats()["webhook"]
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 2)
    assert "HTTP 500" in stats.last_error
    assert col.internal_errors() == {"notifier:webhook": 1}
    assert "notifier webhook failed after 3 attempt(s)" in caplog.text
    d.shutdown()


def test_a_hanging_channel_delays_nobody(http_receiver, smtp_server) -> None:
    d = NotificationDispatcher(
        [
            SlackNotifier(http_receiver.url + "/hang"),
            WebhookNotifier(http_receiver.url + "/ok"),
            EmailNotifier(
                smtp_server.host, smtp_server.port, sender="eventmon@test", recipients=["ops@test"]
            ),
            DashboardFeed(),
        ],
        timeout=3,
        retries=0,
    )
    started = time.monotonic()
    for _ in range(3):
        d.dispatch(FIRING)
    assert time.monotonic() - started < 0.05  # dispatch never blocks the caller
    http_receiver.wait_for("/ok", 3, timeout=5)
    smtp_server.wait_for(3, timeout=5)
    others_done = time.monotonic() - started
    assert others_done < 2.0  # while Slack is still hanging
    assert d.stats()["slack"].sent == 0
    assert d.stats()["dashboard"].sent == 3
    # The hanging channel gives up at its timeout, then moves to the next one.
    deadline = time.monotonic() + 15
    while d.stats()["slack"].failed < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.stats()["slack"].failed >= 1
    assert "timed out" in d.stats()["slack"].last_error
    http_receiver.release.set()
    d.shutdown(timeout=10)


@pytest.mark.parametrize("phase", ["status", "body"])
@pytest.mark.parametrize("kind", ["slack", "webhook", "alertmanager"])
def test_a_dripping_server_holds_a_channel_no_longer_than_its_timeout(
    drip_server, kind: str, phase: str
) -> None:
    # One byte every 0.25 s: every socket read succeeds well inside the 1 s
    # timeout, so only a deadline on the whole attempt stops it (the full
    # answer would take ~15 s).
    drip_server.phase = phase
    notifier = {
        "slack": lambda: SlackNotifier(drip_server.url + "/services/T/B/x"),
        "webhook": lambda: WebhookNotifier(drip_server.url + "/hook"),
        "alertmanager": lambda: AlertmanagerNotifier(drip_server.url),
    }[kind]()
    d = NotificationDispatcher([notifier], timeout=1.0, retries=0)
    started = time.monotonic()
    d.dispatch(FIRING)
    assert d.flush(30)
    took = time.monotonic() - started
    stats = d.stats()[notifier.name]
    assert (stats.sent, stats.failed) == (0, 1)
    assert "timed out" in stats.last_error
    assert took < 1.0 + 1.5
    d.shutdown()


def test_a_dripping_smtp_server_holds_email_no_longer_than_its_timeout(drip_server) -> None:
    drip_server.phase = "smtp"
    n = EmailNotifier("127.0.0.1", drip_server.port, sender="a@test", recipients=["b@test"])
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        n.send(FIRING, timeout=1.0)
    assert time.monotonic() - started < 1.0 + 1.5


def test_https_webhook_delivers_and_keeps_its_deadline(tls_files, drip_server, monkeypatch) -> None:
    cert, key = tls_files
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the default context trusts our test CA
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    drip_server.tls = server_ctx
    drip_server.phase = "body"
    drip_server.interval = 0.05
    ok = WebhookNotifier(drip_server.url + "/hook")
    ok.send(FIRING, timeout=5.0)  # 20 bytes at 0.05 s: done within the deadline
    drip_server.interval = 0.25
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        ok.send(FIRING, timeout=1.0)
    assert time.monotonic() - started < 1.0 + 1.5


def test_urls_are_cut_to_scheme_and_host() -> None:
    from eventmon.alerting.notifiers._redact import redact_url, redact_urls

    assert (
        redact_url("https://hooks.slack.com/services/T0/B0/tok?x=1") == "https://hooks.slack.com/…"
    )
    assert redact_url("http://user:pw@[::1]:9093/api/v2/alerts") == "http://[::1]:9093/…"
    assert redact_url("not a url") == "<url>"
    text = "HTTPError: HTTP 404 from https://a.test/…: no_service; see http://u:p@b.test:8/x?k=v."
    assert redact_urls(text) == (
        "HTTPError: HTTP 404 from https://a.test/…: no_service; see http://b.test:8/…"
    )


SECRET_PATH = "/missing/services/T0SECRET/B0SECRET/XXXXtokenXXXX?key=s3cret"


@pytest.mark.parametrize("kind", ["slack", "webhook", "alertmanager"])
def test_webhook_secrets_stay_out_of_logs_and_stats(http_receiver, caplog, kind: str) -> None:
    url = http_receiver.url + SECRET_PATH
    notifier = {
        "slack": lambda: SlackNotifier(url),
        "webhook": lambda: WebhookNotifier(url),
        "alertmanager": lambda: AlertmanagerNotifier(url),
    }[kind]()
    caplog.set_level("DEBUG")
    d = NotificationDispatcher([notifier], retries=1, backoff=0.01)
    d.dispatch(FIRING)
    assert d.flush(10)
    stats = d.stats()[notifier.name]
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 1)
    assert stats.last_error.startswith(f"HTTPError: HTTP 404 from {http_receiver.url}/…")
    assert "no_service" in stats.last_error
    assert "retrying" in caplog.text
    assert "failed after 2 attempt(s)" in caplog.text
    for secret in ("SECRET", "token", "s3cret", "/missing"):
        assert secret not in stats.last_error
        assert secret not in caplog.text
    d.shutdown()


def test_email_over_smtp(smtp_server) -> None:
    n = EmailNotifier(
        smtp_server.host,
        smtp_server.port,
        sender="eventmon@example.test",
        recipients=["ops@example.test", "oncall@example.test"],
    )
    d = NotificationDispatcher([n])
    d.dispatch(FIRING)
    d.notify_scaling_event(ScalingEvent(2, 3, "cpu 85%", 12.0))
    (rcpts, msg), (_, scaling) = smtp_server.wait_for(2)
    assert sorted(rcpts) == ["oncall@example.test", "ops@example.test"]
    assert msg["Subject"] == "[FIRING] high_error_rate (critical)"
    assert msg["From"] == "eventmon@example.test"
    body = msg.get_content()
    assert "condition: error_rate > 0.05" in body
    assert "value: 0.25" in body
    assert "label team: web" in body
    assert scaling["Subject"] == "[eventmon] scaled out: 2 -> 3 in 12.0s (cpu 85%)"
    d.shutdown()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_email_starttls_and_login(tls_files) -> None:
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    got: list[Any] = []
    logins: list[tuple[bytes, bytes]] = []
    done = threading.Event()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(
                (session.authenticated, message_from_bytes(envelope.content, policy=policy.default))
            )
            done.set()
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any):
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    port = free_port()
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        n = EmailNotifier("127.0.0.1", port, sender="a@test", recipients="b@test", starttls=True,
                          username="alerts", password="s3cret", ssl_context=client_ctx)  # fmt: skip
        n.send(FIRING, timeout=5)
        assert done.wait(5)
        assert logins == [(b"alerts", b"s3cret")]
        assert got[0][0] is True
        assert got[0][1]["Subject"].startswith("[FIRING]")
    finally:
        controller.stop()


def test_email_over_implicit_tls(tls_files) -> None:
    # SMTP_SSL wraps the socket the deadline opened (the notifier's own subclass).
    from aiosmtpd.controller import Controller

    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    got: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(envelope.rcpt_tos)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=server_ctx)
    controller.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        n = EmailNotifier("127.0.0.1", port, sender="a@test", recipients="b@test", use_tls=True,
                          ssl_context=client_ctx)  # fmt: skip
        n.send(FIRING, timeout=5)
        assert got == [["b@test"]]
    finally:
        controller.stop()


def test_configuration_mistakes_fail_early() -> None:
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        SlackNotifier("hooks.slack.com/services/x")
    with pytest.raises(ConfigurationError, match="recipients"):
        EmailNotifier("localhost", sender="a@b", recipients=[])
    with pytest.raises(ConfigurationError, match="username= and password="):
        EmailNotifier("localhost", sender="a@b", recipients=["c@d"], username="x")
    with pytest.raises(ConfigurationError, match="distinct name"):
        NotificationDispatcher([DashboardFeed(), DashboardFeed()])
    with pytest.raises(ConfigurationError, match="not a notifier"):
        NotificationDispatcher([object()])  # type: ignore[list-item]


def test_dashboard_feed_is_bounded_and_waitable() -> None:
    feed = DashboardFeed(maxlen=3)
    for i in range(5):
        feed.send(ScalingEvent(i, i + 1), timeout=1)
    events = feed.events()
    assert [e["id"] for e in events] == [3, 4, 5]
    assert feed.events(since=4)[0]["to"] == 5
    threading.Timer(0.05, feed.send, args=(FIRING, 1)).start()
    started = time.monotonic()
    new = feed.wait(5, timeout=5)
    assert [e["name"] for e in new] == ["high_error_rate"]
    assert time.monotonic() - started < 2
    assert feed.wait(6, timeout=0.05) == []
