"""`mlplatform up --monitoring` on the real stack: Debian's Prometheus scrapes the gateway
and MLServer; every Grafana dashboard panel's PromQL returns data from it after
generated traffic; the provisioning files carry what Grafana needs (Grafana itself
cannot be installed here: infra/grafana/README.md)."""
from __future__ import annotations

import io
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import FEATURES
from tests.support import MLPLATFORM, stack_environment

GRAFANA = Path(__file__).resolve().parent.parent / "infra" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "mlplatform-prometheus"
PANEL_TYPES = {"timeseries", "heatmap", "bargauge", "stat", "gauge", "table"}
# What Grafana puts in at query time; the test uses the same values it would for
# "All" models and a 1 s scrape interval.
VARIABLES = {"$__rate_interval": "1m", "$model": ".+"}


def panel_queries():
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield f"{path.stem}: {panel['title']} [{target['refId']}]", target["expr"]


def grafana_expr(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def query(prometheus: str, expr: str):
    answer = requests.get(prometheus + "/api/v1/query", params={"query": expr}, timeout=10)
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


@pytest.fixture(scope="module")
def monitored(served):
    served.cli("up", "--monitoring")
    try:
        yield served
    finally:
        served.cli("down", "prometheus")


@pytest.fixture(scope="module")
def traffic(monitored):
    """Single calls (fraud with a shifted amount, so drift has a value), a batch, a job
    state, an error: what every panel needs."""
    gateway = monitored.gateway_url
    rows = generate_transactions(1000, 9)[list(FEATURES)]
    with requests.Session() as session:
        batch = session.post(gateway + "/forward_batch?model=fraud", timeout=60,
                             files={"file": ("rows.csv", io.BytesIO(rows.to_csv(index=False)
                                                                    .encode()), "text/csv")})
        assert batch.status_code == 200, batch.text
        for n in range(20):
            assert session.post(gateway + "/forward", json={"a": n}, timeout=30).status_code == 200
        for record in rows.to_dict("records"):  # last: the whole 1,000-input drift window
            record["amount"] = record["amount"] * 4 + 500
            answer = session.post(gateway + "/predict", json=record, timeout=30)
            assert answer.status_code == 200
    # the fraud version the stream reached, and when the stream ended
    return answer.headers["x-model-version"], time.time()


def test_prometheus_scrapes_the_gateway_and_mlserver(monitored, traffic):
    status = monitored.cli("status", check=False).stdout
    assert re.search(r"^prometheus\s+healthy", status, re.M), status
    deadline = time.monotonic() + 60
    while True:
        up = {r["metric"]["job"]: r["value"][1] for r in query(monitored.prometheus_url, "up")}
        if up == {"mlplatform-gateway": "1", "mlserver": "1"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert up == {"mlplatform-gateway": "1", "mlserver": "1"}
    rules = requests.get(monitored.prometheus_url + "/api/v1/rules", timeout=10).json()
    alerts = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
    assert {"InputDrift", "GatewayServerErrors", "PredictionLogDropping", "TargetDown"} <= alerts
    assert "prometheus" in monitored.cli("logs", "prometheus").stdout.lower()


def test_every_dashboard_panel_returns_data(monitored, traffic):
    pending = dict(panel_queries())
    assert len(pending) >= 14
    results = {}
    deadline = time.monotonic() + 90  # a few scrapes after the traffic (1 s interval)
    while pending and time.monotonic() < deadline:
        for name, expr in list(pending.items()):
            found = query(monitored.prometheus_url, grafana_expr(expr))
            if found:
                results[name] = found
                del pending[name]
        time.sleep(1)
    assert not pending, f"panels without data: {sorted(pending)}"
    # the version our stream reached (others -- earlier tests' -- have windows of their
    # own), scraped after the stream ended (its window then holds only the stream)
    version, ended = traffic
    series = f'mlplatform_gateway_input_drift_psi{{model="fraud",version="{version}"}}'
    deadline = time.monotonic() + 60
    while True:
        scraped = query(monitored.prometheus_url, f"min(timestamp({series}))")
        if (scraped and float(scraped[0]["value"][1]) > ended) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    drift = query(monitored.prometheus_url, series)
    psi = {r["metric"]["feature"]: float(r["value"][1]) for r in drift}
    assert psi["amount"] > 0.2 and max(psi, key=psi.get) == "amount", psi


@pytest.mark.unit
def test_the_provisioning_files_have_what_grafana_needs():
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == DATASOURCE_UID and source["url"]
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/mlplatform.yml").read_text())
    assert providers["apiVersion"] == 1
    assert all(p["type"] == "file" and p["options"]["path"] for p in providers["providers"])
    assert DASHBOARDS
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in uids and len(dashboard["uid"]) <= 40
        uids.add(dashboard["uid"])
        assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            assert panel["type"] in PANEL_TYPES, panel["title"]
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)) and all(t["expr"] for t in panel["targets"])
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        used = {m for p in dashboard["panels"] for t in p["targets"]
                for m in re.findall(r"\$(\w+)", t["expr"]) if not m.startswith("__")}
        assert used <= variables, f"{path.name}: undefined variables {used - variables}"


def test_up_monitoring_without_prometheus_says_what_to_install(tmp_path):
    env = stack_environment(tmp_path / "state")
    env["PATH"] = str(tmp_path)  # no prometheus on it (the CLI's interpreter is absolute)
    result = subprocess.run([MLPLATFORM, "up", "--monitoring"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "prometheus is not installed" in result.stderr + result.stdout
    assert not (tmp_path / "state" / "state.json").exists()  # nothing was started
