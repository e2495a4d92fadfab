"""Operators' monitoring files, checked offline: the Prometheus alert rules parse and behave as
their unit tests say (promtool, from Debian's `prometheus` package: `make system-deps`), every
query of the Grafana dashboard parses and finds the series the service exposes, every series
the rules and the dashboard name is one the service has (serving/metrics.py, or BentoML's own
as its installed source defines them), and the CronJob that records the monitoring snapshot
runs a command the CLI has, as the service's database role."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cli.main import build_parser
from tests.support import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yaml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "attrition.json"
K8S = REPO / "deploy" / "k8s"
MONITOR_CRONJOB = K8S / "monitor-cronjob.yaml"
RUNBOOK = REPO / "docs" / "RUNBOOK.md"
METRICS_MODULE = REPO / "serving" / "metrics.py"

SEVERITIES = {"critical", "warning", "info"}
# Labels Prometheus adds when it scrapes a pod (kubernetes_sd relabelling), on every series.
TARGET_LABELS = {"namespace", "pod", "instance", "job"}
# BentoML's own series, as `bentoml serve` exposes them for a 1.4 service (its HTTP traffic
# middleware, RunnerTrafficMetricsMiddleware, prefixed with configuration.yaml's metrics
# namespace): name -> (type, label names). Checked against the installed source below.
BENTOML_ROUTE_LABELS = {"endpoint", "service_name", "service_version", "runner_name"}
BENTOML_METRICS = {
    "bentoml_service_request_total": ("Counter", BENTOML_ROUTE_LABELS | {"http_response_code"}),
    "bentoml_service_request_duration_seconds": (
        "Histogram",
        BENTOML_ROUTE_LABELS | {"http_response_code"},
    ),
    "bentoml_service_request_in_progress": ("Gauge", BENTOML_ROUTE_LABELS),
    "bentoml_service_last_request_timestamp_seconds": (
        "Gauge",
        {"service_name", "service_version", "runner_name"},
    ),
}
# Grafana's variables, replaced by values of the same syntax before promtool reads a query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${namespace}": ".*",
    "$namespace": ".*",
}
PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
IDENTIFIER = r"(?<![\w:.$])[A-Za-z_:][\w:]*(?![\w:])"


# --- promtool -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: `make system-deps` installs it (Debian's `prometheus` "
            "package; as root, or `sudo make system-deps`), and `make test` runs it first",
            pytrace=False,
        )
    return path


def _promtool(promtool: str, *args: str | Path, cwd: Path = REPO) -> str:
    result = subprocess.run(
        [promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"promtool {args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


# --- what the service exposes ---------------------------------------------------------------


def _exposed(name: str, kind: str, labels: set[str]) -> dict[str, set[str]]:
    """The series names one metric shows on /metrics, with the label names each may carry."""
    if kind == "Histogram":
        return {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels}
    if kind == "Summary":
        return {f"{name}_sum": labels, f"{name}_count": labels}
    return {name: labels}


def _metric_calls(tree: ast.AST) -> list[tuple[str, str, set[str]]]:
    """(name, type, label names) of every `<...>.Counter|Gauge|Histogram|Summary(name=...)`."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("Counter", "Gauge", "Histogram", "Summary"):
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        if not isinstance(keywords.get("name"), ast.Constant):
            continue
        labels = keywords.get("labelnames")
        names = {e.value for e in labels.elts} if isinstance(labels, ast.List) else set()
        found.append((keywords["name"].value, node.func.attr, names))
    return found


def _service_metrics() -> dict[str, set[str]]:
    series: dict[str, set[str]] = {}
    for name, kind, labels in _metric_calls(ast.parse(METRICS_MODULE.read_text())):
        series |= _exposed(name, kind, labels)
    return series


def _bentoml_metrics() -> dict[str, set[str]]:
    series: dict[str, set[str]] = {}
    for name, (kind, labels) in BENTOML_METRICS.items():
        series |= _exposed(name, kind, labels)
    return series


def _known_series() -> dict[str, set[str]]:
    return _service_metrics() | _bentoml_metrics()


def _bentoml_file(module: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return Path(spec.origin).parent.joinpath(*parts)


def test_service_metrics_are_parsed_from_serving_metrics():
    series = _service_metrics()
    # The parse finds each kind, with its labels (a broken parse would accept nothing).
    assert series["attrition_drift_status"] == {"feature"}
    assert series["attrition_live_metric"] == {"metric"}
    assert series["attrition_db_errors_total"] == set()
    assert series["attrition_db_write_seconds_bucket"] == {"le"}
    assert series["attrition_batch_size_count"] == {"endpoint"}


def test_known_bentoml_metrics_are_those_of_the_installed_bentoml():
    """The list above against BentoML's source: the middleware a 1.4 service installs, the
    metrics it declares (name, type, labels), and the namespace configuration.yaml sets."""
    app = _bentoml_file("_bentoml_impl", "server", "app.py").read_text()
    assert "RunnerTrafficMetricsMiddleware" in app and "metrics.namespace" in app
    instruments = _bentoml_file("bentoml", "_internal", "server", "http", "instruments.py")
    tree = ast.parse(instruments.read_text())
    (middleware,) = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and n.name == "RunnerTrafficMetricsMiddleware"
    ]
    declared = {name: (kind, labels) for name, kind, labels in _metric_calls(middleware)}
    config = yaml.safe_load((REPO / "configuration.yaml").read_text())
    namespace = config["services"]["attrition"]["metrics"]["namespace"]
    for full_name, expected in BENTOML_METRICS.items():
        assert full_name.startswith(f"{namespace}_"), full_name
        assert declared.get(full_name.removeprefix(f"{namespace}_")) == expected, full_name


# --- PromQL: the series an expression reads -------------------------------------------------


def _selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every series selector in a PromQL expression."""
    masked = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    found = [
        (m[1], set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", m[2])))
        for m in re.finditer(rf"({IDENTIFIER})\s*\{{([^}}]*)\}}", masked)
    ]
    assert not re.search(r"(?:^|[^\w:\s])\s*\{", masked), f"a selector without a name: {expr}"
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", masked)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    for match in re.finditer(rf"({IDENTIFIER})(?!\s*\()", bare):
        if match[1].lower() not in PROMQL_KEYWORDS and not any(match[1] == f for f, _ in found):
            found.append((match[1], set()))
    return found


def test_selector_parser_finds_names_and_labels():
    expr = (
        'sum by (endpoint) (rate(bentoml_service_request_total{endpoint!~"/a|/b", '
        'http_response_code=~"5.."}[5m])) / on (namespace) group_left max(up) > bool 2 * 86400 '
        "unless histogram_quantile(0.5, sum by (le) (rate(x_bucket[1m]))) offset 1d"
    )
    assert sorted(_selectors(expr), key=lambda s: s[0]) == [
        ("bentoml_service_request_total", {"endpoint", "http_response_code"}),
        ("up", set()),
        ("x_bucket", set()),
    ]


def _check_selectors(where: str, expr: str) -> list[str]:
    known = _known_series()
    problems = []
    for metric, labels in _selectors(expr):
        if metric not in known:
            problems.append(f"{where}: {metric} is not a series the service exposes")
        elif unknown := labels - known[metric] - TARGET_LABELS:
            problems.append(f"{where}: {metric} has no label {sorted(unknown)}")
    return problems


# --- alert rules ----------------------------------------------------------------------------


def _alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_pass_promtool_check(promtool: str):
    out = _promtool(promtool, "check", "rules", ALERTS)
    assert f"SUCCESS: {len(_alert_rules())} rules found" in out


def test_alert_rules_pass_their_promtool_unit_tests(promtool: str):
    out = _promtool(promtool, "test", "rules", ALERT_TESTS.name, cwd=PROMETHEUS)
    assert "SUCCESS" in out


def test_every_alert_is_tested_firing_and_silent():
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in _alert_rules():
        name = rule["alert"]
        outcomes = [bool(c["exp_alerts"]) for c in cases if c["alertname"] == name]
        assert True in outcomes, f"{name}: no test case where it fires"
        assert False in outcomes, f"{name}: no test case where it stays silent"


def test_alerts_have_severity_annotations_and_a_runbook_entry():
    runbook = RUNBOOK.read_text()
    assert "\n## Alerts\n" in runbook
    section = runbook.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    names = [rule["alert"] for rule in _alert_rules()]
    assert len(names) == len(set(names))
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
        assert f"`{rule['alert']}`" in section, f"{rule['alert']}: not in RUNBOOK.md, Alerts"


def test_alert_expressions_read_series_the_service_exposes():
    problems = [p for rule in _alert_rules() for p in _check_selectors(rule["alert"], rule["expr"])]
    assert not problems, problems


def test_alert_unit_tests_feed_series_the_service_exposes():
    """Input series shaped like no real one would test nothing."""
    problems = []
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for item in test["input_series"]:
            problems += _check_selectors("alerts.test.yaml", item["series"])
    assert not problems, problems


# --- the Grafana dashboard ------------------------------------------------------------------


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return panels


def _queries() -> list[tuple[str, str]]:
    """(recording rule name, PromQL with Grafana's variables replaced) of every target."""
    queries = []
    for panel in _panels(_dashboard()):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"panel {panel['id']}: unknown variable in {expr}"
            queries.append((f"dashboard:panel_{panel['id']}:{target['refId']}", expr))
    return queries


def test_dashboard_structure():
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel.get("targets"), panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    # Every variable query reads a series the service has, by a label it carries.
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            (metric, label) = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query).groups()
            assert metric in _known_series() and label in _known_series()[metric] | TARGET_LABELS


def test_dashboard_shows_what_operators_need():
    exprs = " ".join(expr for _, expr in _queries())
    for needed in (
        "bentoml_service_request_total",
        "bentoml_service_request_duration_seconds_bucket",
        "attrition_predictions_total",
        "attrition_batch_size_bucket",
        "attrition_db_write_seconds_bucket",
        "attrition_db_errors_total",
        "attrition_drift_status",
        "attrition_drift_psi",
        "attrition_live_metric",
        "attrition_training_metric",
        "attrition_scoring_suspended",
        "attrition_monitoring_snapshot_timestamp_seconds",
    ):
        assert needed in exprs, needed


def test_dashboard_queries_read_series_the_service_exposes():
    problems = [p for name, expr in _queries() for p in _check_selectors(name, expr)]
    assert not problems, problems


def test_dashboard_queries_parse(promtool: str, tmp_path: Path):
    """promtool parses PromQL in rule files: each query becomes a recording rule."""
    rules = tmp_path / "dashboard.rules.yaml"
    records = [{"record": name, "expr": expr} for name, expr in _queries()]
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    out = _promtool(promtool, "check", "rules", rules)
    assert f"SUCCESS: {len(records)} rules found" in out


# What one pod of the service shows on /metrics after some traffic and a monitoring snapshot
# (label values as `bentoml serve` writes them: routes with their slash, status codes as
# strings; attrition_batch_size's endpoint is the API's name), as the scraper labels it.
POD = 'namespace="prod",pod="attrition-1"'
ROUTE = f'{POD},runner_name="attrition",service_name="attrition",service_version="1"'
SCRAPED = [
    (
        f'bentoml_service_request_total{{{ROUTE},endpoint="/predict",http_response_code="200"}}',
        "0+60x20",
    ),
    (
        f'bentoml_service_request_total{{{ROUTE},endpoint="/predict",http_response_code="500"}}',
        "0+1x20",
    ),
    (
        f'bentoml_service_request_total{{{ROUTE},endpoint="/history",http_response_code="403"}}',
        "0+1x20",
    ),
    (
        f'bentoml_service_request_total{{{ROUTE},endpoint="/readyz",http_response_code="200"}}',
        "0+12x20",
    ),
    *[
        (
            f'bentoml_service_request_duration_seconds_bucket{{{ROUTE},endpoint="{route}",'
            f'http_response_code="200",le="{le}"}}',
            f"0+{n}x20",
        )
        for route in ("/predict", "/history")
        for le, n in (("0.05", 40), ("0.5", 59), ("+Inf", 60))
    ],
    (f'attrition_predictions_total{{{POD},label="Oui"}}', "0+10x20"),
    (f'attrition_predictions_total{{{POD},label="Non"}}', "0+50x20"),
    (f"attrition_prediction_rows_written_total{{{POD}}}", "0+60x20"),
    *[
        (f'attrition_batch_size_bucket{{{POD},endpoint="predict",le="{le}"}}', f"0+{n}x20")
        for le, n in (("1", 10), ("8", 30), ("+Inf", 30))
    ],
    (f'attrition_batch_size_sum{{{POD},endpoint="predict"}}', "0+60x20"),
    (f'attrition_batch_size_count{{{POD},endpoint="predict"}}', "0+30x20"),
    *[
        (f'attrition_db_write_seconds_bucket{{{POD},le="{le}"}}', f"0+{n}x20")
        for le, n in (("0.01", 25), ("0.1", 30), ("+Inf", 30))
    ],
    (f"attrition_db_write_seconds_sum{{{POD}}}", "0+0.3x20"),
    (f"attrition_db_write_seconds_count{{{POD}}}", "0+30x20"),
    (f"attrition_db_errors_total{{{POD}}}", "0x10 1x10"),
    (f"attrition_refusals_unrecorded_total{{{POD}}}", "0x20"),
    (f"attrition_access_events_unrecorded_total{{{POD}}}", "0x20"),
    (f"attrition_scoring_suspended{{{POD}}}", "0x20"),
    (f"attrition_monitoring_snapshot_timestamp_seconds{{{POD}}}", "60x20"),
    *[
        (f'attrition_drift_status{{{POD},feature="{feature}"}}', f"{status}x20")
        for feature, status in (("overall", 1), ("revenu_mensuel", 1), ("departement", 0))
    ],
    *[
        (f'attrition_drift_psi{{{POD},feature="{feature}"}}', f"{psi}x20")
        for feature, psi in (("revenu_mensuel", 0.12), ("departement", 0.02), ("score", 0.05))
    ],
    *[
        (f'attrition_live_metric{{{POD},metric="{metric}"}}', f"{value}x20")
        for metric, value in (
            ("roc_auc", 0.78),
            ("average_precision", 0.52),
            ("brier", 0.11),
            ("precision", 0.41),
            ("recall", 0.66),
            ("labelled", 420),
            ("pending", 3100),
        )
    ],
    *[
        (f'attrition_training_metric{{{POD},metric="{metric}"}}', f"{value}x20")
        for metric, value in (
            ("roc_auc", 0.81),
            ("average_precision", 0.55),
            ("brier", 0.10),
            ("precision", 0.45),
            ("recall", 0.7),
        )
    ],
]


def test_scraped_sample_is_shaped_like_the_service():
    problems = [p for series, _ in SCRAPED for p in _check_selectors("SCRAPED", series)]
    assert not problems, problems


def test_every_dashboard_query_finds_data(promtool: str, tmp_path: Path):
    """Parsing is not enough: a matcher on a label value the service never writes (a route
    without its slash, `feature="all"`) parses and shows nothing. promtool evaluates each
    query over the series above and expects at least one result."""
    tests = tmp_path / "dashboard.test.yaml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [{"series": s, "values": v} for s, v in SCRAPED],
                        "promql_expr_test": [
                            {
                                "expr": f"sgn(count({expr}))  # {name}",
                                "eval_time": "15m",
                                "exp_samples": [{"labels": "{}", "value": 1}],
                            }
                            for name, expr in _queries()
                        ],
                    }
                ],
            },
            width=1000,
        )
    )
    _promtool(promtool, "test", "rules", tests.name, cwd=tmp_path)


# --- the CronJob that records the snapshot --------------------------------------------------


def _workload(path: Path) -> dict:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


def _pod(doc: dict) -> dict:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec["template"]


def test_monitor_cronjob_records_a_snapshot_daily_as_the_service_role():
    cronjob = _workload(MONITOR_CRONJOB)
    assert cronjob["kind"] == "CronJob"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    minute, hour, *every = spec["schedule"].split()
    assert every == ["*", "*", "*"] and minute.isdigit() and hour.isdigit(), "daily"
    # The stale-snapshot alert leaves one missed daily run before it fires.
    (stale,) = [r for r in _alert_rules() if r["alert"] == "AttritionMonitoringSnapshotStale"]
    assert "> 2 * 86400" in stale["expr"]

    (container,) = _pod(cronjob)["spec"]["containers"]
    command = container["args"]
    assert command[command.index("-m") + 1] == "cli.main"
    args = build_parser().parse_args(command[command.index("-m") + 2 :])
    assert args.handler.__name__ == "monitor" and args.record is True

    # Reads and inserts only: the service's role, never the admin's.
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets == {"DATABASE_URL": {"name": "attrition-db", "key": "url"}}

    # The image and the pod's conventions of the other workloads.
    deployment = _workload(K8S / "deployment.yaml")
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == api["image"]
    purge = _workload(K8S / "purge-cronjob.yaml")
    assert _pod(cronjob)["spec"]["securityContext"] == _pod(purge)["spec"]["securityContext"]
    (purge_container,) = _pod(purge)["spec"]["containers"]
    assert container["securityContext"] == purge_container["securityContext"]
    assert container["workingDir"] == purge_container["workingDir"]
    # rollout.sh applies the migration alone by its component label: this is not one.
    label = "app.kubernetes.io/component"
    migration = _workload(K8S / "migration-job.yaml")
    assert (
        _pod(cronjob)["metadata"]["labels"][label] != _pod(migration)["metadata"]["labels"][label]
    )
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert MONITOR_CRONJOB.name in kustomization["resources"]


# --- the install ----------------------------------------------------------------------------


def test_make_test_installs_promtool_first():
    """The tests above fail without promtool; `make test` (CI's command) installs it."""
    makefile = (REPO / "Makefile").read_text()
    (test_prerequisites,) = re.findall(r"^test:(.*)$", makefile, re.MULTILINE)
    assert "system-deps" in test_prerequisites.split()
    assert re.search(r"^SYSTEM_TOOLS :?=.*\bpromtool:prometheus\b", makefile, re.MULTILINE)
