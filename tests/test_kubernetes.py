"""deploy/kubernetes/: the Kustomize base and the keda overlay render (`kubectl kustomize`
where installed) and every object is valid for Kubernetes, checked offline with
kubernetes-validate; the cluster's deployment rules hold in what renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).parent.parent / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"
# kinds of custom resources, which the Kubernetes schemas do not know: checked below
CUSTOM = {"ScaledObject"}


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects of a kustomization: rendered by kubectl when there is one, else the
    files it lists, read as they are (a base has no patches)."""
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        path = folder / resource
        if path.is_dir():
            docs += render(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


@pytest.mark.parametrize("folder", ["base", "overlays/keda"])
def test_every_object_is_valid(folder: str) -> None:
    """Each rendered object passes the Kubernetes schema of its kind (strict: no unknown
    field), custom resources aside."""
    docs = render(DEPLOY / folder)
    assert docs
    for doc in docs:
        if doc["kind"] in CUSTOM:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_base_follows_the_cluster_design() -> None:
    """Stable node names from a StatefulSet, a headless Service for node-to-node calls,
    INTERNAL_URL through it, the secret from a Secret, a preStop drain within a long grace
    period, long WebSocket timeouts without affinity, one node down at a time."""
    objs = by_kind(render(DEPLOY / "base"))
    sts = objs["StatefulSet/lkpool"]
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "lkpool-nodes" in env["INTERNAL_URL"]["value"]
    assert {"configMapRef": {"name": "lkpool-config"}} in container["envFrom"]
    assert {"secretRef": {"name": "lkpool-cluster"}} in container["envFrom"]
    assert "/_cluster/drain" in container["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert pod["terminationGracePeriodSeconds"] >= 600
    assert objs["ConfigMap/lkpool-config"]["data"]["REDIS_URL"].startswith("redis://")
    headless = objs["Service/lkpool-nodes"]["spec"]
    assert headless["clusterIP"] == "None" and sts["spec"]["serviceName"] == "lkpool-nodes"
    annotations = objs["Ingress/lkpool"]["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert objs["Service/lkpool"]["spec"]["sessionAffinity"] == "None"
    assert objs["PodDisruptionBudget/lkpool"]["spec"]["maxUnavailable"] == 1


def test_keda_overlay_scales_on_the_queue_and_on_use() -> None:
    """The ScaledObject targets the StatefulSet, scales on the queue's length and on
    used/capacity, and scales down slowly; the StatefulSet leaves replicas to it."""
    objs = by_kind(render(DEPLOY / "overlays" / "keda"))
    scaled = objs["ScaledObject/lkpool"]["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                        "name": "lkpool"}
    triggers = {t["type"]: t["metadata"] for t in scaled["triggers"]}
    assert triggers["redis"]["listName"] == "lkpool:queue"
    assert "lkpool_cluster_used" in triggers["prometheus"]["query"]
    assert "lkpool_cluster_capacity" in triggers["prometheus"]["query"]
    down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert "replicas" not in objs["StatefulSet/lkpool"]["spec"]
