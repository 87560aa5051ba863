"""The optional C accelerator, ``eventmon.core._speedups``, or ``None``.

Built at install time when a C compiler is present (``setup.py``). Setting the
environment variable ``EVENTMON_PURE_PYTHON`` to a non-empty value before
eventmon is imported runs the pure-Python reference code instead; the two are
tested against each other (``tests/core/test_fold.py``, ``tests/core/test_recorder.py``).
"""

from __future__ import annotations

import os
import sysconfig
from array import array
from collections.abc import Iterable
from types import ModuleType
from typing import Any

__all__ = ["cells", "speedups"]


def _load() -> ModuleType | None:
    if os.environ.get("EVENTMON_PURE_PYTHON"):
        return None
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        # Free-threaded CPython: the C code relies on the GIL, and importing it would
        # turn the GIL back on for the whole process. The Python code needs neither.
        return None
    try:
        from eventmon.core import _speedups
    except ImportError:
        return None
    # Its state is the main interpreter's; a sub-interpreter (mod_wsgi, say) may
    # be handed a copy of the already-imported module without its init running.
    if not _speedups.in_main_interpreter():
        return None
    return _speedups


speedups = _load()


def cells(typecode: str, values: Iterable[float]) -> Any:
    """A mutable run of numbers the fold writes to: an ``array`` of ``typecode``
    ("q" or "d") when the C code is in use, since it writes arrays in place; a
    list otherwise, which Python code updates faster."""
    return array(typecode, values) if speedups is not None else list(values)
