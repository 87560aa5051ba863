"""Every code block of README.md and docs/*.md is exercised, so the docs stay true.

* ``python`` blocks run, page by page, in order, in one namespace per page. A page's setup
  (``SETUP`` below) may put names in that namespace before a block that uses them — the app a
  snippet wraps, a collector — but the block's own text is what runs. The only rewrites are
  the placeholders declared in ``PLACEHOLDERS`` (paths under /run or /var, ``routes=...``),
  and each declared placeholder must still occur in its page.
* ``bash`` / ``console`` blocks: commands in ``RUN`` are run (quick, local, no server); every
  other line must name real things: ``eventmon X`` subcommands whose ``--help`` works and
  lists every ``--flag`` used, ``python FILE`` files that exist, ``pip install`` extras that
  pyproject declares, ``nox -s`` sessions the noxfile defines, gunicorn/uvicorn options they
  accept, ``EVENTMON_*`` variables eventmon reads.
* A block that cannot run here is preceded by ``<!-- docs-test: skip REASON -->``; the reason
  is required.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import eventmon
from eventmon.cli import main as eventmon_main
from servers import ROOT

PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")], key=lambda p: p.relative_to(ROOT)
)
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(?P<verb>\w+)(?P<reason>[^>]*?)\s*-->")
SHELL = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = "\n".join(line[indent:] for line in lines[i + 1 : end])
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = None
        if d := _DIRECTIVE.search(before):
            assert d["verb"] == "skip", f"{page.name}:{i}: unknown docs-test directive {d[0]}"
            skip = d["reason"].strip()
            assert skip, f"{page.name}:{i}: docs-test: skip needs a reason"
        out.append(Block(page, i + 1, m["lang"].lower(), body + "\n", skip))
        i = end + 1
    return out


# -- python blocks --------------------------------------------------------------------------

# Declared placeholders: (page, text in the page, what runs instead). {tmp} is a fresh folder.
PLACEHOLDERS: list[tuple[str, str, str]] = [
    ("README.md", '"/run/gunicorn.pid"', '"{tmp}/gunicorn.pid"'),
    ("docs/scaling.md", '"/run/gunicorn.pid"', '"{tmp}/gunicorn.pid"'),
    ("docs/forecasting.md", '"/var/lib/myapp/traffic.db"', '"{tmp}/traffic.db"'),
    ("docs/multiprocess.md", '"/run/myapp/eventmon"', '"{tmp}/eventmon"'),
    ("docs/alerts.md", "routes=...", "routes=[]"),
    ("docs/getting-started.md", "routes=[...]", "routes=[]"),
    ("docs/deployment.md", '9464, host="0.0.0.0"', '0, host="127.0.0.1"'),
]


class Stoppers:
    """Background workers the snippets start, stopped when the page is done."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stops: list[Callable[[], object]] = []
        from eventmon.scaling import AutoScalingManager, HistoryRecorder

        for cls in (AutoScalingManager, HistoryRecorder):
            self._track(monkeypatch, cls)

    def _track(self, monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
        original = cls.start
        stops = self.stops

        def start(self: Any, *args: Any, **kwargs: Any) -> Any:
            stops.append(self.stop)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "start", start)

    def close(self) -> None:
        for stop in reversed(self.stops):
            stop()


def starlette_app() -> Any:
    from starlette.applications import Starlette

    return Starlette()


def flask_app() -> Any:
    from flask import Flask

    return Flask("docs")


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _schedule() -> Any:
    import time

    from eventmon.scaling import InMemoryEventSchedule, ScheduledEvent

    schedule = InMemoryEventSchedule()
    t0 = time.time() + 3600
    schedule.add(ScheduledEvent("concert-42", start=t0, end=t0 + 3 * 3600, registered=12_345))
    return schedule


def _scaler(tmp: Path) -> Any:
    from eventmon.scaling import HistoryStore, PredictiveScaler

    return PredictiveScaler(_schedule(), history=HistoryStore(tmp / "traffic.db"))


def _flask_client() -> Any:
    from flask import Response

    from eventmon.flask import Eventmon

    app = flask_app()
    app.add_url_rule("/events/<int:event_id>", "event", lambda event_id: "ok")
    app.add_url_rule("/live", "live", lambda: Response(iter([b"a", b"b", b"c"])))  # streamed
    Eventmon(app)  # on the default collector, the page's `collector`
    return app.test_client()


def _sqlite_pool(tmp: Path) -> Any:
    import sqlalchemy

    # a database file in a folder that does not exist: connecting fails like a down server
    return sqlalchemy.create_engine(f"sqlite:///{tmp}/missing/db.sqlite")


def _alerts_yaml(tmp: Path) -> dict[str, Any]:
    # the page's first YAML block is the "alerts.yaml" the next block loads
    yaml_block = next(b for b in blocks(ROOT / "docs/alerts.md") if b.lang == "yaml")
    (tmp / "alerts.yaml").write_text(yaml_block.text)
    return {}


# Names a page's blocks use without defining them: {page: [(text in the block, setup)]}.
# A setup runs before each block containing its text and returns names to add.
Setup = Callable[[Path], dict[str, Any]]
SETUP: dict[str, list[tuple[str, Setup]]] = {
    "README.md": [
        ("app.add_middleware(", lambda tmp: {"app": starlette_app()}),
        (
            "Eventmon(app)",
            lambda tmp: {"app": flask_app(), "MIDDLEWARE": ["x.Middleware"], "INSTALLED_APPS": []},
        ),
        (
            "AlertEngine(collector",
            lambda tmp: {
                "WEBHOOK_URL": "http://127.0.0.1:9/hook",
                "routes": [],
                "Starlette": type(starlette_app()),
            },
        ),
        ("PredictiveScaler(schedule)", lambda tmp: {"schedule": _schedule()}),
    ],
    "docs/alerts.md": [
        (
            "Starlette(",
            lambda tmp: {
                "Starlette": type(starlette_app()),
                "EventmonMiddleware": __import__("eventmon.asgi").asgi.EventmonMiddleware,
            },
        ),
        ('load_rules("alerts.yaml")', _alerts_yaml),
        (
            "pool.connect()",
            lambda tmp: {
                "pool": _sqlite_pool(tmp),
                "OperationalError": __import__("sqlalchemy.exc").exc.OperationalError,
            },
        ),
        (
            "AlertmanagerNotifier(",
            lambda tmp: {
                "AlertmanagerNotifier": __import__(
                    "eventmon.alerting.notifiers"
                ).alerting.notifiers.AlertmanagerNotifier
            },
        ),
    ],
    "docs/dashboard.md": [
        (
            "dashboard=dash",
            lambda tmp: {
                "app": starlette_app(),
                "engine": __import__("eventmon.alerting").alerting.AlertEngine(
                    __import__("eventmon").MetricsCollector(), []
                ),
                "autoscaler": type("Autoscaler", (), {"history": []})(),
                "scaler": _scaler(tmp),
            },
        ),
    ],
    "docs/deployment.md": [("start_metrics_server(", lambda tmp: {"app": starlette_app()})],
    "docs/frameworks.md": [
        ("EventmonMiddleware(app)", lambda tmp: {"app": wsgi_app}),
    ],
    "docs/getting-started.md": [
        ("EventmonMiddleware(app, dashboard=True)", lambda tmp: {"app": wsgi_app}),
        ("Dashboard(token=", lambda tmp: {"app": starlette_app()}),
    ],
    "docs/index.md": [("app.add_middleware(", lambda tmp: {"app": starlette_app()})],
    "docs/scaling.md": [],
    "docs/troubleshooting.md": [("client.get(", lambda tmp: {"client": _flask_client()})],
}

# Blocks that end in an exception on purpose: {(page, text in the block): exception name}.
RAISES = {("docs/alerts.md", "pool.connect()"): "OperationalError"}


def python_pages() -> list[Path]:
    return [p for p in PAGES if any(b.lang == "python" and not b.skip for b in blocks(p))]


@pytest.fixture
def page_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean default collector, cwd in tmp, and every started worker stopped afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVENTMON_TOKEN", "s3cret")
    monkeypatch.setenv("METRICS_TOKEN", "m3trics-token")
    previous = eventmon.default_collector()
    fresh = eventmon.MetricsCollector()
    eventmon.set_default_collector(fresh)
    stoppers = Stoppers(monkeypatch)
    threads = set(threading.enumerate())
    try:
        yield tmp_path
    finally:
        stoppers.close()
        eventmon.set_default_collector(previous)
        fresh.shutdown()
    from eventmon.exporters import multiprocess

    for agg in list(multiprocess._registered):
        multiprocess.disable(agg.collector)
    left = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    for t in left:
        t.join(timeout=5)
    assert not [t for t in left if t.is_alive()], "a snippet left a thread running"


def run_python(block: Block, ns: dict[str, Any], tmp: Path) -> None:
    page = str(block.page.relative_to(ROOT))
    text = block.text
    for where, old, new in PLACEHOLDERS:
        if where == page:
            text = text.replace(old, new.format(tmp=tmp))
    for needle, setup in SETUP.get(page, []):
        if needle in block.text:
            ns.update(setup(tmp))
    code = compile(text, block.where, "exec")
    expected = next((e for (p, n), e in RAISES.items() if p == page and n in block.text), None)
    if expected is None:
        exec(code, ns)
        return
    with pytest.raises(Exception) as info:  # noqa: PT011 - the name is checked below
        exec(code, ns)
    assert type(info.value).__name__ == expected, info.value


@pytest.mark.parametrize("page", python_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page: Path, page_env: Path) -> None:
    # `collector` in the prose: the (fresh) default collector
    ns: dict[str, Any] = {
        "__name__": f"docs_{page.stem}",
        "collector": eventmon.default_collector(),
    }
    for block in blocks(page):
        if block.lang == "python" and not block.skip:
            run_python(block, ns, page_env)
    CHECKS.get(str(page.relative_to(ROOT)), lambda ns: None)(ns)


def _check_alerts(ns: dict[str, Any]) -> None:
    # the connection error was counted for the database alert rule
    assert ns["collector"].counter_value("db_connection_errors") == 1


def _check_dashboard(ns: dict[str, Any]) -> None:
    dash = ns["dash"]
    assert isinstance(dash.forecast_provider(), dict)
    assert dash.scaling_provider() == []


def _statuses(collector: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for series in collector.series():
        out.setdefault(series.endpoint, set()).add(series.status_code)
    return out


def _check_troubleshooting(ns: dict[str, Any]) -> None:
    # the streamed response was counted with its real status, not as a 404 or a 499
    assert _statuses(ns["collector"]) == {"/live": {"200"}}


def _check_frameworks(ns: dict[str, Any]) -> None:
    # the page's example test, run with a client of an app that has those routes
    ns["test_request_counted"](_flask_client(), ns["collector"])
    assert _statuses(ns["collector"]) == {"/events/<int:event_id>": {"200"}, "/live": {"200"}}


def _check_forecasting(ns: dict[str, Any]) -> None:
    assert ns["scaler"].pre_scale_for_event("concert-42") == 13  # "-> 13" says the page


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "docs/alerts.md": _check_alerts,
    "docs/dashboard.md": _check_dashboard,
    "docs/forecasting.md": _check_forecasting,
    "docs/frameworks.md": _check_frameworks,
    "docs/troubleshooting.md": _check_troubleshooting,
}


def test_declared_placeholders_and_setups_are_still_used() -> None:
    for page, old, _new in PLACEHOLDERS:
        texts = [b.text for b in blocks(ROOT / page) if b.lang == "python"]
        assert any(old in t for t in texts), f"{page}: placeholder {old!r} no longer used"
    for page, setups in SETUP.items():
        texts = [b.text for b in blocks(ROOT / page) if b.lang == "python"]
        for needle, _ in setups:
            assert any(needle in t for t in texts), f"{page}: setup for {needle!r} unused"


def test_skips_give_a_reason(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("<!-- docs-test: skip needs a cluster -->\n```bash\nkubectl apply\n```\n")
    assert blocks(md)[0].skip == "needs a cluster"
    md.write_text("<!-- docs-test: skip -->\n```bash\nkubectl apply\n```\n")
    with pytest.raises(AssertionError, match="needs a reason"):
        blocks(md)


# -- data blocks ---------------------------------------------------------------------------

# "..." abridges a list or an object in the JSON examples.
_ABRIDGED = [(re.compile(r"\[\.\.\.[^\]]*\]"), "[]"), (re.compile(r"\{\.\.\.\}"), "{}")]


def data_blocks() -> list[Block]:
    return [b for p in PAGES for b in blocks(p) if b.lang in DATA and not b.skip]


def _load_yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _load_toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the alerts extra installs tomli there
        import tomli as tomllib
    return tomllib.loads(text)


def _load_json(text: str) -> Any:
    import json

    for pattern, replacement in _ABRIDGED:
        text = pattern.sub(replacement, text)
    return json.loads(text)


DATA: dict[str, Callable[[str], Any]] = {"yaml": _load_yaml, "toml": _load_toml, "json": _load_json}


@pytest.mark.parametrize("block", data_blocks(), ids=lambda b: b.where)
def test_data_blocks_parse_and_rule_files_load(block: Block, tmp_path: Path) -> None:
    doc = DATA[block.lang](block.text)
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if rules and all("condition" in r for r in rules):  # an eventmon rule file
        from eventmon.alerting import load_rules

        path = tmp_path / f"rules.{block.lang}"
        path.write_text(block.text)
        assert len(load_rules(path)) == len(rules)


def test_json_export_example_has_the_real_keys(collector: Any) -> None:
    from eventmon.exporters.json import snapshot_json

    (example,) = [
        b
        for b in blocks(ROOT / "docs/exporters.md")
        if b.lang == "json" and "totalRequests" in b.text
    ]
    collector.observe("GET", "/events/{event_id}", 200, 0.1)
    collector.increment_counter("db_connection_errors", {"db": "main"})
    real = snapshot_json(collector)
    documented = _load_json(example.text)
    assert set(documented) == set(real)
    assert set(documented["endpoints"]["/events/{event_id}"]) == set(
        real["endpoints"]["/events/{event_id}"]
    )


# -- shell blocks ---------------------------------------------------------------------------

# Lines that are run (quick, local, no server), by their start. Files they read come from the
# page's other blocks (see run_shell).
RUN = (
    "eventmon --version",
    "python -c ",
    "python benchmarks/forecast_eval.py",
    "eventmon rules export ",
    "promtool check rules ",
)
# Commands that are only checked for the names they use, or that name nothing to check.
CHECKED = {"eventmon", "python", "pip", "nox", "gunicorn", "uvicorn", "flask", "cd", "export"}
UNCHECKED = {"curl", "echo", "promtool", "kubectl", "amtool"}


def shell_commands(block: Block) -> list[str]:
    """The block's commands: prompts and comments dropped, continuations joined."""
    text = re.sub(r"\\\n\s*", " ", block.text)
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if block.lang == "console":
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line or line.startswith("#"):
            continue
        out.extend(_split_commands(line))
    return [c for c in out if c]


def _split_commands(line: str) -> list[str]:
    """``a && b; c & d`` into its commands, leaving quoted text alone."""
    parts, current, quote = [], "", ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif line.startswith("&&", i) or ch == ";" or (ch == "&" and line[i - 1 : i] != ">"):
            parts.append(current.strip())
            current = ""
            i += 2 if line.startswith("&&", i) else 1
            continue
        current += ch
        i += 1
    return [p for p in [*parts, current.strip()] if p]


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        eventmon_main([*argv, "--help"])
    assert exit_.value.code == 0, f"eventmon {' '.join(argv)} --help failed"
    return out.getvalue()


_HELP_CACHE: dict[str, str] = {}


def tool_help(tool: str) -> str:
    if tool not in _HELP_CACHE:
        exe = Path(sys.executable).with_name(tool)
        proc = subprocess.run(
            [str(exe), "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        _HELP_CACHE[tool] = proc.stdout
    return _HELP_CACHE[tool]


def _flags(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if re.match(r"^-{1,2}[A-Za-z]", w)]


def _is_option(flag: str, help_text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def check_eventmon(words: list[str], where: str) -> None:
    argv = [w for w in words[1:] if w not in ("[", "]")]
    if argv in ([], ["--version"], ["--help"]):
        return
    sub = [argv[0]]
    if argv[0] == "rules" and len(argv) > 1 and not argv[1].startswith("-"):
        sub.append(argv[1])
    text = _help(sub)
    for flag in _flags(argv):
        assert _is_option(flag, text), f"{where}: eventmon {' '.join(sub)} has no {flag}"


def check_command(command: str, block: Block, cwd: Path = ROOT) -> Path:
    """Check one command's names; returns the working folder for the next command."""
    where = block.where
    words = shlex.split(command.replace("[", " [ ").replace("]", " ] "))
    env_vars = []
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        env_vars.append(words.pop(0).split("=", 1)[0])
    if words and words[0] == "export":
        env_vars += [w.split("=", 1)[0] for w in words[1:]]
        words = []
    # the eventmon under test: src/ in a checkout, site-packages when testing a wheel
    src = "\n".join(p.read_text() for p in Path(eventmon.__file__).parent.rglob("*.py"))
    for var in env_vars:
        if var.startswith("EVENTMON_"):
            assert f'"{var}"' in src, f"{where}: eventmon reads no {var}"
    if not words:
        return cwd
    tool = words[0]
    assert tool in CHECKED | UNCHECKED, (
        f"{where}: no check for {tool!r}: add one to tests/test_docs.py, or mark the block "
        "<!-- docs-test: skip REASON -->"
    )
    if tool == "eventmon":
        check_eventmon(words, where)
    elif tool == "python" and len(words) > 1:
        if words[1] == "-m":
            assert words[2] in {"pip", "eventmon"}, where
            if words[2] == "pip":
                check_command(shlex.join(words[2:]), block)
        elif words[1] != "-c":
            assert (cwd / words[1]).is_file(), f"{where}: no file {words[1]}"
    elif tool == "pip":
        pyproject = (ROOT / "pyproject.toml").read_text()
        for extras in re.findall(r"\[([\w,-]+)\]", command):
            for extra in extras.split(","):
                assert re.search(rf"^{re.escape(extra)} = \[", pyproject, re.M), (
                    f"{where}: pyproject has no extra {extra!r}"
                )
    elif tool == "nox" and "-s" in words:
        session = words[words.index("-s") + 1]
        assert f"def {session}(" in (ROOT / "noxfile.py").read_text(), f"{where}: no {session}"
    elif tool in ("gunicorn", "uvicorn"):
        text = tool_help(tool)
        for flag in _flags(words[1:]):
            assert _is_option(flag, text), f"{where}: {tool} has no {flag}"
    elif tool == "flask":
        app = words[words.index("--app") + 1]
        assert (cwd / app).is_file(), f"{where}: no {app}"
    elif tool == "cd":
        assert (cwd / words[1]).is_dir(), f"{where}: no folder {words[1]}"
        return cwd / words[1]
    return cwd


def shell_blocks() -> list[Block]:
    return [b for p in PAGES for b in blocks(p) if b.lang in SHELL and not b.skip]


@pytest.mark.parametrize("block", shell_blocks(), ids=lambda b: b.where)
def test_shell_blocks_name_real_things(block: Block, tmp_path: Path) -> None:
    cwd = ROOT
    for command in shell_commands(block):
        cwd = check_command(command, block, cwd)
        if command.startswith(RUN):
            run_shell(command, block, tmp_path)


def run_shell(command: str, block: Block, tmp: Path) -> None:
    if "alerts.yaml" in command:
        _alerts_yaml(tmp)
    words = shlex.split(command)
    if words[0] == "python":
        words[0] = sys.executable
        words = [str(ROOT / w) if w.startswith("benchmarks/") else w for w in words]
    elif words[0] == "eventmon":
        words = [sys.executable, "-m", "eventmon", *words[1:]]
    elif words[0] == "promtool":
        from servers import require_binary

        words[0] = require_binary("promtool")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        words, cwd=tmp, capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 0, f"{block.where}: {command}\n{proc.stdout}\n{proc.stderr}"


def test_shell_checks_catch_unknown_flags_and_files() -> None:
    block = Block(ROOT / "README.md", 1, "bash", "", None)
    with pytest.raises(AssertionError, match="has no --bogus"):
        check_command("eventmon forecast --history x.csv --bogus", block)
    with pytest.raises(AssertionError, match="has no --wrokers"):
        check_command("uvicorn app:app --wrokers 4", block)
    with pytest.raises(AssertionError, match="no extra 'nope'"):
        check_command('pip install "eventmon[nope]"', block)
    with pytest.raises(AssertionError, match="reads no EVENTMON_NOPE"):
        check_command("EVENTMON_NOPE=1 gunicorn app:app", block)
    with pytest.raises(AssertionError, match="no check for 'kubectx'"):
        check_command("kubectx prod", block)


# -- the API reference ----------------------------------------------------------------------

API_MODULES = {
    "eventmon",
    "eventmon.asgi",
    "eventmon.wsgi",
    "eventmon.flask",
    "eventmon.django",
    "eventmon.alerting",
    "eventmon.alerting.notifiers",
    "eventmon.scaling",
    "eventmon.exporters.prometheus",
}


def test_api_reference_has_a_page_per_public_module() -> None:
    import importlib

    pages = sorted((ROOT / "docs" / "api").glob("*.md"))
    documented = {
        m for p in pages for m in re.findall(r"^::: ([\w.]+)\s*$", p.read_text(), re.MULTILINE)
    }
    assert documented >= API_MODULES, sorted(API_MODULES - documented)
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in pages:
        assert f"api/{page.name}" in nav, f"docs/api/{page.name} is not in mkdocs.yml's nav"
    for name in documented:
        module = importlib.import_module(name)
        assert module.__all__, f"{name} has no __all__: the reference would show nothing"


def test_docstring_args_entries_fit_the_generated_docs() -> None:
    """Each ``Args:`` entry starts ``name[, name...]: text`` on one line.

    A list of names wrapped onto a second line breaks the strict docs build (griffe) and the
    configuration tables (docs/hooks); found here in a second instead of in ``nox -s docs``.
    """
    import ast
    import inspect

    bad = []
    for path in sorted(Path(eventmon.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node, clean=False)
            lines = inspect.cleandoc(doc or "").splitlines()
            if "Args:" not in (line.strip() for line in lines):
                continue
            start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
            indent = len(lines[start]) - len(lines[start].lstrip())
            for line in lines[start + 1 :]:
                if line.strip() and len(line) - len(line.lstrip()) <= indent:
                    break  # the next section
                entry = len(line) - len(line.lstrip()) == indent + 4
                if entry and not re.match(r"^\s*[\w*]+(, [\w*]+)*( \([^)]*\))?:", line):
                    bad.append(f"{path.name}:{node.name}: {line.strip()}")
    assert not bad, bad
