"""A total time limit for one delivery attempt.

A socket timeout bounds each read, not the exchange: a peer that sends a byte
just inside the timeout can hold a channel for as long as it likes. A
:class:`Deadline` keeps a duplicate of every socket the attempt opens and shuts
them all down when the time is up, which ends whatever read, write or TLS
handshake is in progress at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

__all__ = ["Deadline"]


class Deadline:
    """``with Deadline(seconds) as d:`` — sockets passed to :meth:`watch` close at expiry.

    On leaving the block after expiry, the exception the cut-off caused (an
    EOF, a reset) is replaced by ``TimeoutError``.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        """Seconds left; ``TimeoutError`` if none."""
        left = self.expires - time.monotonic()
        if left <= 0 or self.expired:
            raise TimeoutError(self._message())
        return left

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at expiry (it may be wrapped in TLS later; the dup follows it)."""
        # A dup shares the connection but not the descriptor: shutting it down
        # reaches the socket even after ssl.wrap_socket took the original fd,
        # and closing it afterwards cannot close a descriptor reused by others.
        dup = sock.dup()
        with self._lock:
            if not self.expired:
                self._watched.append(dup)
                return
        _shut(dup)
        dup.close()

    def connect(
        self, address: tuple[str, int], source_address: tuple[str, int] | None = None
    ) -> socket.socket:
        """``socket.create_connection`` within the deadline, the socket watched."""
        host, port = address
        last: OSError | None = None
        for family, type_, proto, _, addr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            sock = socket.socket(family, type_, proto)
            try:
                sock.settimeout(self.remaining())
                if source_address is not None:
                    sock.bind(source_address)
                sock.connect(addr)
            except OSError as e:
                sock.close()
                last = e
                if isinstance(e, TimeoutError):
                    break
                continue
            self.watch(sock)
            return sock
        raise last if last is not None else OSError(f"no address found for {host!r}")

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            watched, self._watched = self._watched, []
        for s in watched:
            _shut(s)
            s.close()

    def _message(self) -> str:
        return f"timed out: no complete answer within {self.seconds:g}s"

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            watched, self._watched = self._watched, []
            expired = self.expired
            self.expired = True  # a late watch() now shuts its socket at once
        for s in watched:
            s.close()
        if expired and isinstance(exc, Exception):
            raise TimeoutError(self._message()) from None


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer closed it already
        sock.shutdown(socket.SHUT_RDWR)
