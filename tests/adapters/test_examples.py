"""The examples run and are instrumented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from servers import ROOT

EXAMPLES = ROOT / "examples"


def run(code: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={"PYTHONPATH": f"{ROOT / 'src'}:{cwd}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_flask_example() -> None:
    out = run(
        "from flask_app import app\n"
        "c = app.test_client()\n"
        "for p in ('/events/42', '/events/1', '/events/7/tickets.csv', '/health'):\n"
        "    r = c.get(p); r.get_data(); r.close()\n"
        "print(c.get('/metrics').get_data(as_text=True))\n",
        EXAMPLES,
    )
    assert 'endpoint="/events/<int:event_id>",status_code="200"} 1' in out
    assert 'endpoint="/events/<int:event_id>",status_code="404"} 1' in out
    assert 'endpoint="/events/<int:event_id>/tickets.csv",status_code="200"} 1' in out
    assert "/health" not in out


def test_django_example() -> None:
    out = run(
        "import asyncio, os\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'eventsite.settings'\n"
        "import django; django.setup()\n"
        "from django.test import AsyncClient, Client\n"
        "c = Client()\n"
        "for p in ('/events/42', '/events/1', '/health'):\n"
        "    c.get(p)\n"
        "async def tickets():\n"
        "    r = await AsyncClient().get('/events/7/tickets.csv')\n"
        "    return b''.join([x async for x in r.streaming_content])\n"
        "assert asyncio.run(tickets()).startswith(b'seat,holder')\n"
        "print(c.get('/metrics').content.decode())\n",
        EXAMPLES / "django_project",
    )
    assert 'endpoint="/events/<int:event_id>",status_code="200"} 1' in out
    assert 'endpoint="/events/<int:event_id>",status_code="404"} 1' in out
    assert 'endpoint="/events/<int:event_id>/tickets.csv",status_code="200"} 1' in out
    assert "/health" not in out
    assert "db_connection_errors_total 0" in out  # the eventmon app is installed


def test_django_example_passes_manage_py_check() -> None:
    project = EXAMPLES / "django_project"
    out = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=project,
        env={"PYTHONPATH": f"{ROOT / 'src'}:{project}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "System check identified no issues" in out.stdout
