"""deploy/ manifests, validated offline: Kubernetes kinds against the schemas bundled in kubernetes-validate
(strict: unknown fields fail), KubeRay's RayService against a structural schema of the fields it uses
with its pod templates as Kubernetes PodTemplateSpecs, serveConfigV2 against Ray Serve's own schema, and
the parts that must agree with each other and with rewardsvc (ports, paths, labels, the embedded config).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from rewardsvc.config import parse_config

REPO = Path(__file__).resolve().parents[1]
PLAIN = REPO / "deploy" / "k8s" / "rewardsvc.yaml"
KUBERAY = REPO / "deploy" / "kuberay" / "rayservice.yaml"
# Probes use the grpc field (GA in 1.27) and containers appArmorProfile (1.30): 1.30 is the floor.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POD_TEMPLATE = {"type": "object", "required": ["spec"]}
_WORKER_GROUP = {
    "type": "object",
    "required": ["groupName", "rayStartParams", "template"],
    "additionalProperties": False,
    "properties": {
        "groupName": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "replicas": {"type": "integer", "minimum": 0},
        "minReplicas": {"type": "integer", "minimum": 0},
        "maxReplicas": {"type": "integer", "minimum": 1},
        "idleTimeoutSeconds": {"type": "integer"},
        "numOfHosts": {"type": "integer", "minimum": 1},
        "suspend": {"type": "boolean"},
        "scaleStrategy": {"type": "object"},
        "rayStartParams": _STR_MAP,  # KubeRay wants strings: num-gpus: "1", not 1
        "template": _POD_TEMPLATE,
    },
}
# The RayService fields this repo uses, as KubeRay's ray.io/v1 CRD defines them (its full schema is not
# available offline); unknown keys fail, so a misspelt field can't be silently ignored by the operator.
RAYSERVICE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayService"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["serveConfigV2", "rayClusterConfig"],
            "additionalProperties": False,
            "properties": {
                "serveConfigV2": {"type": "string"},
                "upgradeStrategy": {"type": "object"},
                "serveService": {"type": "object"},
                "excludeHeadPodFromServeSvc": {"type": "boolean"},
                "rayClusterDeletionDelaySeconds": {"type": "integer"},
                "rayClusterConfig": {
                    "type": "object",
                    "required": ["headGroupSpec"],
                    "additionalProperties": False,
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "enableInTreeAutoscaling": {"type": "boolean"},
                        "autoscalerOptions": {"type": "object"},
                        "headServiceAnnotations": _STR_MAP,
                        "suspend": {"type": "boolean"},
                        "gcsFaultToleranceOptions": {"type": "object"},
                        "headGroupSpec": {
                            "type": "object",
                            "required": ["rayStartParams", "template"],
                            "additionalProperties": False,
                            "properties": {
                                "rayStartParams": _STR_MAP,
                                "template": _POD_TEMPLATE,
                                "serviceType": {"type": "string"},
                                "headService": {"type": "object"},
                                "enableIngress": {"type": "boolean"},
                            },
                        },
                        "workerGroupSpecs": {"type": "array", "items": _WORKER_GROUP},
                    },
                },
            },
        },
    },
}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kind(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _validate_pod_template(template: dict[str, Any], where: str) -> None:
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(wrapped, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} (Kubernetes {version}): {exc.message} at {list(exc.absolute_path)}")


@pytest.mark.parametrize("path", [PLAIN, KUBERAY], ids=lambda p: p.parent.name)
def test_kubernetes_objects_match_the_api_schemas(path: Path) -> None:
    docs = _docs(path)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("ray.io/"):
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): "
                            f"{exc.message} at {list(exc.absolute_path)}")


def test_the_validator_catches_a_misspelt_field() -> None:
    """Guards the check above: a manifest with a typo must not pass."""
    deployment = _kind(_docs(PLAIN), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = {**deployment, "spec": {**deployment["spec"], "template": {"metadata": {}, "spec": {
        "containers": [{**container, "readinesProbe": container["readinessProbe"]}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)
    ray_service = _kind(_docs(KUBERAY), "RayService")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**ray_service, "spec": {**ray_service["spec"], "serveConfigv2": ""}}, RAYSERVICE_SCHEMA)


def test_plain_deployment_probes_ports_and_config_agree() -> None:
    docs = _docs(PLAIN)
    deployment, config_map = _kind(docs, "Deployment"), _kind(docs, "ConfigMap")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    # The config the pod runs: the --config path is the ConfigMap's key on the mounted volume.
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent)
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    config = parse_config(yaml.safe_load(config_map["data"][config_path.name]), "ConfigMap")
    assert config.server.port == ports["grpc"] and config.server.metrics_port == ports["metrics"]
    assert config.server.host == "0.0.0.0"
    # Off loopback the server refuses plaintext without a token: the token variable comes from a Secret.
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env[config.server.auth_token_env]["valueFrom"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > config.server.shutdown_grace_s
    cpus = float(container["resources"]["requests"]["cpu"])
    for spec in config.scorers:
        assert 0 < getattr(spec.config, "workers", 1) <= cpus, f"{spec.name}: set workers to the CPU request"

    # Every probe asks the gRPC health service on the serving port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    for service in (_kind(docs, "Service", "rewardsvc"), _kind(docs, "Service", "rewardsvc-headless")):
        assert service["spec"]["selector"].items() <= labels.items()
        assert any(p["targetPort"] in ("grpc", ports["grpc"]) for p in service["spec"]["ports"])
    assert _kind(docs, "Service", "rewardsvc-headless")["spec"]["clusterIP"] == "None"
    hpa = _kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert "cpu" in container["resources"]["requests"]  # utilisation targets need a request


def test_rayservice_structure_and_pod_templates() -> None:
    docs = _docs(KUBERAY)
    ray_service = _kind(docs, "RayService")
    jsonschema.validate(ray_service, RAYSERVICE_SCHEMA)
    cluster = ray_service["spec"]["rayClusterConfig"]
    _validate_pod_template(cluster["headGroupSpec"]["template"], "headGroupSpec.template")
    for group in cluster["workerGroupSpecs"]:
        _validate_pod_template(group["template"], f"workerGroupSpecs[{group['groupName']}].template")
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        for container in group["template"]["spec"]["containers"]:
            gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
            assert gpus == group["rayStartParams"].get("num-gpus"), f"{group['groupName']}: GPUs for Ray != pod's"


def _serve_config() -> dict[str, Any]:
    return yaml.safe_load(_kind(_docs(KUBERAY), "RayService")["spec"]["serveConfigV2"])


def test_rayservice_serve_config_builds_the_rewardsvc_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray.serve", reason="checking serveConfigV2 needs the rewardsvc[ray] extra")
    from ray.serve.schema import ServeDeploySchema

    from rewardsvc.rayserve.app import SERVICER_FUNCTIONS

    docs = _docs(KUBERAY)
    serve_config = _serve_config()
    schema = ServeDeploySchema.model_validate(serve_config)  # Ray Serve's own validation of serveConfigV2
    assert list(schema.grpc_options.grpc_servicer_functions) == SERVICER_FUNCTIONS
    for fn in SERVICER_FUNCTIONS:
        module, _, attr = fn.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr))
    (app,) = schema.applications
    module, _, attr = app.import_path.partition(":")
    builder = getattr(importlib.import_module(module), attr)

    # The builder's config file is the ConfigMap's key, mounted in every Ray pod at that path.
    config_path = Path(app.args["config"])
    cluster = _kind(docs, "RayService")["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    config_map = _kind(docs, "ConfigMap")
    for template in templates:
        mounts = template["spec"]["containers"][0]["volumeMounts"]
        mount = next(m for m in mounts if Path(m["mountPath"]) == config_path.parent)
        volume = next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    text = config_map["data"][config_path.name]
    config = parse_config(yaml.safe_load(text), "ConfigMap")
    assert config.ray is not None and config.ray.grpc_port == schema.grpc_options.port

    # The app builds from that file, as the Serve controller will (the token comes from the Secret there).
    head_env = {e["name"] for e in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert config.server.auth_token_env in head_env
    local = tmp_path / "config.yaml"
    local.write_text(text)
    monkeypatch.setenv(config.server.auth_token_env, "t" * 32)
    application = builder({"config": str(local)})
    assert type(application).__name__ == "Application"

    # Clients reach the proxies through the gRPC Service on the pods' gRPC port.
    service = _kind(docs, "Service", "rewardsvc-ray-grpc")
    assert service["spec"]["ports"][0]["targetPort"] == schema.grpc_options.port
    for template in templates:
        assert template["metadata"]["labels"].items() >= {
            k: v for k, v in service["spec"]["selector"].items() if not k.startswith("ray.io/")}.items()
        ports = {p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert schema.grpc_options.port in ports


def test_rayservice_gpu_requests_fit_the_gpu_workers() -> None:
    config = parse_config(yaml.safe_load(_kind(_docs(KUBERAY), "ConfigMap")["data"]["config.yaml"]), "ConfigMap")
    cluster = _kind(_docs(KUBERAY), "RayService")["spec"]["rayClusterConfig"]
    node_gpus = max(float(g["rayStartParams"].get("num-gpus", "0")) for g in cluster["workerGroupSpecs"])
    node_cpus = max(float(g["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
                    for g in cluster["workerGroupSpecs"])
    assert config.ray is not None
    for name, dep in config.ray.scorers.items():
        actor = dep.ray_actor_options
        assert actor.num_gpus <= node_gpus and actor.num_cpus <= node_cpus, f"{name} fits on no worker"
    assert os.path.isabs(config.scorers[[s.name for s in config.scorers].index("rm")].config.model)
