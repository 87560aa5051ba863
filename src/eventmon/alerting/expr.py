"""The rule condition language: parsed once, checked against known metrics, never ``eval``.

Grammar (keywords are case-insensitive)::

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" condition ")" | comparison
    comparison := operand (">" | ">=" | "<" | "<=" | "==" | "!=") operand
    operand    := number | metric
    metric     := NAME ["{" NAME "=" STRING ("," NAME "=" STRING)* "}"]
    number     := DIGITS ["." DIGITS] [unit]      unit: us ms s m h d %

Numbers with a unit are converted to the metric's unit: with
``avg_response_time`` in milliseconds, ``1s`` is 1000; with ``error_rate`` a
share, ``5%`` is 0.05; with ``cpu_usage`` in percent, ``80%`` is 80. A unit
that does not fit the metric (``error_rate > 2s``) is an error, as is an
unknown metric. Every error is a :class:`~eventmon.RuleError` whose message
points at the column.

Example::

    >>> c = parse("error_rate > 5% and requests_per_second >= 1")
    >>> c.bind({"error_rate": MetricInfo("error_rate", "ratio"),
    ...         "requests_per_second": MetricInfo("requests_per_second")}).evaluate(
    ...     {"error_rate": 0.2, "requests_per_second": 3.0})
    True
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from eventmon._exceptions import RuleError

__all__ = [
    "And",
    "Compare",
    "Condition",
    "MetricInfo",
    "MetricRef",
    "Node",
    "Not",
    "Number",
    "Or",
    "parse",
]

#: unit suffix -> (dimension, factor to the dimension's base: seconds, or a share)
UNITS: dict[str, tuple[str, float]] = {
    "us": ("time", 1e-6),
    "ms": ("time", 1e-3),
    "s": ("time", 1.0),
    "m": ("time", 60.0),
    "h": ("time", 3600.0),
    "d": ("time", 86400.0),
    "%": ("share", 0.01),
}

#: metric unit -> (dimension it accepts, factor from the base to the metric's unit)
METRIC_UNITS: dict[str, tuple[str, float]] = {
    "ms": ("time", 1000.0),
    "s": ("time", 1.0),
    "ratio": ("share", 1.0),
    "percent": ("share", 100.0),
    "": ("", 1.0),
    "bytes": ("", 1.0),
}

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?)(?P<unit>[A-Za-z%]+)?
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>>=|<=|==|!=|>|<)
  | (?P<punct>[(){},=])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    """,
    re.VERBOSE,
)

_KEYWORDS = frozenset({"and", "or", "not"})


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """What the checker knows of a metric: its unit and the labels it may be selected by."""

    name: str
    unit: str = ""
    labels: frozenset[str] = frozenset()
    help: str = ""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, name, op, punct, string, kw, end
    text: str
    col: int  # 1-based
    unit: str | None = None


def _error(text: str, col: int, message: str) -> RuleError:
    col = max(1, min(col, len(text) + 1))
    line = text.replace("\n", " ").replace("\t", " ")
    return RuleError(f"{message} at column {col}:\n    {line}\n    {' ' * (col - 1)}^")


def _tokenize(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _error(text, pos + 1, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup if m.lastgroup != "unit" else "number"
        col = pos + 1
        pos = m.end()
        if kind == "ws":
            continue
        if m.group("number") is not None:
            unit = m.group("unit")
            if unit is not None and unit not in UNITS:
                ucol = m.start("unit") + 1
                raise _error(text, ucol, f"unknown unit {unit!r} (use one of {' '.join(UNITS)})")
            out.append(_Token("number", m.group("number"), col, unit))
        elif kind == "name":
            word = m.group("name")
            if word.lower() in _KEYWORDS:
                out.append(_Token("kw", word.lower(), col))
            else:
                out.append(_Token("name", word, col))
        else:
            out.append(_Token(str(kind), m.group(), col))
    out.append(_Token("end", "", len(text) + 1))
    return out


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Number:
    """A literal; ``value`` is in its unit's base (seconds, or a share for ``%``)."""

    value: float
    unit: str | None
    text: str
    col: int


@dataclass(frozen=True, slots=True)
class MetricRef:
    """A metric, optionally with label matchers (``p95_response_time{endpoint="/a"}``)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    col: int

    @property
    def key(self) -> str:
        """The name the metric's value is looked up by when evaluating."""
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}}"


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Number | MetricRef
    right: Number | MetricRef
    col: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Compare | And | Or | Not


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def fail(self, tok: _Token, message: str) -> RuleError:
        got = "the end of the condition" if tok.kind == "end" else repr(tok.text)
        return _error(self.text, tok.col, f"{message}, got {got}")

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise _error(self.text, 1, "empty condition")
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail(tok, "expected 'and', 'or' or the end of the condition")
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.peek().kind == "kw" and self.peek().text == "or":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Node:
        items = [self.not_()]
        while self.peek().kind == "kw" and self.peek().text == "and":
            self.take()
            items.append(self.not_())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_(self) -> Node:
        tok = self.peek()
        if self.depth > 100:
            raise _error(self.text, tok.col, "condition nested too deeply")
        if tok.kind == "kw" and tok.text == "not":
            self.take()
            self.depth += 1
            try:
                return Not(self.not_())
            finally:
                self.depth -= 1
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            self.depth += 1
            try:
                node = self.or_()
            finally:
                self.depth -= 1
            close = self.take()
            if close.kind != "punct" or close.text != ")":
                raise _error(
                    self.text,
                    close.col,
                    f"expected ')' to close the '(' at column {tok.col}, got "
                    + ("the end of the condition" if close.kind == "end" else repr(close.text)),
                )
            return node
        return self.comparison()

    def comparison(self) -> Compare:
        left = self.operand()
        op = self.peek()
        if op.kind != "op":
            raise self.fail(op, "expected a comparison (> >= < <= == !=)")
        self.take()
        right = self.operand()
        if isinstance(left, Number) and isinstance(right, Number):
            raise _error(self.text, left.col, "a comparison needs a metric on one side")
        return Compare(op.text, left, right, op.col)

    def operand(self) -> Number | MetricRef:
        tok = self.take()
        if tok.kind == "number":
            try:
                value = float(tok.text.replace("_", ""))
            except ValueError:
                raise _error(self.text, tok.col, f"bad number {tok.text!r}") from None
            if not math.isfinite(value):
                raise _error(self.text, tok.col, f"number {tok.text!r} is out of range")
            if tok.unit is not None:
                value *= UNITS[tok.unit][1]
            return Number(value, tok.unit, tok.text + (tok.unit or ""), tok.col)
        if tok.kind == "name":
            return MetricRef(tok.text, self.matchers(), tok.col)
        raise self.fail(tok, "expected a metric name or a number")

    def matchers(self) -> tuple[tuple[str, str], ...]:
        if not (self.peek().kind == "punct" and self.peek().text == "{"):
            return ()
        self.take()
        out: dict[str, str] = {}
        while True:
            name = self.take()
            if name.kind != "name":
                raise self.fail(name, "expected a label name")
            eq = self.take()
            if eq.kind != "punct" or eq.text != "=":
                raise self.fail(eq, "expected '=' after the label name")
            value = self.take()
            if value.kind != "string":
                raise self.fail(value, "expected a quoted label value")
            if name.text in out:
                raise _error(self.text, name.col, f"label {name.text!r} given twice")
            out[name.text] = re.sub(r"\\(.)", r"\1", value.text[1:-1])
            sep = self.take()
            if sep.kind == "punct" and sep.text == "}":
                return tuple(sorted(out.items()))
            if sep.kind != "punct" or sep.text != ",":
                raise self.fail(sep, "expected ',' or '}'")


# ----------------------------------------------------------------- condition


def _walk_metrics(node: Node) -> list[MetricRef]:
    if isinstance(node, Compare):
        return [x for x in (node.left, node.right) if isinstance(x, MetricRef)]
    if isinstance(node, Not):
        return _walk_metrics(node.item)
    return [m for item in node.items for m in _walk_metrics(item)]


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition; :meth:`bind` checks it against the metrics that exist."""

    text: str
    node: Node
    units: Mapping[str, str] = field(default_factory=dict)  # metric key -> unit, once bound

    @property
    def metrics(self) -> tuple[MetricRef, ...]:
        """Every metric the condition reads, in order of appearance, without repeats."""
        seen: dict[str, MetricRef] = {}
        for m in _walk_metrics(self.node):
            seen.setdefault(m.key, m)
        return tuple(seen.values())

    def bind(self, catalog: Mapping[str, MetricInfo]) -> Condition:
        """Check names, labels and units against ``catalog``; raise RuleError on a mistake."""
        units: dict[str, str] = {}
        for m in _walk_metrics(self.node):
            info = catalog.get(m.name)
            if info is None:
                close = difflib.get_close_matches(m.name, list(catalog), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise _error(self.text, m.col, f"unknown metric {m.name!r}{hint}")
            for k, _ in m.labels:
                if k not in info.labels:
                    allowed = ", ".join(sorted(info.labels)) or "none"
                    raise _error(
                        self.text,
                        m.col,
                        f"metric {m.name!r} has no label {k!r} (labels: {allowed})",
                    )
            units[m.key] = info.unit
        self._check_units(self.node, units)
        return Condition(self.text, self.node, units)

    def _check_units(self, node: Node, units: Mapping[str, str]) -> None:
        if isinstance(node, Not):
            self._check_units(node.item, units)
            return
        if not isinstance(node, Compare):
            for item in node.items:
                self._check_units(item, units)
            return
        sides = [node.left, node.right]
        metric_units = [units[s.key] for s in sides if isinstance(s, MetricRef)]
        if len(metric_units) == 2:
            a, b = (METRIC_UNITS.get(u, ("", 1.0))[0] for u in metric_units)
            if a != b:
                raise _error(
                    self.text,
                    node.col,
                    f"cannot compare a {metric_units[0] or 'plain number'} with a"
                    f" {metric_units[1] or 'plain number'}",
                )
            return
        unit = metric_units[0]
        num = next(s for s in sides if isinstance(s, Number))
        if num.unit is None:
            return
        accepts = METRIC_UNITS.get(unit, ("", 1.0))[0]
        if UNITS[num.unit][0] != accepts:
            metric = next(s for s in sides if isinstance(s, MetricRef))
            what = {"time": "a duration", "share": "a percentage"}[UNITS[num.unit][0]]
            kind = {
                "ms": "milliseconds",
                "s": "seconds",
                "ratio": "a share (0-1)",
                "percent": "percent",
            }.get(unit, "a plain number")
            raise _error(
                self.text,
                num.col,
                f"{num.text!r} is {what} but {metric.name!r} is {kind}",
            )

    def threshold(self, num: Number, unit: str) -> float:
        """A literal in a metric's unit (``1s`` against milliseconds is 1000)."""
        if num.unit is None:
            return num.value
        return num.value * METRIC_UNITS.get(unit, ("", 1.0))[1]

    def evaluate(self, values: Mapping[str, float]) -> bool:
        """The condition's truth for metric values keyed by :attr:`MetricRef.key`."""
        return self._eval(self.node, values)

    def _eval(self, node: Node, values: Mapping[str, float]) -> bool:
        if isinstance(node, Compare):
            left = self._value(node.left, node.right, values)
            right = self._value(node.right, node.left, values)
            return _OPS[node.op](left, right)
        if isinstance(node, Not):
            return not self._eval(node.item, values)
        if isinstance(node, And):
            return all(self._eval(i, values) for i in node.items)
        return any(self._eval(i, values) for i in node.items)

    def _value(
        self, side: Number | MetricRef, other: Number | MetricRef, values: Mapping[str, float]
    ) -> float:
        if isinstance(side, MetricRef):
            return values.get(side.key, math.nan)
        assert isinstance(other, MetricRef)  # the parser rejects number-vs-number
        return self.threshold(side, self.units.get(other.key, ""))

    def first_value(self, values: Mapping[str, float]) -> float | None:
        """The first metric's value: what a notification reports."""
        ms = self.metrics
        return values.get(ms[0].key) if ms else None


def parse(text: str) -> Condition:
    """Parse a condition; raises :class:`~eventmon.RuleError` pointing at the mistake."""
    if not isinstance(text, str):
        raise RuleError(f"a condition must be a string, got {type(text).__name__}")
    if len(text) > 10_000:
        raise RuleError("a condition must be under 10,000 characters")
    return Condition(text, _Parser(text).parse())
