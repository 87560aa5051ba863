from collections.abc import Callable, Sequence
from typing import Any

def fold(
    batch: list[tuple[Any, ...]],
    start: int,
    series: dict[Any, Any],
    new_series: Callable[[str, str, int], Any],
    cuts: Sequence[float],
    slot_of: Sequence[int],
    bucket_of: Sequence[int],
    recent: Any,
    recent_until: float,
    ring: Any,
    size: int,
    /,
) -> int: ...

class Journal:
    entries: list[tuple[Any, ...]]
    started: int
    finished: int
    thread: Any

class Recorder:
    slow_threshold: float
    limit: int
    def __init__(
        self,
        local: Any,
        mine: Callable[[], Journal],
        drain: Callable[[Journal], None],
        on_slow: Callable[[str, str, int, float], None],
        clock: Callable[[], float],
        slow_threshold: float,
        limit: int,
    ) -> None: ...
    def begin(self) -> Journal: ...
    def end(
        self, token: Journal, method: str, endpoint: str, status_code: int, start: float, /
    ) -> None: ...
    def observe(self, method: str, endpoint: str, status_code: int, seconds: float, /) -> None: ...

class WSGIResponse:
    body: Any
    exhausted: bool
    token: Any
    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any: ...
    def close(self) -> None: ...
    def finish(self, status: int, /) -> None: ...
    def __iter__(self) -> WSGIResponse: ...
    def __next__(self) -> bytes: ...

class WSGISizedResponse(WSGIResponse):
    def __len__(self) -> int: ...

def wsgi_response(
    middleware: Any, environ: Any, start_response: Any, token: Any, start: float, /
) -> WSGIResponse: ...
def configure_wsgi(
    codes: dict[str, int],
    status_code: Callable[[str], int],
    report: Callable[[Any, BaseException, str], None],
    endpoint_key: str,
    unmatched: str,
    fallback_method: str,
    /,
) -> None: ...
def in_main_interpreter() -> bool: ...
