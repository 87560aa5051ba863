"""Run the ``eventmon`` command for real, as a user would, and read its error."""

from __future__ import annotations

import subprocess
import sys


def eventmon(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventmon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def one_line_error(*args: str) -> str:
    """The command's error, after checking it failed with exit code 2 and one stderr line."""
    result = eventmon(*args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("eventmon"), lines[0]
    assert ": error: " in lines[0], lines[0]
    return lines[0]
