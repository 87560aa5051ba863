"""The `eventmon` command: one entry point, --help everywhere, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cli_run import one_line_error
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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # nan/inf intervals were accepted: time.sleep(nan) raised, or top never redrew
        (["top", "http://127.0.0.1:9", "--interval", "nan"], "argument --interval: must be"),
        (["top", "http://127.0.0.1:9", "--interval", "inf"], "argument --interval: must be"),
        (["top", "http://127.0.0.1:9", "--endpoints", "0"], "between 1 and 500, got '0'"),
        # --duration nan ran forever; --cycle 0 divided by zero; --opening-at -1 was taken
        (["demo", "--no-load", "--duration", "nan"], "argument --duration: must be a number"),
        (["demo", "--no-load", "--cycle", "0"], "argument --cycle: must be a number of seconds"),
        (["demo", "--no-load", "--opening-at", "-1"], "argument --opening-at: must be a number"),
        (["demo", "--no-load", "--rate", "nan"], "argument --rate: must be a number > 0"),
        (["demo", "--no-load", "--spike", "inf"], "argument --spike: must be a number >= 1"),
        (["demo", "--port", "-1"], "argument --port: must be a whole number between 0 and 65,535"),
        (["forecast"], "the following arguments are required: --history"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_bad_options_are_one_line(args: list[str], expected: str) -> None:
    line = one_line_error(*args)
    assert expected in line
    assert f"(see 'eventmon {args[0]} --help')" in line
