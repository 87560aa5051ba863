"""Development tasks: ``nox -s tests`` (the README's and CI's test command), lint, typecheck, bench."""

from __future__ import annotations

import glob
import os

import nox

# pyenv keeps other interpreters off PATH; make every installed 3.10-3.13 findable.
for _bin in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-3].*/bin"))):
    os.environ["PATH"] = _bin + os.pathsep + os.environ["PATH"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["lint", "typecheck", "tests", "docs"]

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PRIMARY = "3.11"


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite on the primary interpreter; all but real-server tests on the others.

    The oldest interpreter runs on the pure-Python fold (``EVENTMON_PURE_PYTHON``), so
    the fallback used where no C compiler was at hand stays tested.
    """
    session.install("-e", ".[dev]")
    args = list(session.posargs)
    if session.python != PRIMARY and not args:
        args = ["-m", "not slow"]
    env = {"EVENTMON_PURE_PYTHON": "1"} if session.python == PYTHONS[0] else {}
    session.run("pytest", *args, env=env)


@nox.session(python=PRIMARY)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples")


@nox.session(python=PRIMARY)
def docs(session: nox.Session) -> None:
    """Build the documentation site; strict: a broken link or missing page fails."""
    session.install("-e", ".[all,docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(python=PRIMARY)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]", "mypy>=1.8")
    session.run("mypy")


@nox.session(python=PRIMARY)
def bench(session: nox.Session) -> None:
    """Benchmarks beside the peer libraries (not part of the tests)."""
    session.install("-e", ".[dev]", "-r", "benchmarks/requirements.txt")
    for script in sorted(glob.glob("benchmarks/bench_*.py")):
        session.run("python", script, *session.posargs)
