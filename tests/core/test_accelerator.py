"""Which request path runs, C or Python, is visible: an import warning when the C
accelerator was not built, ``eventmon_build_info`` in ``/metrics``, the dashboard's
snapshot, and ``eventmon --version``.

"Installed from source without a compiler" is simulated in a subprocess whose
``sitecustomize`` sets ``sys.modules["eventmon.core._speedups"] = None``, so that
importing the extension fails exactly as it does when it was never built.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import eventmon
from eventmon.cli import version_text
from eventmon.core import _native
from eventmon.dashboard import Dashboard
from eventmon.exporters.prometheus import render
from servers import (
    IN_CI,
    PYTHON,
    ROOT,
    free_port,
    promtool_check,
    stop,
    wait_for_port,
)

PURE = bool(os.environ.get("EVENTMON_PURE_PYTHON"))
WARNING = "AcceleratorWarning: eventmon's C accelerator is not built"
BUILD_INFO = re.compile(r'^eventmon_build_info\{version="([^"]*)",accelerator="(\w+)"\} 1$', re.M)

# A WSGI app behind eventmon's middleware (metrics and dashboard), on wsgiref.
SERVER = """
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

import eventmon.wsgi

def app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

wrapped = eventmon.wsgi.EventmonMiddleware(app, dashboard=True)
make_server("127.0.0.1", int(sys.argv[1]), wrapped, handler_class=Quiet).serve_forever()
"""


@pytest.fixture
def no_compiler(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess in which the C extension cannot be imported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nsys.modules['eventmon.core._speedups'] = None  # as if never built\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "EVENTMON_PURE_PYTHON"}
    # The tree's src (absent where the installed wheel is under test) after the poison.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(site), str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def _tree_env() -> dict[str, str]:
    """This environment with the tree's src first (as the tests' own process has it)."""
    path = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _get(url: str, accept: str | None = None) -> str:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def _serve(env: dict[str, str], tmp_path: Path) -> tuple[str, str, str, str]:
    """(/metrics, OpenMetrics /metrics, dashboard snapshot, all the server printed)."""
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # -W always: "once" must not rest on the warnings registry hiding repeats.
    proc = subprocess.Popen(
        [PYTHON, "-W", "always", str(script), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, 30, proc)
        _get(f"{base}/hello")
        text = _get(f"{base}/metrics")
        om = _get(f"{base}/metrics", accept="application/openmetrics-text; version=1.0.0")
        snapshot = _get(f"{base}/eventmon/api/snapshot")
    finally:
        printed = stop(proc)
    return text, om, snapshot, printed


def test_without_the_extension_eventmon_warns_once_and_every_surface_says_python(
    no_compiler: dict[str, str], tmp_path: Path
) -> None:
    text, om, snapshot, printed = _serve(no_compiler, tmp_path)

    assert printed.count(WARNING) == 1, printed
    assert "EVENTMON_PURE_PYTHON=1" in printed  # how to choose it and silence the warning
    assert BUILD_INFO.findall(text) == [(eventmon.__version__, "python")]
    families = {f.name: f for f in text_string_to_metric_families(om)}
    assert families["eventmon_build"].type == "info"
    [sample] = families["eventmon_build"].samples
    assert sample.labels == {"version": eventmon.__version__, "accelerator": "python"}
    doc = json.loads(snapshot)
    assert doc["accelerator"] == "python"
    assert doc["acceleratorReason"].startswith("the C extension is not built")
    assert doc["version"] == eventmon.__version__

    promtool_check(text)


def test_without_the_extension_version_says_python_and_why(no_compiler: dict[str, str]) -> None:
    done = subprocess.run(
        [PYTHON, "-W", "always", "-m", "eventmon", "--version"],
        env=no_compiler,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"eventmon {eventmon.__version__} (Python ")
    assert lines[1].startswith("accelerator: python (the C extension is not built: ")
    assert done.stderr.count(WARNING) == 1, done.stderr


def test_choosing_python_on_purpose_does_not_warn(no_compiler: dict[str, str]) -> None:
    env = {**no_compiler, "EVENTMON_PURE_PYTHON": "1"}
    done = subprocess.run(
        [PYTHON, "-W", "error", "-m", "eventmon", "--version"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[1] == "accelerator: python (EVENTMON_PURE_PYTHON is set)"


# ------------------------------------------------------------ the normal build

needs_build = pytest.mark.skipif(
    _native.speedups is None and not PURE and not IN_CI,
    reason="the C accelerator is not built here (CI insists on it)",
)
EXPECTED = "python" if PURE else "c"


@needs_build
def test_the_build_in_use_is_named_in_metrics_dashboard_and_version() -> None:
    # CI builds the extension: there every surface must say "c" (or "python" on the
    # run that sets EVENTMON_PURE_PYTHON).
    c = eventmon.MetricsCollector(slow_hooks=())
    try:
        c.observe("GET", "/x", 200, 0.01)
        assert BUILD_INFO.findall(render(c).decode()) == [(eventmon.__version__, EXPECTED)]
        om = render(c, openmetrics=True).decode()
        assert BUILD_INFO.findall(om) == [(eventmon.__version__, EXPECTED)]
        assert "# TYPE eventmon_build info\n" in om
        doc = Dashboard(c).snapshot()
        assert (doc["accelerator"], doc["version"]) == (EXPECTED, eventmon.__version__)
    finally:
        c.shutdown()
    line = version_text().splitlines()[1]
    assert line == (
        "accelerator: python (EVENTMON_PURE_PYTHON is set)" if PURE else "accelerator: c"
    )


@needs_build
def test_importing_the_built_extension_does_not_warn() -> None:
    done = subprocess.run(
        [PYTHON, "-W", "error", "-c", "import eventmon.wsgi, eventmon.cli"],
        env=_tree_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_cli_entry_point_prints_the_same_as_version_text() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventmon", "--version"],
        env=_tree_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == version_text() + "\n"
