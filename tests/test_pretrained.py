"""The shipped recipe for a user's own photos (`search_spaces/own_images_pretrained.yaml`) through the real CLI on
`deepmimic example-data`, its pool carved from train/: a torchvision ResNet-18 mentor started from a weights file
written here and fine-tuned, a torchvision MobileNet student; the report and MLflow name both with their sizes."""

from __future__ import annotations

import json

import numpy as np
import torch
import yaml
from mlflow.tracking import MlflowClient

from deepmimic.core import checkpoints

from .conftest import ROOT, sweep
from .test_own_data import cli

RESNET18_8X8 = 11_172_810        # torchvision's resnet18 for 1×8×8 images, 10 classes, the small stem
MOBILENET_V3_SMALL_8X8 = 1_527_818


def test_a_pretrained_resnet_mentor_and_a_mobilenet_student_from_the_shipped_recipe(ray_local, tmp_path, monkeypatch):
    import torchvision

    assert cli(ray_local, "example-data", str(tmp_path / "digits")).returncode == 0
    torch.manual_seed(0)
    start = torchvision.models.resnet18()  # ImageNet-shaped, as torchvision's weights file holds it
    torch.save(start.state_dict(), tmp_path / "resnet18.pth")
    text = (ROOT / "search_spaces" / "own_images_pretrained.yaml").read_text()
    text = text.replace("DIR", str(tmp_path / "digits")).replace("WEIGHTS", str(tmp_path / "resnet18.pth"))
    space = yaml.safe_load(text)
    space["training"]["epochs"] = 2
    space["mentor"]["training"]["freeze_epochs"] = 1
    space["grid"] = {"student": ["MobileNet"]}  # one seed; the paper's Student-B adds nothing this test checks
    # the pool carved from train/ (the paper's split): a separate pool's labelling, 10 s of Ray Data here, is
    # tests/test_own_data.py's to check
    del space["dataset"]["unlabeled"]
    sweep(ray_local, tmp_path, space, str(tmp_path / "out"), str(tmp_path / "cache"))

    report = (tmp_path / "out" / "report.md").read_text()
    for architecture, params in (("torchvision/resnet18", RESNET18_8X8),
                                 ("torchvision/mobilenet_v3_small", MOBILENET_V3_SMALL_8X8)):
        assert architecture in report and (f"{params:,}" in report or str(params) in report), report
    (made,) = (tmp_path / "cache").glob("mentors/*/mentor.json")
    tuned = checkpoints.load_model(json.loads(made.read_text())["result"]["checkpoint"])[1].net
    # Fine-tuned from the file: its deepest filters moved a little from where the file put them (a fresh start
    # would share nothing with them), and the head is its own.
    moved = tuned.layer4[1].conv2.weight - start.layer4[1].conv2.weight
    assert 0 < moved.norm() < 0.2 * start.layer4[1].conv2.weight.norm()
    assert tuned.fc.out_features == 10

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("own_images_pretrained").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert by_name["Mentor"].data.params["architecture"] == "torchvision/resnet18"
    assert by_name["Mentor"].data.params["parameters"] == str(RESNET18_8X8)
    assert by_name["MobileNet"].data.params["architecture"] == "torchvision/mobilenet_v3_small"
    assert by_name["MobileNet"].data.params["parameters"] == str(MOBILENET_V3_SMALL_8X8)
    # The MobileNet's best trial is a registered MLflow model (TorchScript) answering probabilities.
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    answers = mlflow.pyfunc.load_model("models:/own_images_pretrained-MobileNet/1").predict(
        np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    assert answers.shape == (3, 10) and np.allclose(answers.sum(1), 1.0, atol=1e-5)
