"""examples/: Grafana queries only exported metrics; promtool accepts the scrape config."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from eventmon import MetricsCollector
from eventmon.exporters.prometheus import render
from servers import ROOT, require_binary

EXAMPLES = ROOT / "examples"
_PROMQL_WORDS = {
    "sum", "rate", "increase", "max", "by", "le", "histogram_quantile", "endpoint", "direction",
    "job", "status_code", "quantile",
}  # fmt: skip


def _exported_families() -> set[str]:
    c = MetricsCollector(slow_hooks=())
    try:
        c.observe("GET", "/a", 200, 0.01)
        c.observe("GET", "/a", 500, 2.0)  # slow, so the slow counter has a sample
        c.set_gauge("eventmon_instances", 3)
        c.define_counter("eventmon_scaling_events", "", ("direction",))
        c.increment_counter("eventmon_scaling_events", {"direction": "out"})
        text = render(c).decode()
    finally:
        c.shutdown()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])  # families declared even before their first sample
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_grafana_dashboard_uses_exported_metrics() -> None:
    board = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    exported = _exported_families()
    used = set()
    for expr in exprs:
        # Drop label matchers, ranges and strings; what is left are metric names and functions.
        bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
        for word in re.findall(r"(?<![0-9.])[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
            if word not in _PROMQL_WORDS and not word.startswith("__"):
                used.add(word)
    assert used, exprs
    missing = used - exported
    assert not missing, f"the dashboard queries metrics eventmon does not export: {missing}"


def test_grafana_dashboard_is_generated_from_script(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "make_grafana_dashboard.py"
    ns: dict[str, object] = {"__name__": "make_grafana_dashboard", "__file__": str(script)}
    exec(compile(script.read_text(), str(script), "exec"), ns)
    built = ns["build"]()  # type: ignore[operator]
    assert built == json.loads((EXAMPLES / "grafana-dashboard.json").read_text())


def test_prometheus_scrape_config_is_valid(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    shutil.copy(EXAMPLES / "prometheus" / "prometheus.yml", tmp_path / "prometheus.yml")
    # The rule file is exported by `eventmon rules export`; an empty group list stands in here.
    (tmp_path / "eventmon-rules.yml").write_text("groups: []\n")
    out = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
