"""The WSGI middleware's per-request objects: the Python reference.

One request's state is also the response iterable the middleware hands the server
(:class:`_Response` and its subclasses). ``eventmon.core._speedups.WSGIResponse``
is the same in C, used when built (configured at the bottom of this module);
``tests/adapters/test_wsgi_twins.py`` compares the two. The middleware itself is
in :mod:`eventmon.wsgi`, which re-exports what tests reach there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from eventmon.core._native import speedups
from eventmon.core.exemplars import current_trace
from eventmon.core.registry import UNMATCHED
from eventmon.types import StartResponse, WSGIEnviron

if TYPE_CHECKING:
    from eventmon.wsgi import EventmonMiddleware

#: The environ key where an application may leave the request's route template.
ENDPOINT_KEY = "eventmon.endpoint"

#: Status recorded when the server stopped sending the body (the client went away).
CLIENT_CLOSED = 499

#: Method label of a request whose environ has no REQUEST_METHOD (a server at fault).
FALLBACK_METHOD = "other"

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | None


class _Traced:
    """A recorded response that notes its request's trace again before it can end."""

    __slots__ = ("body", "trace_id")

    body: Any
    trace_id: str | None

    def __iter__(self) -> Iterator[bytes]:
        current_trace.set(self.trace_id)
        return iter(self.body)

    def close(self) -> None:
        current_trace.set(self.trace_id)
        self.body.close()


class _SizedTraced(_Traced):
    """The same for a body with a length (servers set ``Content-Length`` from it)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)


#: Status line -> code, so that a request does not parse its status line.
_CODES: dict[str, int] = {}


def _status_code(status: str) -> int:
    try:
        code = int(status[:3])
    except (ValueError, TypeError):  # the server will object, not us
        return 500
    if len(_CODES) < 256:  # bounded: apps may invent reason phrases
        _CODES[status] = code
    return code


class _Response:
    """One request's state; also the response iterable handed to the server.

    ``eventmon.core._speedups.WSGIResponse`` is the same in C, used when built;
    this class is the reference (``tests/adapters`` run on both).

    The request is recorded once, at the first of: the body is complete (its
    iterable is exhausted, or it has handed out as many bytes as the
    ``Content-Length`` the app declared) with the status from start_response;
    an exception from the app, its body or the body's ``close()`` (500); or
    ``close()`` (499 if the server had started iterating the body and stopped
    before it was complete: the client went away; else the status).

    Slots left unset mean defaults, so the common path stores less: ``code``
    unset is 500 (start_response never called), ``started`` unset means the
    body was not iterated yet, ``token`` None means already recorded; ``left``
    is the declared length still to hand out, -1 if none was declared.
    """

    __slots__ = (
        "_start_response",
        "body",
        "code",
        "environ",
        "exhausted",
        "left",
        "mw",
        "start",
        "started",
        "token",
    )

    mw: EventmonMiddleware
    environ: WSGIEnviron
    _start_response: StartResponse
    token: Any
    start: float
    code: int
    left: int
    started: bool
    exhausted: bool
    body: Iterable[bytes]

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo = None
    ) -> Callable[[bytes], object]:
        try:
            self.code = _CODES[status]
        except (KeyError, TypeError):  # a status line not seen yet (or not a string)
            self.code = _status_code(status)
        self.left = _declared_length(headers)
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        try:
            for chunk in self.body:
                # The left slot is read per chunk: a generator app may call
                # start_response on its first iteration (PEP 3333).
                if self.left >= 0:
                    left = self.left - len(chunk)
                    if left <= 0:  # all the declared bytes are handed out: complete
                        self.left = -1
                        self.complete()
                    else:
                        self.left = left
                yield chunk
        except GeneratorExit:
            raise
        except BaseException:
            self.finish(500)
            raise
        self.exhausted = True
        self.complete()

    def complete(self) -> None:
        """Record the request with its status: the body was handed out whole."""
        try:
            code = self.code
        except AttributeError:
            code = 500
        self.finish(code)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            try:
                close()
            except BaseException:
                self.finish(500)
                raise
        if self.token is None:
            return
        try:
            self.started  # noqa: B018
        except AttributeError:  # never iterated: nobody went away mid-body
            self.complete()
        else:  # the server stopped before the body was complete
            self.finish(CLIENT_CLOSED)

    def finish(self, status: int) -> None:
        """Record the request once, with ``status``; later calls do nothing.

        Ends it whatever fails: a resolver (or environ) at fault is counted under
        ``wsgi.endpoint`` and the request recorded under fallback labels; a fault
        while recording is counted under ``wsgi.observe``. Neither reaches the server.
        """
        token = self.token
        if token is None:
            return
        self.token = None
        mw = self.mw
        environ = self.environ
        method = FALLBACK_METHOD
        endpoint = UNMATCHED
        try:
            method = environ["REQUEST_METHOD"]
            found = environ.get(ENDPOINT_KEY)
            if found:
                endpoint = found
            else:
                resolve = mw.endpoint_resolver
                if resolve is not None:
                    endpoint = resolve(environ) or UNMATCHED
        except Exception:
            mw.collector.internal_error("wsgi.endpoint")
        finally:
            # Also when a BaseException is on its way out: the request must end.
            try:
                label_key = mw._label_key  # None unless extra request labels are set
                if label_key is not None:  # also after a resolver fault: the values stay
                    endpoint = label_key(endpoint, environ)
            except Exception:
                mw.collector.internal_error("wsgi.endpoint")
            finally:
                try:
                    if self.extended:
                        self._end_extended(token, method, endpoint, status)
                    else:
                        mw.collector.end(token, method, endpoint, status, self.start)
                except Exception:
                    mw.collector.internal_error("wsgi.observe")

    extended = False

    def _end_extended(self, token: Any, method: str, endpoint: Any, status: int) -> None:
        raise NotImplementedError  # only _CountingResponse and its subclass


class _CountingResponse(_Response):
    """A response that also counts body bytes; used only with ``size_metrics=True``.

    The request size is its ``Content-Length`` (a chunked upload without one counts
    as 0); the response size is the bytes the body yielded, or its ``Content-Length``
    when the server sends a file wrapper itself.
    """

    __slots__ = ("length", "sent")

    extended = True
    length: int
    sent: int

    def _end_extended(self, token: Any, method: str, endpoint: Any, status: int) -> None:
        # ``endpoint`` already carries the extra label values, if any (see finish).
        self.mw.collector.end(token, method, endpoint, status, self.start)
        self._record_sizes(method, endpoint, status)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo = None
    ) -> Callable[[bytes], object]:
        for name, value in headers:
            if name.lower() == "content-length":
                self.length = _int(value)
        write = super().start_response(status, headers, exc_info)

        def counted_write(data: bytes) -> object:
            self.sent += len(data)
            return write(data)

        return counted_write

    def __iter__(self) -> Iterator[bytes]:
        # Counted before the base class sees a chunk: it may record the request
        # when the chunk completes the declared Content-Length.
        self.body = _Counted(self, self.body)
        return super().__iter__()

    def _record_sizes(self, method: str, endpoint: Any, status: int) -> None:
        sent = self.sent
        if not sent and isinstance(self.body, _FileClose):
            sent = getattr(self, "length", 0)
        received = _int(self.environ.get("CONTENT_LENGTH") or "0")
        self.mw.collector.sizes.observe(method, endpoint, status, received, sent)


class _Counted:
    """A body whose chunks add to their response's ``sent``; other attributes pass through."""

    __slots__ = ("body", "response")

    def __init__(self, response: _CountingResponse, body: Iterable[bytes]) -> None:
        self.response = response
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        response = self.response
        for chunk in self.body:
            response.sent += len(chunk)
            yield chunk

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.body, name)  # close(), as the server calls it


class _CountingSizedResponse(_CountingResponse):
    """A counting response whose body has a length (see :class:`_SizedResponse`)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]


def _int(text: str) -> int:
    try:
        return max(int(text), 0)
    except (TypeError, ValueError):
        return 0


class _SizedResponse(_Response):
    """A response whose body has a length: servers read ``len()`` of the iterable.

    wsgiref and waitress give a one-chunk body its ``Content-Length`` from it
    (and keep the connection alive); without it they cannot.
    """

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]


def _declared_length(headers: Any) -> int:
    """The ``Content-Length`` among ``headers`` as an int, or -1 if none is usable.

    Strict on purpose, and the same in C: a list of 2-tuples (the scan stops at
    anything else), the first header of that name, ASCII digits only (at most 18).
    """
    if headers.__class__ is not list:
        return -1
    for item in headers:
        if item.__class__ is not tuple or len(item) != 2:
            return -1
        name = item[0]
        if name.__class__ is str and len(name) == 14 and name.lower() == "content-length":
            value = item[1]
            if (
                value.__class__ is str
                and 0 < len(value) <= 18
                and value.isascii()
                and value.isdigit()
            ):
                return int(value)
            return -1
    return -1


class _FileClose:
    """Stands in as the body of a response whose file wrapper the server sends itself."""

    __slots__ = ("close",)

    def __init__(self, close: Callable[[], object] | None) -> None:
        self.close = close


def _keep_file_wrapper(response: _Response, body: Any) -> Iterable[bytes]:
    """Keep the server's sendfile path: time the file until the server closes it."""
    original = getattr(body, "close", None)
    try:
        body.close = response.close
    except Exception:  # a wrapper with __slots__: wrap it like any body
        return response
    response.body = _FileClose(original)  # type: ignore[assignment]
    return body  # type: ignore[no-any-return]


_new = object.__new__


def _report_fault(mw: EventmonMiddleware, exc: BaseException, where: str) -> None:
    """Log and count a fault the C response caught while recording a request."""
    try:
        raise exc
    except Exception:
        mw.collector.internal_error(where)


_native_response: Callable[..., Any] | None = None
_RECORDED: tuple[type, ...] = (_Response,)  # the response types that record a request
if speedups is not None:
    speedups.configure_wsgi(
        _CODES, _status_code, _report_fault, ENDPOINT_KEY, UNMATCHED, FALLBACK_METHOD
    )
    _native_response = speedups.wsgi_response
    _RECORDED = (_Response, speedups.WSGIResponse)
