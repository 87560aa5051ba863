"""Build the optional C fold; everything else is in pyproject.toml.

``optional=True``: without a C compiler (or Python headers) the extension is
skipped with a warning and eventmon runs its pure-Python fold instead.
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "eventmon.core._speedups",
            ["src/eventmon/core/_speedups.c"],
            # fmod() is libm's: say so rather than rely on the interpreter having loaded it.
            libraries=[] if sys.platform == "win32" else ["m"],
            optional=True,
        )
    ]
)
