"""Alert rules: name, condition, ``for``, severity, labels, annotations; from Python or a file.

Example::

    >>> rule = AlertRule("high_error_rate", "error_rate > 5%", for_="2m", severity="critical")
    >>> rule.for_
    120.0

Files are YAML (needs PyYAML: ``pip install eventmon[alerts]``) or TOML::

    rules:
      - name: high_error_rate
        condition: error_rate > 5%
        for: 2m
        severity: critical
        annotations: {summary: "More than 5 % of requests fail"}
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventmon._exceptions import RuleError
from eventmon.alerting.expr import Condition, parse

__all__ = [
    "AlertRule",
    "default_rules",
    "format_duration",
    "load_rules",
    "parse_duration",
    "rules_from_data",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def parse_duration(value: str | float | int, what: str = "duration") -> float:
    """Seconds from ``"5m"``, ``"1h30m"``, ``"250ms"``, ``"90"`` or a number of seconds."""
    if isinstance(value, bool):
        raise RuleError(f"{what} must be a duration like '5m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            pos = 0
            seconds = 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _SECONDS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise RuleError(
                    f"{what} {value!r} is not a duration; write e.g. '30s', '5m', '1h30m'"
                    " (units ms s m h d w)"
                )
    else:
        raise RuleError(f"{what} must be a duration like '5m', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise RuleError(f"{what} must be >= 0 seconds, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Prometheus form of a duration: ``300`` -> ``"5m"``, ``90`` -> ``"1m30s"``."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)


def _str_map(value: Any, what: str, check_keys: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RuleError(f"{what} must be a mapping of names to strings, got {value!r}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or (check_keys and not _LABEL.match(k)):
            raise RuleError(f"{what}: {k!r} is not a valid name (letters, digits, _)")
        # A number reads as text; a list, mapping, yes/no or empty value is a slip.
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise RuleError(f"{what}: {k!r} must be a string (quote it), got {v!r}")
        out[k] = str(v)
    return out


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert rule. The condition is parsed when the rule is made.

    Args:
        name: alert name (letters, digits, ``_``), e.g. ``high_error_rate``.
        condition: e.g. ``"error_rate > 5% and requests_per_second > 1"``.
        for_: how long the condition must hold before the alert fires
            (``"5m"`` or seconds); 0 fires on the first true evaluation.
        severity: ``info``, ``warning``, ``critical`` or your own word; sent
            as the ``severity`` label, which Alertmanager routes on.
        labels: more labels to attach to the alert.
        annotations: ``summary``, ``description``, ``runbook_url``, ...
        keep_firing_for: keep firing this long after the condition clears.
    """

    name: str
    condition: str
    for_: float | str = 0.0
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    keep_firing_for: float | str = 0.0
    parsed: Condition = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise RuleError(
                f"rule name {self.name!r} must be letters, digits and '_', not starting with a"
                " digit"
            )
        where = f"rule {self.name!r}"
        try:
            parsed = parse(self.condition)
        except RuleError as e:
            raise RuleError(f"{where}: {e}") from None
        set_ = object.__setattr__
        set_(self, "parsed", parsed)
        set_(self, "for_", parse_duration(self.for_, f"{where}: 'for'"))
        set_(
            self,
            "keep_firing_for",
            parse_duration(self.keep_firing_for, f"{where}: 'keep_firing_for'"),
        )
        if not isinstance(self.severity, str) or not self.severity.strip():
            raise RuleError(
                f"{where}: severity must be a word such as 'warning' or 'critical',"
                f" got {self.severity!r}"
            )
        labels = _str_map(self.labels, f"{where}: labels", True)
        if "alertname" in labels:
            raise RuleError(f"{where}: 'alertname' is set from the rule's name; remove the label")
        set_(self, "labels", labels)
        set_(self, "annotations", _str_map(self.annotations, f"{where}: annotations", False))

    @property
    def for_seconds(self) -> float:
        """``for_`` in seconds (a string given to the constructor is converted)."""
        return float(self.for_)

    @property
    def keep_firing_seconds(self) -> float:
        """``keep_firing_for`` in seconds."""
        return float(self.keep_firing_for)

    @property
    def all_labels(self) -> dict[str, str]:
        """The labels an alert from this rule carries (``severity`` included)."""
        out = {"severity": self.severity}
        out.update(self.labels)
        return out


_KEYS = {"name", "alert", "condition", "expr", "for", "for_", "severity", "labels",
         "annotations", "keep_firing_for"}  # fmt: skip


def _names(keys: Iterable[object]) -> list[str]:
    # YAML keys need not be strings (``1: x``); sorting mixed types would raise.
    return sorted(str(k) for k in keys)


def rules_from_data(data: Any, source: str = "rules") -> list[AlertRule]:
    """Rules from parsed YAML/TOML: ``{"rules": [{...}, ...]}`` or a bare list."""
    if isinstance(data, Mapping):
        unknown = set(data) - {"rules"}
        if unknown:
            raise RuleError(f"{source}: unknown top-level key(s) {_names(unknown)}; use 'rules'")
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise RuleError(f"{source}: expected a list of rules under 'rules'")
    out: list[AlertRule] = []
    seen: set[str] = set()
    for i, item in enumerate(data, 1):
        where = f"{source}: rule #{i}"
        if not isinstance(item, Mapping):
            raise RuleError(f"{where} must be a mapping with name, condition, for, severity")
        unknown = set(item) - _KEYS
        if unknown:
            raise RuleError(
                f"{where}: unknown key(s) {_names(unknown)}; allowed: {sorted(_KEYS - {'for_'})}"
            )
        name = item.get("name", item.get("alert"))
        cond = item.get("condition", item.get("expr"))
        if name is None or cond is None:
            raise RuleError(f"{where} needs both 'name' and 'condition'")
        if not isinstance(name, str):
            raise RuleError(
                f"{where}: name must be a string such as 'high_error_rate', got {name!r}"
            )
        if name in seen:
            raise RuleError(f"{where}: rule name {name!r} is used twice")
        seen.add(name)
        try:
            out.append(
                AlertRule(
                    name=name,
                    condition=cond,
                    for_=item.get("for", item.get("for_", 0)),
                    severity=item.get("severity", "warning"),
                    labels=item.get("labels") or {},
                    annotations=item.get("annotations") or {},
                    keep_firing_for=item.get("keep_firing_for", 0),
                )
            )
        except RuleError as e:
            raise RuleError(f"{source}: {e}") from None
    return out


def _load_toml(text: str, source: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise RuleError(
                f"{source}: reading TOML on Python 3.10 needs tomli (pip install tomli),"
                " or write the rules as YAML"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"{source}: invalid TOML: {e}") from None


def _load_yaml(text: str, source: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise RuleError(
            f"{source}: reading YAML needs PyYAML (pip install 'eventmon[alerts]'),"
            " or write the rules as TOML"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        # PyYAML's own message spans lines and quotes the text; the position is enough.
        mark = e.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = " ".join(str(e.problem or e.context or "cannot be parsed").split())
        raise RuleError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise RuleError(f"{source}: invalid YAML: {' '.join(str(e).split())}") from None


def load_rules(path: str | Path) -> list[AlertRule]:
    """Rules from a ``.yaml``/``.yml`` or ``.toml`` file; mistakes raise RuleError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RuleError(
            f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start});"
            " save the rule file as UTF-8"
        ) from None
    suffix = p.suffix.lower()
    if suffix == ".toml":
        data = _load_toml(text, str(p))
    elif suffix in (".yaml", ".yml"):
        data = _load_yaml(text, str(p))
    else:
        raise RuleError(f"{p}: rule files must end in .yaml, .yml or .toml")
    return rules_from_data(data if data is not None else [], str(p))


def default_rules(
    *, performance: bool = True, capacity: bool = False, scaling: bool = False
) -> list[AlertRule]:
    """The built-in rules.

    ``performance`` adds the performance-table thresholds that fit any app
    (p95, availability, CPU, memory). ``capacity`` adds the objectives of a
    large deployment, off by default because an ordinary app would always be
    alerting: ``low_throughput`` (under 5,000 requests/s) and
    ``high_concurrent_users`` (over 45,000 requests in progress). ``scaling``
    adds ``slow_scale_out`` (a scale-out that took over 5 minutes), which reads
    the ``scale_out_time`` the autoscaler reports.
    """
    rules = [
        AlertRule(
            "high_response_time",
            "avg_response_time > 1000",
            for_="5m",
            severity="warning",
            annotations={"summary": "Average response time above 1 s"},
        ),
        AlertRule(
            "high_error_rate",
            "error_rate > 0.05",
            for_="2m",
            severity="critical",
            annotations={"summary": "More than 5 % of requests fail with a 5xx"},
        ),
        # No hold: the condition is the errors' increase over the 1m window, so a
        # 1m hold would need a second error a minute after the first and one error
        # would never fire. It fires at once and clears a window after the last error.
        AlertRule(
            "database_connection_failure",
            "db_connection_errors > 0",
            severity="critical",
            annotations={"summary": "Database connections are failing"},
        ),
    ]
    if performance:
        rules += [
            AlertRule("high_p95_response_time", "p95_response_time > 1s", for_="5m",
                      severity="warning",
                      annotations={"summary": "p95 response time above 1 s (objective 200 ms)"}),
            AlertRule("low_availability", "availability < 99.5%", for_="5m",
                      severity="critical",
                      annotations={"summary": "Availability below 99.5 % (objective 99.9 %)"}),
            AlertRule("high_cpu_usage", "cpu_usage > 80%", for_="5m", severity="warning",
                      annotations={"summary": "CPU above 80 % (objective 70 %)"}),
            AlertRule("high_memory_usage", "memory_usage > 90%", for_="5m",
                      severity="critical",
                      annotations={"summary": "Memory above 90 % (objective 80 %)"}),
        ]  # fmt: skip
    if capacity:
        rules += [
            AlertRule("low_throughput", "requests_per_second < 5000", for_="5m",
                      severity="warning",
                      annotations={"summary": "Throughput below 5,000 requests/s"
                                              " (objective 10,000)"}),
            AlertRule("high_concurrent_users", "active_connections > 45000", for_="2m",
                      severity="warning",
                      annotations={"summary": "Over 45,000 concurrent requests (capacity 50,000)"}),
        ]  # fmt: skip
    if scaling:
        rules.append(
            AlertRule(
                "slow_scale_out",
                "scale_out_time > 5m",
                severity="warning",
                annotations={"summary": "A scale-out took more than 5 minutes (objective 2)"},
            )
        )
    return rules


def check_unique(rules: Iterable[AlertRule]) -> Sequence[AlertRule]:
    """The rules, after checking no two share a name."""
    out = list(rules)
    names = [r.name for r in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RuleError(f"rule names must be unique; repeated: {', '.join(dup)}")
    return out


__all__ += ["check_unique"]
