"""The exceptions eventmon raises.

Every error eventmon raises on purpose derives from :class:`EventmonError`::

    EventmonError
    ├── ConfigurationError (also a ValueError)
    │   └── RuleError          a bad alert rule: syntax, unknown metric, bad duration
    └── MultiprocessDamaged    (eventmon.exporters.multiprocess) a scrape refused
                               for a moment while a worker rewrites its lost file

and one warning category, :class:`AcceleratorWarning` (a ``RuntimeWarning``).

Configuration errors are raised when something is *defined* (a collector, a
middleware, a rule), never while a request is being served: the request path and
background loops log and count their faults instead of raising into the host app.
"""

from __future__ import annotations

__all__ = ["AcceleratorWarning", "ConfigurationError", "EventmonError", "RuleError"]


class EventmonError(Exception):
    """Base class of every exception eventmon raises on purpose."""


class ConfigurationError(EventmonError, ValueError):
    """A setting has a value eventmon cannot work with; the message says what to change."""


class RuleError(ConfigurationError):
    """An alert rule cannot be parsed or refers to something that does not exist."""


class AcceleratorWarning(RuntimeWarning):
    """eventmon runs its pure-Python code because its C accelerator was not built.

    Issued once, when eventmon is imported; not when ``EVENTMON_PURE_PYTHON`` is set.

    .. versionadded:: 0.1.0
    """
