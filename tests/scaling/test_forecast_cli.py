from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eventmon.cli import main
from eventmon.scaling.forecast_cli import read_history
from servers import ROOT

DATA = ROOT / "tests" / "data"  # slices of real NAB traces, vendored (see the README there)
NYC = DATA / "nyc_taxi.csv"
TWITTER = DATA / "Twitter_volume_GOOG.csv"


def data_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line and not line.startswith("#")]


def test_prints_24_hourly_rows_with_instances(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forecast", "--history", str(NYC)]) == 0
    out, err = capsys.readouterr()
    rows = data_rows(out)
    assert len(rows) == 24
    first = dt.datetime.fromisoformat(rows[0][0])
    assert first == dt.datetime(2015, 2, 1, tzinfo=dt.timezone.utc)  # the hour after the data
    for i, (stamp, predicted, instances) in enumerate(rows):
        assert dt.datetime.fromisoformat(stamp) == first + dt.timedelta(hours=i)
        assert float(predicted.replace(",", "")) > 0
        assert 1 <= int(instances) <= 20
    # nyc taxi: the small hours are quiet, the evening busy
    by_hour = {dt.datetime.fromisoformat(r[0]).hour: int(r[2]) for r in rows}
    assert by_hour[4] < by_hour[19]
    assert "capacity assumed" in err


def test_json_output_is_a_list_of_hours(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["forecast", "--history", str(TWITTER), "--json", "--horizon", "6"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, list)
    assert len(doc) == 6
    assert set(doc[0]) == {"timestamp", "predicted", "recommended_instances"}
    # Twitter data ends at 21:47 with 5-minute samples: the 21:00 hour is incomplete
    assert doc[0]["timestamp"] == "2015-04-22T21:00:00+00:00"
    assert all(isinstance(h["recommended_instances"], int) for h in doc)


def test_capacity_sets_the_instances(capsys: pytest.CaptureFixture[str]) -> None:
    main(["forecast", "--history", str(NYC), "--json", "--capacity", "5000", "--headroom", "0"])
    doc = json.loads(capsys.readouterr().out)
    for h in doc:
        assert h["recommended_instances"] == max(1, min(20, -(-h["predicted"] // 5000)))


def test_instances_column_teaches_the_capacity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "fleet.csv"
    start = dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc)
    lines = ["timestamp,value,instances"]
    for h in range(24 * 7):
        busy = 8 <= h % 24 < 20
        lines.append(
            f"{(start + dt.timedelta(hours=h)).isoformat()},{9000 if busy else 3000},"
            f"{3 if busy else 1}"
        )
    csv.write_text("\n".join(lines) + "\n")
    assert main(["forecast", "--history", str(csv), "--headroom", "0"]) == 0
    out, err = capsys.readouterr()
    assert "3,000 requests/hour (learned)" in out
    assert "capacity assumed" not in err
    assert {int(r[2]) for r in data_rows(out)} == {1, 3}


def test_short_history_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "short.csv"
    csv.write_text(
        "timestamp,value\n" + "".join(f"2024-01-01 {h:02d}:00:00,{h}\n" for h in range(10))
    )
    assert main(["forecast", "--history", str(csv), "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == []
    assert "history too short: 10 of 24 hours" in err  # hourly samples: all complete
    assert "reactive" in err


def test_bad_input_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("time,count\n1,2\n")
    assert main(["forecast", "--history", str(csv)]) == 2
    assert "expected a CSV with a 'timestamp,value' header" in capsys.readouterr().err
    assert main(["forecast", "--history", str(tmp_path / "missing.csv")]) == 2
    assert "No such file" in capsys.readouterr().err
    csv.write_text("timestamp,value\nyesterday,2\n")
    assert main(["forecast", "--history", str(csv)]) == 2
    assert "bad.csv:2" in capsys.readouterr().err


def test_read_history_drops_partial_hours() -> None:
    hist = read_history(TWITTER)
    first, last = hist.counts[0][0], hist.counts[-1][0]
    assert dt.datetime.fromtimestamp(first, dt.timezone.utc).hour == 22  # data starts 21:52
    assert dt.datetime.fromtimestamp(last, dt.timezone.utc).hour == 20  # and ends 21:47


def test_plot_without_matplotlib_says_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "f.png"
    assert main(["forecast", "--history", str(NYC), "--plot", str(out)]) == 2
    assert "pip install 'eventmon[plot]'" in capsys.readouterr().err
    assert not out.exists()


def test_plot_draws_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "f.png"
    assert main(["forecast", "--history", str(NYC), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_eventmon_command_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "eventmon", "forecast", "--history", str(NYC), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 24
