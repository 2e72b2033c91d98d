"""The cluster launcher files pass Ray's own config schema."""

import pytest
import yaml

from .conftest import ROOT


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cluster_launcher_config_passes_rays_schema(name):
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((ROOT / "clusters" / name).read_text())
    validate_config(config)  # raises on any schema violation
    assert config["head_node_type"] in config["available_node_types"]
    assert any("mlflow server" in c for c in config["head_setup_commands"])
    assert any("MLFLOW_TRACKING_URI" in c for c in config["setup_commands"])


def _gpu_limits(group: dict) -> list[str]:
    return [c["resources"]["limits"].get("nvidia.com/gpu") for c in group["template"]["spec"]["containers"]]


def test_kuberay_raycluster_has_the_fields_kuberay_requires():
    doc = yaml.safe_load((ROOT / "clusters" / "kuberay" / "raycluster.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster" and doc["metadata"]["name"]
    spec = doc["spec"]
    assert spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert "rayStartParams" in spec["headGroupSpec"]
    (gpu,) = spec["workerGroupSpecs"]
    assert gpu["groupName"] and "rayStartParams" in gpu and gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    assert _gpu_limits(gpu) == ["1"]


def test_kuberay_rayjob_runs_a_shipped_sweep():
    doc = yaml.safe_load((ROOT / "clusters" / "kuberay" / "rayjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    entry = doc["spec"]["entrypoint"].split()
    assert entry[:2] == ["deepmimic", "sweep"] and (ROOT / entry[2]).is_file()
    cluster = doc["spec"]["rayClusterSpec"]
    assert "headGroupSpec" in cluster and _gpu_limits(cluster["workerGroupSpecs"][0]) == ["1"]
