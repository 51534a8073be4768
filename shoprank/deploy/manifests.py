"""deploy/kubernetes/: render every overlay with `kubectl kustomize` and validate it offline.

Kubernetes' own kinds are validated strictly against the Kubernetes schemas (kubernetes-validate);
KServe's InferenceService against the vendored excerpt of its published schema, its inline
PodSpec against Kubernetes' PodSpec. `facts()` pulls out of the rendered manifests what must agree
with the build and the server (image, ports, probes, admin flags, HPA metric).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import config

ROOT = config.PROJECT_ROOT / "deploy" / "kubernetes"
OVERLAYS = ("cpu", "gpu", "kserve")
KUBERNETES_VERSION = "1.32.0"  # the schemas validated against: preStop `sleep` needs >= 1.30
KSERVE_SCHEMA = ROOT / "schemas" / "kserve-inferenceservice-v1beta1.json"


class ManifestError(Exception):
    """A manifest that does not render or does not validate."""


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render(overlay: str, root: Path = ROOT) -> list[dict]:
    """The documents `kubectl kustomize` makes of one overlay."""
    import yaml

    binary = kubectl()
    if binary is None:
        raise ManifestError("kubectl is missing (`make system` installs it): cannot render the manifests")
    path = Path(root) / "overlays" / overlay
    if not path.is_dir():
        raise ManifestError(f"no overlay {overlay!r} in {Path(root) / 'overlays'}")
    done = subprocess.run([binary, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ManifestError(f"kubectl kustomize {path} failed: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


@dataclass(frozen=True)
class Problem:
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.message}"


def validate(docs: list[dict], version: str = KUBERNETES_VERSION) -> list[Problem]:
    """Every problem found (empty: all valid), Kubernetes kinds strictly, KServe by its schema."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    problems = []
    for doc in docs:
        if doc.get("kind") == "InferenceService":
            problems += validate_inference_service(doc, version)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except ValidationError as exc:
            problems.append(Problem(name_of(doc), f"{'.'.join(map(str, exc.path))}: {exc.message}"))
        except SchemaNotFoundError:
            problems.append(Problem(name_of(doc), f"no schema for {doc.get('apiVersion')} {doc.get('kind')}"))
    return problems


def validate_inference_service(doc: dict, version: str = KUBERNETES_VERSION) -> list[Problem]:
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    schema = json.loads(KSERVE_SCHEMA.read_text())
    name = name_of(doc)
    problems = [Problem(name, f"{'.'.join(map(str, e.path))}: {e.message}")
                for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    predictor = doc.get("spec", {}).get("predictor", {})
    kserve_keys = set(schema["x-kserve-extension-keys"]) | set(schema["x-kserve-framework-keys"])
    pod_spec = {k: v for k, v in predictor.items() if k not in kserve_keys}
    if pod_spec:  # the predictor's inline core/v1 PodSpec
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": pod_spec}
        try:
            kubernetes_validate.validate(pod, version, strict=True)
        except ValidationError as exc:
            problems.append(Problem(name, f"spec.predictor.{'.'.join(map(str, list(exc.path)[1:]))}: {exc.message}"))
    return problems


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    if len(hits) != 1:
        raise ManifestError(f"expected one {kind}{' ' + name if name else ''}, found {len(hits)}")
    return hits[0]


def serving_container(docs: list[dict]) -> dict:
    """The Triton container: the Deployment's, or the InferenceService predictor's."""
    if any(d.get("kind") == "InferenceService" for d in docs):
        containers = find(docs, "InferenceService")["spec"]["predictor"]["containers"]
        return next(c for c in containers if c["name"] == "kserve-container")
    containers = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "triton")


def check_all(root: Path = ROOT, version: str = KUBERNETES_VERSION) -> dict[str, list[Problem]]:
    return {overlay: validate(render(overlay, root), version) for overlay in OVERLAYS}
