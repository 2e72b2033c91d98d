"""The cluster files: launcher and KubeRay configs pass their schemas, the runtime environment ships what
the project needs, and a job's driver checks that every node runs its versions."""

import sys
import time

import pytest
import yaml

from .conftest import ROOT, wait_for


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


def test_the_runtime_environment_ships_the_package_and_every_dependency_a_ray_image_lacks():
    import tomllib

    env = yaml.safe_load((ROOT / "clusters" / "runtime_env.yaml").read_text())
    assert env["py_modules"] == ["platform/deepmimic"] and (ROOT / "platform" / "deepmimic" / "cli.py").exists()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    in_image = ("ray", "torch", "numpy", "pyarrow")
    assert sorted(env["pip"]["packages"]) == sorted(d for d in declared if not d.startswith(in_image))


def test_a_node_of_another_version_is_named_in_one_line(ray_local):
    from deepmimic.distributed.cluster import check_versions, versions
    from deepmimic.errors import UserError

    check_versions()  # the session's one node agrees with this driver
    with pytest.raises(UserError) as e:
        check_versions({**versions(), "deepmimic": "0.0.1"})
    assert "deepmimic 0.1.0, but the driver has 0.0.1" in str(e.value) and "\n" not in str(e.value)


def test_an_ending_driver_prints_none_of_its_workers_output_from_then_on(ray_local, capfd):
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as relay

    from deepmimic import stopping

    @ray_local.remote
    def say(word: str) -> None:
        print(word, file=sys.stderr, flush=True)

    seen: list[str] = []

    def heard(word: str) -> bool:
        seen.append(capfd.readouterr().err)
        return word in "".join(seen)

    handlers = list(relay.handlers)
    try:
        ray_local.get(say.remote("before-the-stop"))
        begun = time.monotonic()
        wait_for(lambda: heard("before-the-stop"), "a worker's line in the driver", 30)
        relayed = time.monotonic() - begun
        stopping.ending()  # what the first Ctrl-C's handler, or the CLI once its work returns, does first
        ray_local.get(say.remote("after-the-stop"))
        time.sleep(1.0 + 3 * relayed)
        assert not heard("after-the-stop")
    finally:
        relay.handlers = handlers  # the other tests of this worker's Ray keep its workers' output


def test_the_readme_shows_the_cluster_demos_steps_as_the_demo_runs_them():
    script = (ROOT / "clusters" / "local_demo.sh").read_text()
    steps = script.split("# --- the README's steps ---\n")[1].split("# --- end of the README's steps ---")[0]
    assert "ray job submit" in steps and "runtime_env.yaml" in steps
    assert f"```bash\n{steps}```" in (ROOT / "README.md").read_text()
