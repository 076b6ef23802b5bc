"""The Helm chart: lints, renders valid objects, documents and guards its values, and its monitoring speaks of
metrics that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sailvl.api.metrics import exposed_names
from tests.chart_values import CHART, documented_keys, leaves, values_table
from tests.crdcheck import schema_errors
from tests.tools import tool

ALL_ON = Path(__file__).with_name("chart_values_all_on.yaml")
VARIANTS = {"defaults": [], "all-on": ["-f", str(ALL_ON)]}
THIRD_PARTY = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool("helm")), *args], capture_output=True, text=True, check=False)


def render(*args: str) -> list[dict[str, Any]]:
    result = helm("template", "sailvl", str(CHART), "--namespace", "sailvl-system", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict(variant: str) -> None:
    result = helm("lint", "--strict", str(CHART), *VARIANTS[variant])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_builtin_objects_validate_strictly(variant: str) -> None:
    checked = 0
    for obj in render(*VARIANTS[variant], "--include-crds"):
        if obj["apiVersion"].startswith(("monitoring.coreos.com/", "kopf.dev/")):
            continue
        kubernetes_validate.validate(obj, "1.35.0", strict=True)
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("variant", VARIANTS)
def test_monitoring_objects_match_the_published_crds(variant: str, third_party_schemas: Path) -> None:
    found = 0
    for obj in render(*VARIANTS[variant]):
        if obj["kind"] not in THIRD_PARTY:
            continue
        crd = yaml.safe_load((third_party_schemas / THIRD_PARTY[obj["kind"]]).read_text())
        version = next(v for v in crd["spec"]["versions"] if f"{crd['spec']['group']}/{v['name']}" == obj["apiVersion"])
        assert schema_errors(version["schema"]["openAPIV3Schema"], obj) == []
        found += 1
    assert found == (3 if variant == "all-on" else 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_peering_objects_match_their_crd(variant: str) -> None:
    crds = {
        c["spec"]["names"]["kind"]: c
        for c in yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text())
    }
    peerings = [o for o in render(*VARIANTS[variant]) if o["apiVersion"] == "kopf.dev/v1"]
    assert [p["kind"] for p in peerings] == (["KopfPeering"] * 2 if variant == "all-on" else ["ClusterKopfPeering"])
    for obj in peerings:
        assert schema_errors(crds[obj["kind"]]["spec"]["versions"][0]["schema"]["openAPIV3Schema"], obj) == []


def test_operator_pod_is_restricted() -> None:
    deployment = next(o for o in render() if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]


def test_dashboards_ship_as_labelled_configmaps() -> None:
    maps = [o for o in render("-f", str(ALL_ON)) if o["kind"] == "ConfigMap" and "-dashboard-" in o["metadata"]["name"]]
    assert sorted(m["metadata"]["name"].rsplit("-", 1)[-1] for m in maps) == [
        "curation",
        "evaluation",
        "operator",
        "training",
    ]
    for configmap in maps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["annotations"]["grafana_folder"] == "ML"
        (content,) = configmap["data"].values()
        assert json.loads(content)["panels"]


BAD_VALUES = [
    ("replicaCount=-1", "replicaCount"),
    ("replicaCount=two", "replicaCount"),
    ("replicasCount=2", "replicasCount"),
    ("image.pullPolicy=Sometimes", "pullPolicy"),
    ("image.registry=example.org", "registry"),
    ("metrics.port=70000", "port"),
    ("serviceMonitor.enabled=yes", "enabled"),
    ("serviceMonitor.interval=soon", "interval"),
    ("settings.logLevel=TRACE", "logLevel"),
    ("settings.timerIntervalSeconds=0", "timerIntervalSeconds"),
    ("watchNamespaces[0]=Bad_Namespace", "watchNamespaces"),
    ("prometheusRule.curationDropRatio=2", "curationDropRatio"),
    ("dashboards.label=", "label"),
]


@pytest.mark.parametrize(("setting", "key"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_values_schema_rejects_bad_values(setting: str, key: str) -> None:
    flag = "--set-string" if setting.startswith("serviceMonitor.enabled") else "--set"
    result = helm("template", "sailvl", str(CHART), flag, setting)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr or "at '/" in result.stderr
    assert key in result.stderr, result.stderr


def test_every_value_is_documented_and_in_the_schema() -> None:
    text = (CHART / "values.yaml").read_text()
    docs = documented_keys(text)
    undocumented = [
        leaf for leaf in leaves(yaml.safe_load(text)) if not any(leaf == k or leaf.startswith(k + ".") for k in docs)
    ]
    assert undocumented == []
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _mismatches(schema, yaml.safe_load(text)) == []


def _mismatches(schema: dict[str, Any], values: Any, path: str = "") -> list[str]:
    """Keys in values.yaml the schema does not declare, and declared keys values.yaml lacks."""
    props = schema.get("properties")
    if props is None or not isinstance(values, dict):
        return []  # a leaf, a list, or a free-form map: nothing to pair up
    out = [f"{path}{k}: not in the schema" for k in values if k not in props]
    out += [f"{path}{k}: not in values.yaml" for k in props if k not in values]
    for key in values.keys() & props.keys():
        out += _mismatches(props[key], values[key], f"{path}{key}.")
    return out


def test_chart_readme_values_table_is_in_sync() -> None:
    assert values_table() in (CHART / "README.md").read_text(), "regenerate the table: python -m tests.chart_values"


# --- PromQL names -----------------------------------------------------------------------------------------

_PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "changes",
    "histogram_quantile",
    "time",
    "by",
    "on",
    "and",
    "or",
    "unless",
    "without",
    "ignoring",
    "group_left",
    "group_right",
    "le",
    "offset",
    "bool",
    "abs",
    "clamp_min",
    "clamp_max",
    "label_values",
    "vector",
    "scalar",
    "topk",
    "bottomk",
    "delta",
    "deriv",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, label lists, strings and numbers removed)."""
    text = re.sub(r"label_values\(([^,()]+(?:\{[^}]*\})?),\s*\w+\)", r"\1", expr)  # Grafana: (metric, label)
    text = re.sub(r'"[^"]*"', "", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
    return {t for t in tokens if t not in _PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?", t)}


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, kind) (rate(foo_bucket{a="x"}[5m]))) / on (ns) bar > 0.8'
    assert metric_names(expr) == {"foo_bucket", "bar"}


def _expressions() -> list[tuple[str, str]]:
    exprs = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        exprs += [(path.name, t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
        exprs += [
            (path.name, v["query"]["query"])
            for v in dashboard["templating"]["list"]
            if isinstance(v.get("query"), dict)
        ]
    rules = next(o for o in render("-f", str(ALL_ON)) if o["kind"] == "PrometheusRule")
    exprs += [("PrometheusRule", r["expr"]) for g in rules["spec"]["groups"] for r in g["rules"]]
    return exprs


def test_every_promql_expression_names_known_metrics() -> None:
    known = exposed_names()
    unknown = [(where, name) for where, expr in _expressions() for name in metric_names(expr) if name not in known]
    assert unknown == []
    assert len(_expressions()) > 20


# --- checkov ------------------------------------------------------------------------------------------------

CHECKOV_VENV = CHART.parent.parent / ".venv-checkov"


def _checkov() -> Path:
    """checkov in a venv of its own: its pins clash with the project's."""
    exe = CHECKOV_VENV / "bin" / "checkov"
    if not exe.exists():
        subprocess.run(["python3", "-m", "venv", str(CHECKOV_VENV)], check=True)
        subprocess.run([str(CHECKOV_VENV / "bin" / "pip"), "install", "-q", "checkov"], check=True)
    return exe


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_checkov_finds_nothing_unexplained(variant: str, tmp_path: Path) -> None:
    result = helm("template", "sailvl", str(CHART), "--namespace", "sailvl-system", *VARIANTS[variant])
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(result.stdout)
    scan = subprocess.run(
        [str(_checkov()), "-f", str(rendered), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(scan.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 50
    for skipped in report["results"]["skipped_checks"]:
        assert skipped["check_id"] in {"CKV_K8S_43", "CKV_K8S_38", "CKV_K8S_15"}
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, "every skip carries its reason"


# --- RBAC and settings follow the operator's own declarations ----------------------------------------------


def _triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def _declared(scope: str | None = None) -> set[tuple[str, str, str]]:
    from sailvl_operator.k8s import PERMISSIONS

    return {(p.api_group, p.resource, v) for p in PERMISSIONS if scope in (None, p.scope) for v in p.verbs}


def test_rbac_rules_file_is_generated_from_the_permission_table() -> None:
    from sailvl_operator.rbac import render as render_rules

    assert (CHART / "files" / "rbac-rules.yaml").read_text() == render_rules(), "run python -m sailvl_operator.rbac"


def test_cluster_role_grants_exactly_what_the_operator_declares() -> None:
    objects = render()
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert _triples(role["rules"]) == _declared()
    assert not [o for o in objects if o["kind"] == "Role"]
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert (
        binding["subjects"][0]["name"] == next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    )


def test_watched_namespaces_get_roles_and_a_small_cluster_role() -> None:
    objects = render("--set", "watchNamespaces={research,production}")
    roles = [o for o in objects if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["production", "research"]
    for role in roles:
        assert _triples(role["rules"]) == _declared("namespace")
    (cluster_role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert _triples(cluster_role["rules"]) == _declared("cluster")
    assert len([o for o in objects if o["kind"] == "RoleBinding"]) == 2


def test_every_operator_variable_the_chart_sets_is_a_setting() -> None:
    import dataclasses

    from sailvl_operator.settings import Settings

    known = {f.metadata["env"] for f in dataclasses.fields(Settings)} | {"POD_ID"}
    deployment = next(o for o in render("-f", str(ALL_ON)) if o["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert set(env) <= known
    assert env["SAILVL_WATCH_NAMESPACES"] == "research,production"
    Settings.from_env({k: v for k, v in env.items() if v is not None})  # the operator accepts every value
