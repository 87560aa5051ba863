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
