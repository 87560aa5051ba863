"""gunicorn: change the worker count with TTIN / TTOU sent to the master.

TTOU makes the master stop its *oldest* worker with SIGTERM, a graceful stop:
the worker stops accepting and finishes its in-flight requests within
``--graceful-timeout``. A new worker counts as serving once it has touched its
heartbeat file, which it first does on entering its accept loop.

Example (beside a running gunicorn)::

    backend = GunicornBackend(pidfile="/run/gunicorn.pid")
    backend.scale_to(4)
"""

from __future__ import annotations

import signal

from eventmon.scaling.backends._prefork import PreforkBackend, ScalingFailed
from eventmon.scaling.backends._procfs import gunicorn_heartbeat_seen

__all__ = ["GunicornBackend", "ScalingFailed"]


class GunicornBackend(PreforkBackend):
    """Worker count of a gunicorn master (``master_pid=`` or ``pidfile=``).

    Inside gunicorn's own ``when_ready(server)`` hook use ``master_pid=server.pid``.
    """

    name = "gunicorn"
    add_signal = signal.SIGTTIN
    remove_signal = signal.SIGTTOU
    retires = "oldest"

    def _default_ready(self, pid: int) -> bool | None:
        return gunicorn_heartbeat_seen(pid)
