"""The optional SQLAlchemy hook counts real connection failures as db_connection_errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventmon import MetricsCollector
from eventmon.alerting import count_db_connection_error, instrument_sqlalchemy


def test_connection_failures_are_counted(tmp_path: Path) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    col = MetricsCollector(slow_hooks=())
    good = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'ok.db'}")
    bad = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    instrument_sqlalchemy(good, col)
    instrument_sqlalchemy(bad, col)
    assert col.counter_value("db_connection_errors") == 0
    with good.connect() as conn:
        assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1
        # A failing query is not a connection failure.
        with pytest.raises(sqlalchemy.exc.OperationalError):
            conn.execute(sqlalchemy.text("select * from no_such_table"))
    assert col.counter_value("db_connection_errors") == 0
    for _ in range(2):
        with pytest.raises(sqlalchemy.exc.OperationalError):
            bad.connect()
    assert col.counter_value("db_connection_errors") == 2
    count_db_connection_error(col)
    assert col.counter_value("db_connection_errors") == 3
    good.dispose()
    bad.dispose()
    col.shutdown()
