"""The optional C accelerator, ``eventmon.core._speedups``, or ``None``.

Built at install time when a C compiler is present (``setup.py``), and shipped
compiled in the Linux wheels. Setting the environment variable
``EVENTMON_PURE_PYTHON`` to a non-empty value before eventmon is imported runs
the pure-Python reference code instead; the two are tested against each other
(``tests/core/test_fold.py``, ``tests/core/test_recorder.py``).

When the extension is simply missing (eventmon installed from source where no
compiler was found), importing eventmon warns once with an
:class:`~eventmon.AcceleratorWarning`: the same numbers come out, at two to
three times the cost per request. :data:`ACCELERATOR` (``"c"`` or ``"python"``) and
:data:`REASON` say which code runs and why; ``/metrics``
(``eventmon_build_info``), the dashboard and ``eventmon --version`` show them.
"""

from __future__ import annotations

import os
import sysconfig
import warnings
from array import array
from collections.abc import Iterable
from types import ModuleType
from typing import Any, Literal

from eventmon._exceptions import AcceleratorWarning

__all__ = ["ACCELERATOR", "REASON", "cells", "speedups"]

#: The warning issued when the extension was not built.
NOT_BUILT = (
    "eventmon's C accelerator is not built: it runs its pure-Python code, with the same"
    " results at two to three times the cost per request. Install a Linux wheel, or reinstall"
    " from source with a C compiler and the Python headers (e.g. gcc and python3-dev);"
    " set EVENTMON_PURE_PYTHON=1 to choose the Python code and silence this warning."
)


def _load() -> tuple[ModuleType | None, str]:
    """The extension to use, or ``None``; and why not, when not."""
    if os.environ.get("EVENTMON_PURE_PYTHON"):
        return None, "EVENTMON_PURE_PYTHON is set"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        # Free-threaded CPython: the C code relies on the GIL, and importing it would
        # turn the GIL back on for the whole process. The Python code needs neither.
        return None, "free-threaded CPython"
    try:
        from eventmon.core import _speedups
    except ImportError as exc:
        # The one case the user did not choose: say so, once per process.
        warnings.warn(NOT_BUILT, AcceleratorWarning, stacklevel=2)
        return None, f"the C extension is not built: {exc}"
    # Its state is the main interpreter's; a sub-interpreter (mod_wsgi, say) may
    # be handed a copy of the already-imported module without its init running.
    if not _speedups.in_main_interpreter():
        return None, "a sub-interpreter"
    return _speedups, ""


speedups, REASON = _load()

#: Which request path and fold run: ``"c"`` (the accelerator) or ``"python"``.
ACCELERATOR: Literal["c", "python"] = "c" if speedups is not None else "python"


def describe() -> str:
    """One line naming the code in use: ``c`` or ``python (why)``."""
    return ACCELERATOR if not REASON else f"{ACCELERATOR} ({REASON})"


def cells(typecode: str, values: Iterable[float]) -> Any:
    """A mutable run of numbers the fold writes to: an ``array`` of ``typecode``
    ("q" or "d") when the C code is in use, since it writes arrays in place; a
    list otherwise, which Python code updates faster."""
    return array(typecode, values) if speedups is not None else list(values)
