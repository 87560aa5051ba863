"""Build the optional C fold; everything else is in pyproject.toml.

``optional=True``: without a C compiler (or Python headers) the extension is
skipped with a warning and eventmon runs its pure-Python fold instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "eventmon.core._speedups",
            ["src/eventmon/core/_speedups.c"],
            optional=True,
        )
    ]
)
