"""The Django app: ``INSTALLED_APPS = [..., "eventmon"]``.

It adds system checks, so that a mistake in ``settings.EVENTMON`` fails
``manage.py check`` (and ``runserver``, ``migrate``, a deploy's
``check --deploy``) with an ``eventmon.E…`` id, and database metrics
(:mod:`eventmon.django_db`) for every connection, unless
``EVENTMON = {"database_metrics": False}``. It has no models and no migrations.

Check ids:

* ``eventmon.E001`` — ``settings.EVENTMON`` is not what the middleware accepts;
* ``eventmon.E002`` — ``database_metrics`` is not ``True`` or ``False``;
* ``eventmon.W001`` — ``eventmon.django.EventmonMiddleware`` is not in ``MIDDLEWARE``,
  so requests are not recorded.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from eventmon._exceptions import ConfigurationError

__all__ = ["EventmonConfig", "check_settings"]

MIDDLEWARE = "eventmon.django.EventmonMiddleware"


def _database_metrics() -> bool:
    from eventmon._django_settings import raw_settings

    value = raw_settings().get("database_metrics", True)
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"settings.EVENTMON['database_metrics'] must be True or False, got {value!r}"
        )
    return value


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django system check: ``settings.EVENTMON`` parses as the middleware will parse it."""
    from eventmon._django_settings import dashboard_from_settings, read_settings

    out: list[checks.CheckMessage] = []
    try:
        collector, _ = read_settings()
        dashboard_from_settings(collector)
    except ConfigurationError as e:
        out.append(checks.Error(str(e), obj="settings.EVENTMON", id="eventmon.E001"))
    if isinstance(getattr(settings, "EVENTMON", None) or {}, dict):  # else E001 said it
        try:
            _database_metrics()
        except ConfigurationError as e:
            out.append(checks.Error(str(e), obj="settings.EVENTMON", id="eventmon.E002"))
    if MIDDLEWARE not in (getattr(settings, "MIDDLEWARE", None) or ()):
        out.append(
            checks.Warning(
                f"{MIDDLEWARE} is not in MIDDLEWARE, so requests are not recorded.",
                hint=f"Add {MIDDLEWARE!r} first in MIDDLEWARE.",
                id="eventmon.W001",
            )
        )
    return out


class EventmonConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    """Registers the system checks and installs the database metrics."""

    name = "eventmon"
    label = "eventmon"
    verbose_name = "eventmon"
    default = True

    def ready(self) -> None:
        checks.register(check_settings, "eventmon")
        try:
            if not _database_metrics():
                return
            from eventmon._django_settings import read_settings

            collector, _ = read_settings()
        except ConfigurationError:
            return  # reported by check_settings, raised again when the middleware loads
        from eventmon.django_db import install

        install(collector)
