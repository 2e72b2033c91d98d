"""The methods' own losses, knobs and keys (their targets: tests/test_student_sets.py)."""

from __future__ import annotations

import pytest
import torch

from deepmimic.core.methods import METHODS
from deepmimic.core.methods.confident import Confident
from deepmimic.core.methods.hinton import Hinton


def test_hintons_loss_at_a_temperature_has_the_gradient_scale_of_temperature_one():
    logits = torch.randn(4, 10, requires_grad=True)
    q = torch.softmax(torch.randn(4, 10), 1)
    Hinton(temperature=4.0).loss(logits, q)[0].backward()
    expected = (torch.softmax(logits.detach() / 4.0, 1) - q) / 4  # mean over the batch of 4
    torch.testing.assert_close(logits.grad, expected)


def test_confident_leaves_unsure_images_out_and_divides_by_the_whole_batch():
    logits = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.34, 0.33, 0.33]])
    loss, kept = Confident(threshold=0.7).loss(logits, targets)
    sure = torch.nn.functional.cross_entropy(logits[[0, 2]], targets[[0, 2]], reduction="sum") / 4
    torch.testing.assert_close(loss, sure)
    assert kept.tolist() == [0.5]
    loss.backward()
    assert logits.grad[[1, 3]].abs().sum() == 0 and logits.grad[[0, 2]].abs().sum() > 0


def test_a_batch_confident_keeps_nothing_of_adds_zero():
    logits = torch.randn(2, 3, requires_grad=True)
    loss, kept = Confident(threshold=0.9).loss(logits, torch.full((2, 3), 1 / 3))
    assert loss.item() == 0.0 and kept.tolist() == [0.0]
    loss.backward()
    assert logits.grad.abs().sum() == 0


@pytest.mark.parametrize("method,key", [
    (METHODS["deepmimic"](), None),
    (METHODS["hinton"](temperature=4.0), ["hinton", 4.0]),  # as before methods had knobs: caches stay valid
    (METHODS["hard"](), ["hard", 1.0]),
    (METHODS["supervised"](), ["supervised", 1.0]),
    (Confident(threshold=0.7), ["confident", 1.0, {"threshold": 0.7}]),
])
def test_a_methods_cache_key_holds_its_name_and_knobs(method, key):
    assert method.key() == key


def test_a_method_describes_itself_with_its_knobs():
    assert Hinton(temperature=4.0).describe() == "hinton (temperature=4)" and METHODS["hard"]().describe() == "hard"
