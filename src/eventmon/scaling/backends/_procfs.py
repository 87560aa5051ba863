"""Linux /proc probes: is a freshly started worker already serving?

Each probe answers True, False, or None when the platform does not say (no
/proc, no permission); callers treat None as "cannot tell" and fall back to
"the process is alive".
"""

from __future__ import annotations

import os

__all__ = ["gunicorn_heartbeat_seen", "listening_inodes", "polls_listener"]


def _fds(pid: int) -> list[tuple[str, str]]:
    base = f"/proc/{pid}/fd"
    out = []
    for fd in os.listdir(base):
        try:
            out.append((fd, os.readlink(f"{base}/{fd}")))
        except OSError:
            continue
    return out


def gunicorn_heartbeat_seen(pid: int) -> bool | None:
    """Has gunicorn worker ``pid`` touched its heartbeat file yet?

    A gunicorn worker notifies the master (``utime`` on an unlinked
    ``wgunicorn-*`` temp file) first when it enters its accept loop, after
    loading the app. The notify sets the mtime to a monotonic-clock value,
    unlike the creation time the file starts with.
    """
    try:
        for fd, target in _fds(pid):
            if "wgunicorn-" in target:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
                return abs(st.st_mtime - st.st_ctime) > 1.0
    except OSError:
        return None
    return None


def listening_inodes(master_pid: int) -> set[int]:
    """Socket inodes the master listens on (TCP or Unix)."""
    import psutil

    inodes = set()
    for conn in psutil.Process(master_pid).net_connections(kind="all"):
        if conn.status in (psutil.CONN_LISTEN, psutil.CONN_NONE) and conn.fd >= 0:
            if conn.status == psutil.CONN_NONE and not conn.laddr:
                continue
            try:
                inodes.add(os.stat(f"/proc/{master_pid}/fd/{conn.fd}").st_ino)
            except OSError:
                continue
    return inodes


def polls_listener(pid: int, inodes: set[int]) -> bool | None:
    """Does ``pid`` have one of the listening sockets in an epoll set?

    An asyncio (or libuv) server registers its listening socket with the event
    loop's epoll instance only once it serves; /proc/<pid>/fdinfo lists the
    watched descriptors as ``tfd:`` lines.
    """
    if not inodes:
        return None
    try:
        fds = _fds(pid)
        for fd, target in fds:
            if target != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if not line.startswith("tfd:"):
                        continue
                    tfd = line.split()[1]
                    try:
                        if os.stat(f"/proc/{pid}/fd/{tfd}").st_ino in inodes:
                            return True
                    except OSError:
                        continue
    except OSError:
        return None
    return False
