"""The eventmon Django app against real Django and real SQLite, in subprocesses.

``manage.py check`` (Django's own command) must fail on a bad ``EVENTMON`` setting
with an ``eventmon`` check id; queries, their errors and a real failure to connect
(a SQLite file in a directory that does not exist) must be counted, and the
connection error must fire the default ``database_connection_failure`` rule.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from servers import PYTHON

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    environ["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), environ.get("PYTHONPATH", "")])
    environ["EVENTMON_TEST_DB"] = str(tmp_path / "db.sqlite3")
    environ.update(env)
    return subprocess.run(
        [PYTHON, *args],
        cwd=TESTS,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run(["-m", "django", "check", "--settings=adapters.djapp.db_settings"], tmp_path, **env)


def test_manage_py_check_passes_with_good_settings(tmp_path: Path) -> None:
    good = {
        "exclude_paths": ["/health"],
        "exclude_patterns": ["^/static/"],
        "exclude_methods": ["OPTIONS"],
        "namespace": "tickets",
        "const_labels": {"app_name": "tickets"},
        "group_status_codes": True,
        "header_labels": {"tenant": "X-Tenant-ID"},
    }
    result = check(tmp_path, EVENTMON_TEST_SETTINGS=json.dumps(good))
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("eventmon", "check_id", "message"),
    [
        ({"unit": "min"}, "eventmon.E001", "unit must be 's' or 'ms', got 'min'"),
        ({"metrics": "/m"}, "eventmon.E001", "unknown keys ['metrics']"),
        ({"collector": "no.such.module.C"}, "eventmon.E001", "settings.EVENTMON['collector']"),
        ("yes", "eventmon.E001", "settings.EVENTMON must be a dict"),
        ({"dashboard_token": "t"}, "eventmon.E001", "add 'dashboard': True"),
        ({"database_metrics": "yes"}, "eventmon.E002", "must be True or False, got 'yes'"),
        ({"exclude_patterns": ["(x"]}, "eventmon.E001", "exclude_patterns entry '(x' is not"),
        ({"exclude_methods": ["FETCH"]}, "eventmon.E001", "exclude_methods has ['FETCH']"),
        ({"namespace": "1x"}, "eventmon.E001", "namespace must be a Prometheus name prefix"),
        ({"const_labels": {"le": "1"}}, "eventmon.E001", "'le' is a label eventmon's own"),
        ({"group_status_codes": 1}, "eventmon.E001", "group_status_codes must be True or False"),
        (
            {"header_labels": {"status_code": "X-Status"}},
            "eventmon.E001",
            "header_labels: 'status_code' is a label eventmon's own",
        ),
        (
            {"label_callbacks": {"tenant": "myapp.labels.tenant_of"}},
            "eventmon.E001",
            "label_callbacks: 'tenant' must map to a callable",
        ),
    ],
)
def test_manage_py_check_fails_on_a_bad_eventmon_setting(
    tmp_path: Path, eventmon: Any, check_id: str, message: str
) -> None:
    result = check(tmp_path, EVENTMON_TEST_SETTINGS=json.dumps(eventmon))
    assert result.returncode == 1
    assert f"settings.EVENTMON: ({check_id}) " in result.stderr
    assert message in result.stderr
    assert result.stderr.count("(eventmon.E") == 1  # one mistake, one error


def test_manage_py_check_warns_without_the_middleware(tmp_path: Path) -> None:
    result = check(tmp_path, EVENTMON_TEST_MIDDLEWARE="0")
    assert result.returncode == 0
    assert "(eventmon.W001) eventmon.django.EventmonMiddleware is not in MIDDLEWARE" in (
        result.stderr + result.stdout
    )


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = run(["-m", "adapters.djapp.db_probe"], tmp_path_factory.mktemp("db"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_connection_error_counter_exported_from_the_start(probe: dict[str, Any]) -> None:
    assert probe["at_start"] == {"db_connection_errors": 0}


def test_queries_counted_on_every_connection(probe: dict[str, Any]) -> None:
    after = probe["after_queries"]
    # CREATE TABLE; SELECT 1 on another thread's connection; the view's count and
    # executemany (once); the bad statement.
    assert after["db_queries/default"] == 5
    assert 0 < after["db_query_seconds/default"] < 5
    assert (probe["items"], probe["bad_sql"]) == (200, 500)


def test_bad_sql_is_a_query_error_not_a_connection_error(probe: dict[str, Any]) -> None:
    assert probe["after_queries"]["db_query_errors/default"] == 1
    assert probe["after_queries"]["db_connection_errors"] == 0


def test_failed_connection_is_counted_and_fires_the_default_rule(probe: dict[str, Any]) -> None:
    assert probe["unreachable"] == 500
    after = probe["after_unreachable"]
    assert after["db_connection_errors"] == 1
    assert after["db_queries/default"] == 5  # no statement ran
    # Evaluated every 15 s (fake clock): fires at the first evaluation after the
    # error (at 30 s) and resolves once it has left the 60 s window.
    assert probe["notices"] == ["30:firing", "90:resolved"]
    metrics = probe["metrics"]
    assert "db_connection_errors_total 1" in metrics
    assert 'db_queries_total{database="default"} 5' in metrics
    assert 'db_query_errors_total{database="default"} 1' in metrics


def test_database_metrics_can_be_turned_off(tmp_path: Path) -> None:
    result = run(
        ["-m", "adapters.djapp.db_probe"],
        tmp_path,
        EVENTMON_TEST_SETTINGS='{"database_metrics": false}',
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert "db_queries/default" not in probe["after_unreachable"]
    # The engine's rule still exports the counter, but nothing counts into it.
    assert probe["after_unreachable"]["db_connection_errors"] == 0


# -- the wrapper alone, in this process: how errors are told apart, and faults contained


class FakeConnection:
    """What the wrapper reads of a DatabaseWrapper: its alias and the driver's connection."""

    def __init__(self, closed: int | None) -> None:
        self.alias = "main"
        self.connection = None if closed is None else type("Raw", (), {"closed": closed})()


def statement(metrics: Any, connection: FakeConnection, error: BaseException | None) -> Any:
    def execute(sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if error is not None:
            raise error
        return "rows"

    return metrics(execute, "SELECT 1", None, False, {"connection": connection})


@pytest.mark.parametrize(
    ("error", "closed", "connection_errors"),
    [
        ("OperationalError", 2, 1),  # psycopg: the server went away under the statement
        ("OperationalError", 0, 0),  # a lock timeout, a missing table: the link is fine
        ("InterfaceError", 0, 1),  # the driver's connection is unusable
        ("ProgrammingError", 2, 0),  # a bad statement is never a connection error
    ],
)
def test_which_statement_errors_are_connection_errors(
    collector: Any, error: str, closed: int, connection_errors: int
) -> None:
    from django import db

    from eventmon.django_db import DatabaseMetrics

    metrics = DatabaseMetrics(collector)
    with pytest.raises(getattr(db, error)):
        statement(metrics, FakeConnection(closed), getattr(db, error)("x"))
    assert collector.counter_value("db_query_errors", {"database": "main"}) == 1
    assert collector.counter_value("db_queries", {"database": "main"}) == 1
    assert collector.counter_value("db_connection_errors") == connection_errors


def test_a_fault_while_counting_never_reaches_the_app(collector: Any, caplog: Any) -> None:
    from eventmon.django_db import DatabaseMetrics

    metrics = DatabaseMetrics(collector)

    def broken(key: Any, amount: float) -> None:
        raise RuntimeError("counter broken")

    metrics._inc = broken
    assert statement(metrics, FakeConnection(0), None) == "rows"
    assert collector.internal_errors() == {"django.db": 1}
    assert "counting a database metric failed" in caplog.text
