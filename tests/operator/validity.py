"""What an API server would refuse in a child object: the 1.35 schema with unknown fields refused
(kubernetes-validate --strict), and the rules it checks beyond the schema that our builders could get wrong."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate

K8S = "1.35.0"
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def schema_errors(obj: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(obj, K8S, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{obj['kind']} {obj['metadata']['name']}: {str(exc).splitlines()[0]}"]
    return []


def _pod_errors(where: str, template: dict[str, Any], restart: str) -> list[str]:
    errors = []
    spec = template["spec"]
    for key, value in (template.get("metadata") or {}).get("labels", {}).items():
        if len(value) > 63 or not LABEL_VALUE.match(value):
            errors.append(f"{where}: label {key}={value!r} is not a valid label value")
    if spec.get("restartPolicy", "Always") != restart:
        errors.append(f"{where}: restartPolicy must be {restart}")
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for container in spec["containers"]:
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes:
                errors.append(f"{where}: container {container['name']} mounts unknown volume {mount['name']}")
        for port in container.get("ports", []):
            name = port.get("name", "")
            if name and (len(name) > 15 or not PORT_NAME.match(name)):
                errors.append(f"{where}: port name {name!r} is not an IANA service name")
    for volume in volumes:
        if len(volume) > 63:
            errors.append(f"{where}: volume name {volume!r} is longer than 63")
    return errors


def semantic_errors(obj: dict[str, Any]) -> list[str]:
    """Rules of the API server's validation that the schema does not carry."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    where = f"{kind} {name}"
    errors = []
    if len(name) > 63 or (kind == "Service" and not DNS1035.match(name)):
        errors.append(f"{where}: not a valid name")
    if kind == "Deployment":
        selector = obj["spec"]["selector"]["matchLabels"]
        labels = obj["spec"]["template"]["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            errors.append(f"{where}: the selector does not match the template's labels")
        if "activeDeadlineSeconds" in obj["spec"]["template"]["spec"]:
            errors.append(f"{where}: activeDeadlineSeconds is not supported in a ReplicaSet")
        errors += _pod_errors(where, obj["spec"]["template"], "Always")
    if kind == "Job":
        spec = obj["spec"]
        errors += _pod_errors(where, spec["template"], "Never")
        containers = {c["name"] for c in spec["template"]["spec"]["containers"]}
        for rule in spec.get("podFailurePolicy", {}).get("rules", []):
            codes = rule.get("onExitCodes")
            if codes and codes.get("containerName") not in containers:
                errors.append(f"{where}: podFailurePolicy names a container it does not have")
            if rule["action"] == "FailIndex" and "backoffLimitPerIndex" not in spec:
                errors.append(f"{where}: FailIndex needs backoffLimitPerIndex")
        if "backoffLimitPerIndex" in spec and spec.get("completionMode") != "Indexed":
            errors.append(f"{where}: backoffLimitPerIndex needs completionMode Indexed")
    return errors


def errors(obj: dict[str, Any]) -> list[str]:
    return schema_errors(obj) + semantic_errors(obj)


def services_select_servers(children: list[dict[str, Any]]) -> list[str]:
    """Every Service selects the pods of the Deployment of the same name, by the port name it targets."""
    deployments = {o["metadata"]["name"]: o for o in children if o["kind"] == "Deployment"}
    problems = []
    for service in (o for o in children if o["kind"] == "Service"):
        deployment = deployments.get(service["metadata"]["name"])
        if deployment is None:
            problems.append(f"Service {service['metadata']['name']} has no Deployment")
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in service["spec"]["selector"].items()):
            problems.append(f"Service {service['metadata']['name']} does not select its Deployment's pods")
        ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        if any(p["targetPort"] not in ports for p in service["spec"]["ports"]):
            problems.append(f"Service {service['metadata']['name']} targets a port its pods do not name")
    return problems
