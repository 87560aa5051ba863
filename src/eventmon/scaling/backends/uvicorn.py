"""uvicorn ``--workers``: change the worker count with SIGTTIN / SIGTTOU to the supervisor.

uvicorn's multiprocess supervisor (0.30 and later) adds a worker on SIGTTIN
and, on SIGTTOU, removes the *newest* one: it sends it SIGTERM, and the worker
stops accepting and finishes its in-flight requests (bounded by
``--timeout-graceful-shutdown`` if set). The supervisor reads its signal queue
every half second. A new worker counts as serving once its event loop polls
the listening socket.
"""

from __future__ import annotations

import signal

from eventmon.scaling.backends._prefork import PreforkBackend, ScalingFailed
from eventmon.scaling.backends._procfs import listening_inodes, polls_listener

__all__ = ["ScalingFailed", "UvicornBackend"]


class UvicornBackend(PreforkBackend):
    """Worker count of a ``uvicorn --workers N`` supervisor (``master_pid=`` or ``pidfile=``)."""

    name = "uvicorn"
    add_signal = signal.SIGTTIN
    remove_signal = signal.SIGTTOU
    retires = "newest"

    def _default_ready(self, pid: int) -> bool | None:
        try:
            inodes = listening_inodes(self.master_pid)
        except Exception:  # psutil may be denied: then we cannot tell
            return None
        return polls_listener(pid, inodes)
