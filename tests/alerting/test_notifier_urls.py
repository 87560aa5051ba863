"""Notifier URLs that can never deliver are refused when the notifier is built.

``https://user:password@host/...`` passes an http(s) prefix check, but urllib cannot
send it: every delivery failed (``Name or service not known``) while the app ran.
Now it is a ConfigurationError at start-up that shows none of the secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventmon import ConfigurationError
from eventmon.alerting.notifiers.alertmanager import AlertmanagerNotifier
from eventmon.alerting.notifiers.slack import SlackNotifier
from eventmon.alerting.notifiers.webhook import WebhookNotifier

MAKERS: dict[str, Callable[[str], Any]] = {
    "slack": SlackNotifier,
    "webhook": WebhookNotifier,
    "alertmanager": AlertmanagerNotifier,
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://bot:S3CRETpw@127.0.0.1:9/hook", "must not carry credentials"),
        ("http://S3CRETtoken@127.0.0.1:9/hook", "must not carry credentials"),
        ("https:///S3CRETpath", "has no host"),
    ],
    ids=["user-password", "user-only", "no-host"],
)
def test_undeliverable_urls_fail_at_start_up(kind: str, url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as e:
        MAKERS[kind](url)
    message = str(e.value)
    assert "\n" not in message
    assert "S3CRET" not in message


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_ordinary_urls_are_kept(kind: str) -> None:
    url = "https://hooks.example.com:8443/services/T0/B0/x?y=1"
    notifier = MAKERS[kind](url)
    kept = notifier.urls[0] if kind == "alertmanager" else notifier.url
    assert kept.startswith("https://hooks.example.com:8443/")
