"""``eventmon rules export`` and ``eventmon rules check``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

from eventmon._validate import arg_buckets, arg_integer, arg_number

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``rules`` command and its ``export`` and ``check`` subcommands."""
    rules = subparsers.add_parser("rules", help="check alert rules, export them to Prometheus")
    sub = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)

    exp = sub.add_parser("export", help="write the rules as a Prometheus rule file (PromQL)")
    exp.add_argument("--rules", metavar="FILE", help="YAML/TOML rule file (default: built-ins)")
    exp.add_argument("-o", "--output", metavar="OUT", help="write here (default: stdout)")
    exp.add_argument("--window", default="1m", type=_window, help="rate window (default 1m)")
    exp.add_argument("--group", default="eventmon", type=_group, help="rule group name")
    exp.add_argument(
        "--buckets",
        metavar="SECONDS,...",
        type=arg_buckets,
        help="the collector's histogram bounds in seconds, comma-separated, increasing",
    )
    exp.add_argument(
        "--slow-threshold",
        type=arg_number(above=0, unit="seconds"),
        default=1.0,
        metavar="SECONDS",
    )
    exp.add_argument(
        "--cpu-count",
        type=arg_integer(minimum=1),
        help="bake in cores per instance (default: each target's eventmon_cpu_limit_cores)",
    )
    exp.add_argument(
        "--memory-bytes",
        type=arg_integer(minimum=1),
        help="bake in memory per instance (default: each target's eventmon_memory_limit_bytes)",
    )
    exp.add_argument("--gauge", action="append", default=[], help="a user gauge's name")
    exp.add_argument(
        "--capacity-rules",
        action="store_true",
        help="include the large-deployment objectives low_throughput and high_concurrent_users",
    )
    _declare_option(exp)
    exp.add_argument("--scaling", action="store_true", help="include slow_scale_out")
    exp.set_defaults(func=_export)

    chk = sub.add_parser("check", help="parse a rule file and check every metric name")
    chk.add_argument("file", help="YAML/TOML rule file")
    _declare_option(chk)
    chk.set_defaults(func=_check)


def _declare_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--declare",
        action="append",
        default=[],
        metavar="NAME",
        help="a counter or gauge the app defines (may repeat)",
    )


def _window(text: str) -> str:
    from eventmon.alerting.rules import parse_duration

    try:
        seconds = parse_duration(text, "the window")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"the window must be longer than 0s, got {text!r}")
    return text


def _group(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the group needs a name")
    return text


def _rules(
    path: str | None, declare: Iterable[str], scaling: bool = False, capacity: bool = False
) -> list[Any]:
    """The rules, each checked against the metrics eventmon exports and ``declare``.

    ``check`` and ``export`` both read rules through here, so a file one
    accepts the other accepts too.
    """
    from eventmon._exceptions import RuleError
    from eventmon.alerting.expr import MetricInfo
    from eventmon.alerting.metrics import BUILTIN_METRICS, DB_CONNECTION_ERRORS
    from eventmon.alerting.rules import default_rules, load_rules

    rules = load_rules(path) if path else default_rules(capacity=capacity, scaling=scaling)
    catalog = dict(BUILTIN_METRICS)
    for name in [DB_CONNECTION_ERRORS, *declare]:
        catalog[name] = MetricInfo(name)
        catalog[name + "_total"] = MetricInfo(name + "_total")
    for rule in rules:
        try:
            rule.parsed.bind(catalog)
        except RuleError as e:
            where = f"{path}: " if path else ""
            raise RuleError(f"{where}rule {rule.name!r}: {e}") from None
    return rules


def _export(args: argparse.Namespace) -> int:
    from eventmon._exceptions import ConfigurationError
    from eventmon.alerting.promrules import PromQLTranslator, render_rule_file

    if args.rules and (args.capacity_rules or args.scaling):
        flag = "--capacity-rules" if args.capacity_rules else "--scaling"
        raise ConfigurationError(
            f"{flag} picks among the built-in rules; with --rules FILE, write those rules"
            " in the file instead"
        )
    kwargs: dict[str, Any] = {
        "window": args.window,
        "slow_threshold": args.slow_threshold,
        "cpu_count": args.cpu_count,
        "memory_bytes": args.memory_bytes,
        "gauges": args.gauge,
    }
    if args.buckets:
        kwargs["buckets"] = args.buckets
    rules = _rules(args.rules, [*args.declare, *args.gauge], args.scaling, args.capacity_rules)
    text = render_rule_file(rules, group=args.group, translator=PromQLTranslator(**kwargs))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _check(args: argparse.Namespace) -> int:
    rules = _rules(args.file, args.declare)
    print(f"{args.file}: {len(rules)} rule(s) OK")
    return 0
