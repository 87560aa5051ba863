"""The `eventmon` command: one entry point, --help everywhere, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from eventmon.cli import build_parser, main

COMMANDS = ["demo", "top", "forecast", "rules", "autoscale"]


def test_every_command_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    help_text = build_parser().format_help()
    for command in COMMANDS:
        assert command in help_text
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: eventmon " + command in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: eventmon" in capsys.readouterr().out


def test_a_bad_rule_file_is_one_clear_line_not_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = tmp_path / "rules.yml"
    rules.write_text("rules:\n  - name: broken\n    condition: 'error_rate >> 0.5'\n    for: 1m\n")
    result = subprocess.run(
        [sys.executable, "-m", "eventmon", "rules", "check", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "broken" in result.stderr or "broken" in result.stdout


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "eventmon", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.startswith("eventmon ")
