"""The Grafana dashboard, its provisioning and the Prometheus/Grafana services of
docker-compose.yml, checked statically (no Docker here): the dashboard parses, has the
panels operators need, queries only the gateway's metrics (by their exposed names),
and every file and path the services use lines up."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from extensions.observe.metrics import METRIC_NAMES as REGISTERED

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DASHBOARD: dict[str, Any] = json.loads((DEPLOY / "grafana/dashboards/gateway.json").read_text())
DATASOURCES: dict[str, Any] = yaml.safe_load(
    (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
)
PROVIDERS: dict[str, Any] = yaml.safe_load(
    (DEPLOY / "grafana/provisioning/dashboards/gateway.yml").read_text()
)
PROMETHEUS: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())

# The gateway's metrics, by type (base names, as registered), for the suffix checks;
# the union must be exactly what extensions.observe.metrics registers.
COUNTERS = frozenset({
    "gateway_requests", "gateway_intents", "gateway_cache_lookups", "gateway_tokens",
    "gateway_cost_usd", "gateway_savings_usd", "gateway_upstream_errors", "gateway_fallbacks",
    "gateway_config_reloads", "gateway_pii_requests", "gateway_served_requests", "gateway_errors",
    "gateway_key_requests", "gateway_key_cost_usd", "gateway_intent_cost_usd",
    "gateway_intent_savings_usd", "gateway_degraded_requests", "gateway_prompt_cache_usd",
    "gateway_cache_audits", "gateway_cache_audit_cost_usd",
})  # fmt: skip
HISTOGRAMS = frozenset({
    "gateway_request_duration_seconds", "gateway_overhead_duration_seconds",
    "gateway_classifier_duration_seconds", "gateway_cache_lookup_duration_seconds",
    "gateway_upstream_duration_seconds", "gateway_event_loop_lag_seconds",
})  # fmt: skip
GAUGES = frozenset({
    "gateway_redis_up", "gateway_event_loop_max_lag_seconds", "gateway_config_generation",
    "gateway_handoff_records", "gateway_budget_usd", "gateway_cache_audit_precision",
})  # fmt: skip
METRIC_NAMES = COUNTERS | HISTOGRAMS | GAUGES
SUFFIXES = ("_total", "_bucket", "_sum", "_count")

REQUIRED_PANELS = {
    "Requests/s by action": "gateway_requests_total",
    "Cache hit rate": "gateway_cache_lookups_total",
    "Savings $/h by source": "gateway_savings_usd_total",
    "Spend $/h by team": "gateway_cost_usd_total",
    "Request latency p50/p95/p99 by route": "gateway_request_duration_seconds_bucket",
    "Gateway overhead p50/p95/p99": "gateway_overhead_duration_seconds_bucket",
    "Classifier latency p50/p95/p99": "gateway_classifier_duration_seconds_bucket",
    "Cache lookup latency p50/p95/p99": "gateway_cache_lookup_duration_seconds_bucket",
    "Upstream errors/s": "gateway_upstream_errors_total",
    "Fallbacks/s": "gateway_fallbacks_total",
    "Intents/s": "gateway_intents_total",
    "Tokens/s": "gateway_tokens_total",
    "Redis up": "gateway_redis_up",
    "Event-loop lag": "gateway_event_loop_max_lag_seconds",
    "Config reloads": "gateway_config_reloads_total",
    "Requests/s by model group": "gateway_served_requests_total",
    "Requests/s by deployment": "gateway_served_requests_total",
    "Requests/s by provider": "gateway_served_requests_total",
    "Tokens/s by deployment": "gateway_tokens_total",
    "Spend $/h by deployment": "gateway_cost_usd_total",
    "Upstream latency p95 by deployment": "gateway_upstream_duration_seconds_bucket",
    "Errors/s by class": "gateway_errors_total",
    "429s: gateway limits vs upstream cooldowns": "gateway_errors_total",
    "Errors by status and type (time range)": "gateway_errors_total",
    "Cache hits/s: exact vs semantic": "gateway_cache_lookups_total",
    "Requests/s by key": "gateway_key_requests_total",
    "Spend by key (time range)": "gateway_key_cost_usd_total",
    "Budget spent (share)": "gateway_budget_usd",
    "Spend $/h by intent": "gateway_intent_cost_usd_total",
    "Savings $/h by intent": "gateway_intent_savings_usd_total",
    "Degraded answers/s": "gateway_degraded_requests_total",
    "PII found/s by kind": "gateway_pii_requests_total",
    "Prompt cache $/h by model group": "gateway_prompt_cache_usd_total",
    "Audited semantic hits": "gateway_cache_audits_total",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers that are not functions,
    keywords, labels (in ``{}``/``by (...)``), strings or durations."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    e = re.sub(r"\{[^}]*\}", " ", e)  # matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges ($__rate_interval included)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", e):
        if m[0] in KEYWORDS or e[m.end() :].lstrip().startswith("("):
            continue
        names.add(m[0])
    return names


def base_name(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exposed_as_spec_says(name: str) -> bool:
    """Counters as ``_total``, histograms as ``_bucket/_sum/_count``, gauges bare."""
    base = base_name(name)
    if base in COUNTERS:
        return name == base + "_total"
    if base in HISTOGRAMS:
        return name in {base + "_bucket", base + "_sum", base + "_count"}
    return name in GAUGES


def panels() -> list[dict[str, Any]]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(gateway_x_bucket{route=~"a|b", '
        'action!="REFUSE"}[$__rate_interval]))) / on (route) group_left '
        "sum without (pid) (increase(other_total[5m])) * 3600 > bool 0.5"
    )
    assert metric_names(expr) == {"gateway_x_bucket", "other_total"}
    assert metric_names("min(gateway_redis_up)") == {"gateway_redis_up"}
    assert metric_names('sum(rate(gateway_request_total{x="gateway_fake"}[1m]))') == {
        "gateway_request_total"
    }
    assert base_name("gateway_requests_total") == "gateway_requests"
    assert base_name("gateway_request_duration_seconds_bucket") == (
        "gateway_request_duration_seconds"
    )
    assert exposed_as_spec_says("gateway_requests_total")
    assert not exposed_as_spec_says("gateway_requests")  # a counter without _total
    assert not exposed_as_spec_says("gateway_redis_up_total")
    assert not exposed_as_spec_says("gateway_request_duration_seconds")  # histogram, bare
    assert not exposed_as_spec_says("gateway_request_duration_second_bucket")  # typo


def test_dashboard_has_the_panels() -> None:
    titles = [p["title"] for p in panels()]
    assert len(titles) == len(set(titles))
    assert set(REQUIRED_PANELS) <= set(titles), set(REQUIRED_PANELS) - set(titles)
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    by_title = {p["title"]: p for p in panels()}
    for title, metric in REQUIRED_PANELS.items():
        used = set().union(*(metric_names(t["expr"]) for t in by_title[title]["targets"]))
        assert metric in used, f"{title}: does not query {metric}"


def test_every_query_uses_only_the_spec_metrics_as_exposed() -> None:
    used: set[str] = set()
    for title, expr in exprs():
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        for name in names:
            assert base_name(name) in METRIC_NAMES, f"{title}: {name} is not a gateway metric"
            assert exposed_as_spec_says(name), f"{title}: {name} (wrong suffix for its type)"
        used |= {base_name(n) for n in names}
    assert used == METRIC_NAMES  # every metric of the spec is on the dashboard


def test_latency_panels_are_histogram_quantiles_over_buckets() -> None:
    by_title = {p["title"]: p for p in panels()}
    latency = [t["expr"] for t in by_title["Request latency p50/p95/p99 by route"]["targets"]]
    quantiles = [re.findall(r"^histogram_quantile\(([\d.]+),", e) for e in latency]
    assert quantiles == [["0.5"], ["0.95"], ["0.99"]]
    for title, expr in exprs():
        if "histogram_quantile" in expr:
            assert re.search(r"sum by \(le\b[^)]*\) \(rate\(\w+_bucket", expr), (title, expr)
    assert all("by (le, route)" in e for e in latency)


def test_panels_use_the_provisioned_datasource() -> None:
    [source] = DATASOURCES["datasources"]
    assert source["type"] == "prometheus" and source["uid"]
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    prometheus_port = COMPOSE["services"]["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{prometheus_port}"


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def _binds(service: str) -> dict[str, str]:
    """Container path -> host path of a service's read-only bind mounts."""
    binds = {}
    for volume in COMPOSE["services"][service]["volumes"]:
        host, container, *mode = volume.split(":")
        if host.startswith("."):
            assert mode == ["ro"], f"{service}: {volume} is not read-only"
            assert (REPO / host).exists(), f"{service}: {host} does not exist"
            binds[container] = host
        else:
            assert host in COMPOSE["volumes"], f"{service}: volume {host} is not declared"
    return binds


def test_compose_mounts_the_deploy_files() -> None:
    prometheus = _binds("prometheus")
    assert prometheus["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    grafana = _binds("grafana")
    for kind in ("datasources", "dashboards"):
        host = grafana[f"/etc/grafana/provisioning/{kind}"]
        assert host == f"./deploy/grafana/provisioning/{kind}"
    [provider] = PROVIDERS["providers"]
    dashboards = provider["options"]["path"]
    assert grafana[dashboards] == "./deploy/grafana/dashboards"
    home = COMPOSE["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert (REPO / grafana[dashboards] / Path(home).relative_to(dashboards)).is_file()


def test_prometheus_scrapes_the_gateway_with_the_master_key() -> None:
    from extensions.observe.settings import MetricsSettings

    [job] = PROMETHEUS["scrape_configs"]
    assert job["job_name"] == "gateway"
    assert job["metrics_path"] == MetricsSettings().path
    [static] = job["static_configs"]  # its targets (the replicas): test_compose_static.py
    assert static["targets"]
    assert job["authorization"]["type"] == "Bearer"
    [secret] = COMPOSE["services"]["prometheus"]["secrets"]
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{secret['source']}"
    assert COMPOSE["secrets"][secret["source"]] == {"environment": "LITELLM_MASTER_KEY"}
    assert secret["mode"] == 0o444  # Prometheus runs as nobody


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_monitoring_services(name: str) -> None:
    svc = COMPOSE["services"][name]
    image, tag = svc["image"].rsplit(":", 1)
    assert image == {"prometheus": "prom/prometheus", "grafana": "grafana/grafana"}[name]
    assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a version, not {tag}"
    assert svc["healthcheck"]["test"][0] == "CMD"
    for replica in ("gateway-1", "gateway-2"):
        assert svc["depends_on"][replica] == {"condition": "service_healthy"}
    assert svc["ports"][0].endswith({"prometheus": ":9090", "grafana": "3000:3000"}[name])


def test_grafana_password_must_be_set() -> None:
    env = COMPOSE["services"]["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_the_lists_above_are_the_registered_metrics() -> None:
    assert METRIC_NAMES == REGISTERED


def test_panels_group_only_by_labels_the_metrics_have() -> None:
    """A ``by (...)`` label that a metric does not have silently draws one flat series."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase

    from extensions.observe.metrics import GatewayMetrics

    metrics = GatewayMetrics(set(), CollectorRegistry())
    wrappers = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    labels = {m._name: set(m._labelnames) for m in wrappers}
    for title, expr in exprs():
        have = set.intersection(*(labels[base_name(n)] for n in metric_names(expr)))
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            wanted = {g.strip() for g in group.split(",")} - {"le"}
            assert wanted <= have, f"{title}: {wanted - have} not on {metric_names(expr)}"
