"""deploy/kubernetes/: every overlay rendered by `kubectl kustomize` and validated offline
(Kubernetes kinds strictly, KServe's InferenceService by its published schema), and the facts
the manifests share with the build and the server checked against their one source."""
from __future__ import annotations

import copy

import pytest
import yaml

from shoprank import config, container
from shoprank.deploy import manifests
from shoprank.measure.loadtest.server_stats import COUNTERS
from shoprank.serving import admin
from shoprank.serving.server import _model_control_args

pytestmark = pytest.mark.skipif(manifests.kubectl() is None,
                                reason="kubectl is missing (`make system` installs it): manifests not rendered")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: manifests.render(overlay) for overlay in manifests.OVERLAYS}


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_every_overlay_renders_and_validates_strictly(rendered, overlay):
    docs = rendered[overlay]
    assert docs
    assert manifests.validate(docs) == []


def test_the_validation_catches_what_is_wrong(rendered):
    docs = copy.deepcopy(rendered["cpu"])
    deployment = manifests.find(docs, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/x"
    manifests.find(docs, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] = "many"
    problems = manifests.validate(docs)
    assert {p.resource for p in problems} == {"Deployment/shoprank-triton", "HorizontalPodAutoscaler/shoprank-triton"}
    assert manifests.validate([{"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}])


def test_the_inference_service_is_checked_by_kserve_schema_and_its_pod_spec(rendered):
    service = manifests.find(rendered["kserve"], "InferenceService")
    bad_metric = copy.deepcopy(service)
    bad_metric["spec"]["predictor"]["scaleMetric"] = "gpu"  # not one of KServe's enum
    bad_field = copy.deepcopy(service)
    bad_field["spec"]["predictor"]["containers"][0]["imagePullPolice"] = "Always"  # a typo in the PodSpec part
    unknown = copy.deepcopy(service)
    unknown["spec"]["predictr"] = {}
    for doc in (bad_metric, bad_field, unknown):
        assert manifests.validate_inference_service(doc), doc["spec"]


# --- the facts shared with the build and the server ----------------------------------------------------
def _port(container_spec: dict, name_or_number) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    return next(p["containerPort"] for p in container_spec["ports"] if p["name"] == name_or_number)


def _args(container_spec: dict) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in container_spec["args"])


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_image_ports_probes_and_admin_flags_agree_with_the_server(rendered, overlay):
    triton = manifests.serving_container(rendered[overlay])
    assert triton["image"] == container.IMAGE
    assert triton["command"] == ["tritonserver"]
    args = _args(triton)
    assert (int(args["http-port"]), int(args["grpc-port"]), int(args["metrics-port"])) == (
        config.HTTP_PORT, config.GRPC_PORT, config.METRICS_PORT)
    # The admin APIs stay closed exactly as `make serve` closes them, with the key from a Secret.
    key = "$(SHOPRANK_ADMIN_KEY)"
    assert [a for a in triton["args"] if "restricted" in a] == admin.restricted_api_args(key)
    env = {e["name"]: e for e in triton["env"]}
    assert env["SHOPRANK_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "shoprank-admin"
    assert [a for a in triton["args"] if a.startswith("--model-control-mode") or a.startswith("--load-model")] \
        == _model_control_args("explicit", [])
    for probe, path in (("readinessProbe", container.READY_PATH), ("startupProbe", container.READY_PATH),
                        ("livenessProbe", container.LIVE_PATH)):
        get = triton[probe]["httpGet"]
        assert get["path"] == path and _port(triton, get["port"]) == config.HTTP_PORT, probe
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= config.SERVER_START_TIMEOUT_S


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_deployment_rolls_without_a_gap_and_scales_on_triton_queue_time(rendered, overlay):
    docs = rendered[overlay]
    deployment = manifests.find(docs, "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = manifests.find(docs, "PodDisruptionBudget")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = manifests.find(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == container.HPA_METRIC
    assert int(metric["pods"]["target"]["averageValue"]) == container.HPA_TARGET_QUEUE_US
    # prometheus-adapter's rule turns Triton's own counters into that metric, for the ranker.
    adapter = manifests.find(docs, "ConfigMap", "shoprank-prometheus-adapter-rules")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])
    (rule,) = rules["rules"]
    assert rule["name"]["as"] == container.HPA_METRIC
    assert rule["seriesQuery"].startswith(container.QUEUE_COUNTER + "{")
    for counter in (container.QUEUE_COUNTER, container.SUCCESS_COUNTER):
        assert counter in COUNTERS  # names the project already reads from Triton 2.51's /metrics
        assert f'{counter}{{<<.LabelMatchers>>,model="{container.HPA_MODEL}"}}' in rule["metricsQuery"]
    assert container.HPA_MODEL == config.RANKER_MODEL


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_repository_services_and_network_policy(rendered, overlay):
    docs = rendered[overlay]
    triton = manifests.serving_container(docs)
    assert "--model-repository=$(MODEL_REPOSITORY)" in triton["args"]
    settings = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("shoprank-triton"))
    assert settings["data"]["MODEL_REPOSITORY"].endswith("/" + config.MODEL_REPOSITORY.name)
    assert {r["configMapRef"]["name"] if "configMapRef" in r else r["secretRef"]["name"]
            for r in triton["envFrom"]} == {settings["metadata"]["name"], "shoprank-s3"}
    headless = manifests.find(docs, "Service", "shoprank-triton-grpc-pods")
    assert headless["spec"]["clusterIP"] == "None"  # gRPC clients see every pod: per-call balancing
    assert [p["port"] for p in headless["spec"]["ports"]] == [config.GRPC_PORT]
    policy = manifests.find(docs, "NetworkPolicy")
    by_port = {p["port"]: rule["from"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert by_port[config.METRICS_PORT] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}]
    # The ingress routes inference, metadata and health only: no admin path.
    paths = [p["path"] for ing in docs if ing["kind"] == "Ingress" for r in ing["spec"]["rules"]
             for p in r["http"]["paths"]]
    assert paths and not any("repository" in p or "Repository" in p or "shared" in p.lower() for p in paths)
    gpus = triton["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpus == "1") == (overlay == "gpu")


def test_kserve_variant_fetches_the_same_repository(rendered):
    triton = manifests.serving_container(rendered["kserve"])
    env = {e["name"]: e.get("value") for e in triton["env"]}
    assert env["STORAGE_URI"].startswith("s3://") and env["STORAGE_URI"].endswith("/" + config.MODEL_REPOSITORY.name)
    assert "--model-repository=/mnt/models" in triton["args"]  # where KServe's storage initializer puts it


def test_dockerfile_builds_on_the_facts_image():
    dockerfile = (manifests.ROOT / "Dockerfile").read_text()
    assert "ARG BASE" in dockerfile and "shoprank.container" in dockerfile
    assert container.TRITON_IMAGE.endswith(f":{container.TRITON_RELEASE}-py3")
    assert container.CONTAINER_PYTHON >= container.MIN_PYTHON
    assert container.IMAGE_TAG.endswith(container.TRITON_RELEASE)
