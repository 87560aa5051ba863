"""The ``eventmon`` command. Each subcommand lives in the module that owns it.

A module listed in ``_COMMANDS`` exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (``args -> exit code``) as a default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["main"]

_COMMANDS: tuple[str, ...] = (
    # "module" -- each registers one or more subcommands
    "eventmon.alerting.cli",
    "eventmon.scaling.forecast_cli",
    "eventmon.scaling.cli",
    "eventmon.demo",
    "eventmon.top",
)


def version_text() -> str:
    """What ``eventmon --version`` prints: the version, Python, and the request path in use."""
    import platform

    from eventmon import __version__
    from eventmon.core import _native

    return (
        f"eventmon {__version__} (Python {platform.python_version()})\n"
        f"accelerator: {_native.describe()}"
    )


class _Version(argparse.Action):
    # Not action="version": argparse re-wraps that text to the terminal's width.
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (subcommands inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _one_line(message: str) -> str:
    # A rule's syntax error points at the column with a caret under a copy of
    # the condition; on one line the column number says the same.
    lines = [ln.strip() for ln in message.splitlines()]
    return " ".join(ln for ln in lines if ln and set(ln) != {"^"})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="eventmon",
        description="Request metrics, alerts and auto-scaling for Python web apps.",
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show the version and the accelerator in use"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error, not a traceback, for bad input
        from eventmon._exceptions import EventmonError

        if isinstance(exc, (EventmonError, OSError)):
            print(f"eventmon: error: {_one_line(str(exc))}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
