"""The alert rules and the dashboard under deploy/ ask only for what cronstream exports.

Every metric name in every PromQL expression must be a series of the registry
(runtime/metrics.py) as Prometheus stores it, and every label a selector matches, an
aggregation groups by or a legend or annotation prints must be one that series carries.
Where Debian's promtool is installed (scripts/test-tools.sh installs it), it checks the
rules file and each dashboard query too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from cronstream.runtime import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "cronstream-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "cronstream.json"
README = ROOT / "README.md"
HOW_TO = "promtool not found: run 'make test-tools' (it unpacks Debian's prometheus package)"

# Prometheus adds `instance` to every scraped series, and keeps the scrape job in `job`,
# renaming a scraped `job` label (cronstream's cron job) to `exported_job`.
TARGET_LABELS = {"instance"}
PROMETHEUS_OWN = {"up": {"job", "instance"}}  # the scrape's own series
# Grafana's variables, replaced as Grafana would before promtool reads a query.
GRAFANA = {"$__rate_interval": "5m", "$topic": ".*"}

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
TEMPLATE_LABEL = re.compile(r"\{\{\s*(?:\$labels\.)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def series() -> dict[str, set[str]]:
    """Each series name cronstream exports, as scraped, with the labels Prometheus stores."""
    found: dict[str, set[str]] = dict(PROMETHEUS_OWN)
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = {"exported_job" if n == "job" else n for n in metric._labelnames}
        labels |= TARGET_LABELS
        name, kind = metric._name, metric._type
        if kind == "counter":
            found[f"{name}_total"] = labels
        elif kind == "histogram":
            found |= {f"{name}_bucket": labels | {"le"}, f"{name}_count": labels}
            found[f"{name}_sum"] = labels
        else:
            found[name] = labels
    return found


SERIES = series()


def problems(expr: str, printed: list[str]) -> list[str]:
    """What in `expr` (and the labels `printed` in its legend or annotations) is not exported."""
    wrong: list[str] = []
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values say nothing here
    used: set[str] = set()
    for name, matchers in SELECTOR.findall(text):
        labels = SERIES.get(name, set())
        used |= labels
        wrong += [f"{name} has no label {m}" for m in MATCHER.findall(matchers) if m not in labels]
    bare = GROUPING.sub(" ", re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text))
    for name, call in IDENTIFIER.findall(bare):
        if call or name in KEYWORDS or name == "inf":
            continue
        if name not in SERIES:
            wrong.append(f"{name} is not a series cronstream exports")
        used |= SERIES.get(name, set())
    for group in GROUPING.findall(text):
        labels = {label.strip() for label in group.split(",") if label.strip()}
        wrong += [f"grouped by {label}, which no series has" for label in labels - used]
    for label in {m for p in printed for m in TEMPLATE_LABEL.findall(p)} - used - {"value"}:
        wrong.append(f"prints {label}, which no series has")
    return wrong


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, expr, legend) of every panel query."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in panels
        for target in panel.get("targets", [])
    ]


def test_the_registry_reads_as_prometheus_stores_it() -> None:
    # The check below is only as good as this table: spot-check it against the README's.
    assert SERIES["cronstream_cron_runs_total"] == {"exported_job", "status", "instance"}
    assert SERIES["cronstream_batch_seconds_bucket"] == {"le", "instance"}
    assert SERIES["cronstream_consumer_lag"] == {"topic", "partition", "instance"}
    assert problems("sum by (job) (rate(cronstream_cron_runs_total[5m]))", [])
    assert problems("rate(cronstream_records_aplied_total[5m])", [])
    assert problems('cronstream_consumer_lag{job="x"}', [])


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_alert_asks_for_exported_series_and_documents_its_threshold(
    rule: dict[str, Any],
) -> None:
    annotations = rule["annotations"]
    assert problems(rule["expr"], list(annotations.values())) == []
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert annotations["summary"]
    assert "threshold" in annotations["description"].lower(), "say the threshold and why"


def test_the_alerts_cover_what_operators_ask_for() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in rules()}
    for needed in ("cronstream_consumer_lag", "cronstream_records_dead_lettered_total",
                   'cronstream_scheduler_state{status="leading"}',
                   "cronstream_cron_tick_lag_seconds_bucket", "up{"):  # fmt: skip
        assert any(needed in expr for expr in exprs.values()), needed


@pytest.mark.parametrize(
    ("title", "expr", "legend"), dashboard_queries(), ids=lambda v: str(v)[:40]
)
def test_each_dashboard_query_asks_for_exported_series(title: str, expr: str, legend: str) -> None:
    assert problems(expr, [legend]) == [], title


def test_the_dashboard_variables_read_exported_labels() -> None:
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    queries = [v["query"]["query"] for v in variables if v["type"] == "query"]
    assert queries
    for query in queries:
        name, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query).groups()  # type: ignore[union-attr]
        assert label in SERIES[name], query


def test_every_metric_cronstream_exports_is_on_the_dashboard() -> None:
    shown = " ".join(expr for _, expr, _ in dashboard_queries())
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            assert metric._name in shown, f"no panel shows {metric._name}"


def test_the_readme_points_to_both_files() -> None:
    section = README.read_text().split("### Monitoring", 1)[1].split("\n### ", 1)[0]
    for path in (RULES, DASHBOARD):
        assert str(path.relative_to(ROOT)) in section


def promtool() -> str:
    cache = Path(os.environ.get("CRONSTREAM_CACHE_DIR", ROOT / ".cache"))
    unpacked = cache / "promtool" / "usr" / "bin" / "promtool"
    found = shutil.which("promtool") or (str(unpacked) if unpacked.is_file() else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(HOW_TO, pytrace=False)
        pytest.skip(HOW_TO)
    return found


def check_rules(path: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules() -> None:
    check_rules(RULES)


def test_promtool_accepts_each_dashboard_query(tmp_path: Path) -> None:
    # promtool checks a query only inside a rule: each becomes a recording rule.
    recorded = []
    for n, (_, expr, _) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        recorded.append({"record": f"cronstream_dashboard_query_{n}", "expr": expr})
    path = tmp_path / "dashboard.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    check_rules(path)
