"""The shared checks behind every numeric setting and the command line's number options."""

from __future__ import annotations

import argparse
import fractions

import pytest

from eventmon import ConfigurationError
from eventmon._validate import (
    MAX_SECONDS,
    arg_buckets,
    arg_integer,
    arg_number,
    bucket_bounds,
    integer,
    integer_range,
    number,
    seconds,
)


def test_numbers_come_back_as_floats_and_ints() -> None:
    assert number("x", 3, minimum=0) == 3.0
    assert type(number("x", fractions.Fraction(1, 2), above=0)) is float
    assert integer("n", 7, minimum=1) == 7
    assert seconds("t", 0, allow_zero=True) == 0.0
    assert integer_range(("lo", "hi"), 2, 2, minimum=1) == (2, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: number("x", "1"), "x must be a number, got the string '1'"),
        (lambda: number("x", True), "x must be a number, got True"),
        (lambda: number("x", float("nan"), minimum=0), "x must be a number >= 0, got nan"),
        (lambda: number("x", 2, above=0, maximum=1), "x must be a number > 0 and <= 1, got 2"),
        (lambda: number("x", 1, minimum=0, below=1), "x must be a number >= 0 and < 1, got 1"),
        (lambda: integer("n", 1.0, minimum=1), "n must be a whole number >= 1, got 1.0"),
        (lambda: integer("n", 0, minimum=1, maximum=9), "n must be a whole number between 1 and 9"),
        (lambda: seconds("t", 0), "t must be a number of seconds > 0 and <= "),
        (lambda: seconds("t", MAX_SECONDS * 2), "t must be a number of seconds > 0 and <= "),
        (lambda: seconds("t", 10, minimum=60), "t must be a number of seconds between 60 and"),
        (lambda: integer_range(("lo", "hi"), 3, 2), r"hi \(2\) must be at least lo \(3\)"),
        (lambda: bucket_bounds("b", []), "b: give at least one bound"),
        (lambda: bucket_bounds("b", [0.1, 0.1]), "b: bounds must be strictly increasing; 0.1"),
        (lambda: bucket_bounds("b", [0.1, -1]), "b: each bound must be a number of seconds > 0"),
    ],
)
def test_refusals_say_what_to_give(call: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        call()  # type: ignore[operator]
    assert "\n" not in str(info.value)


def test_argparse_types_use_the_same_checks() -> None:
    assert arg_integer(minimum=1, maximum=744)("1e2") == 100  # written as people write big ones
    assert arg_number(above=0)(" 2.5 ") == 2.5
    assert arg_buckets("0.1, 0.5,1") == (0.1, 0.5, 1.0)
    with pytest.raises(argparse.ArgumentTypeError, match="between 1 and 744, got '1e8'"):
        arg_integer(minimum=1, maximum=744)("1e8")
    with pytest.raises(argparse.ArgumentTypeError, match=r"got '2\.5'"):
        arg_integer(minimum=1)("2.5")
    with pytest.raises(argparse.ArgumentTypeError, match="must be a number > 0, got 'inf'"):
        arg_number(above=0)("inf")
    with pytest.raises(argparse.ArgumentTypeError, match=r"0\.1 comes after 0\.5"):
        arg_buckets("0.5,0.1")
