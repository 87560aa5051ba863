"""``eventmon forecast`` on bad input or options: exit 2 and one line, never a hang."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cli_run import one_line_error
from eventmon import ConfigurationError
from eventmon.scaling.predictive import (
    MAX_HORIZON_HOURS,
    predict_traffic_pattern,
    recommend_instances,
)
from servers import ROOT

NYC = ROOT / "tests" / "data" / "nyc_taxi.csv"
T0 = 1_700_000_000 // 3600 * 3600


def history(tmp_path: Path, bad_row: str | None = None, header: str = "timestamp,value") -> Path:
    """Ten days of hourly counts; row 51 replaced by ``bad_row`` if given."""
    rows = [header] + [f"{T0 + h * 3600},{1000 + 500 * (h % 24 > 8)}" for h in range(240)]
    if header.endswith("instances"):
        rows[1:] = [r + ",3" for r in rows[1:]]
    if bad_row is not None:
        rows[50] = bad_row
    path = tmp_path / "history.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (f"{T0 + 49 * 3600},nan", "history.csv:51: value must be a finite number >= 0, got 'nan'"),
        (f"{T0 + 49 * 3600},inf", "history.csv:51: value must be a finite number >= 0, got 'inf'"),
        (f"{T0 + 49 * 3600},-inf", "value must be a finite number >= 0, got '-inf'"),
        (f"{T0 + 49 * 3600},-5", "history.csv:51: value must be a finite number >= 0, got '-5'"),
        (f"{T0 + 49 * 3600}", "history.csv:51: the value is missing"),
        ("nan,5", "history.csv:51: timestamp 'nan' is not a time between 1970 and 9000"),
        ("1e300,5", "timestamp '1e300' is not a time between 1970 and 9000"),
        ("-3600,5", "timestamp '-3600' is not a time between 1970 and 9000"),
    ],
    ids=["nan", "inf", "-inf", "negative", "missing", "nan-time", "far-future", "before-1970"],
)
def test_forecast_refuses_bad_history_values(tmp_path: Path, row: str, expected: str) -> None:
    line = one_line_error("forecast", "--history", str(history(tmp_path, row)))
    assert expected in line


def test_forecast_refuses_a_nan_instances_column(tmp_path: Path) -> None:
    path = history(tmp_path, f"{T0 + 49 * 3600},1000,nan", header="timestamp,value,instances")
    line = one_line_error("forecast", "--history", str(path))
    assert "history.csv:51: instances must be a finite number >= 0, got 'nan'" in line


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)) * 4, b"timestamp,value\n" + bytes(range(256))],
    ids=["binary", "binary-after-header"],
)
def test_forecast_refuses_a_binary_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "history.csv"
    path.write_bytes(content)
    line = one_line_error("forecast", "--history", str(path))
    assert "history.csv: not a UTF-8 text CSV (byte 0x80 at offset" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # --horizon 100000000 ran for minutes; 1e8 was argparse's multi-line usage error
        (["--horizon", "1e8"], "argument --horizon: must be a whole number between 1 and 744"),
        (["--horizon", "100000000"], "argument --horizon: must be a whole number between 1 and"),
        (["--horizon", "0"], "argument --horizon: must be a whole number between 1 and 744"),
        (["--headroom", "-2"], "argument --headroom: must be a number between 0 and 100"),
        (["--headroom", "nan"], "argument --headroom: must be a number between 0 and 100"),
        (["--capacity", "nan"], "argument --capacity: must be a number > 0, got 'nan'"),
        (["--capacity", "-1"], "argument --capacity: must be a number > 0, got '-1'"),
        (["--min-instances", "0"], "argument --min-instances: must be a whole number >= 1"),
        (["--min-instances", "5", "--max-instances", "2"], "--max-instances (2) must be at least"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_forecast_refuses_bad_options(args: list[str], expected: str) -> None:
    line = one_line_error("forecast", "--history", str(NYC), *args)
    assert expected in line


def test_the_library_bounds_the_horizon_and_checks_its_numbers() -> None:
    hourly = [(T0 + h * 3600.0, 1000.0) for h in range(48)]
    now = T0 + 48 * 3600.0
    with pytest.raises(ConfigurationError, match="horizon must be a whole number between 1 and"):
        predict_traffic_pattern(hourly, now=now, horizon=10**8)
    with pytest.raises(ConfigurationError, match="headroom must be a number between 0 and 100"):
        predict_traffic_pattern(hourly, now=now, headroom=-2)
    with pytest.raises(ConfigurationError, match="capacity_per_instance must be a number"):
        predict_traffic_pattern(hourly, now=now, capacity_per_instance=math.nan)
    longest = predict_traffic_pattern(hourly, now=now, horizon=MAX_HORIZON_HOURS)
    assert len(longest.hourly) == MAX_HORIZON_HOURS


def test_a_tiny_capacity_recommends_the_most_instances_instead_of_overflowing() -> None:
    # 1500 * 1.2 / 1e-308 is inf; ceil(inf) raised OverflowError
    assert recommend_instances(1500.0, 1e-308, max_instances=20) == 20
