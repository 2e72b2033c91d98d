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
