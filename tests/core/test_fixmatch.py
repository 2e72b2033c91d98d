"""FixMatch's loss and batches (`core/fixmatch.py`)."""

import math

import torch
import torch.nn.functional as F

from deepmimic.core.augment import Augment
from deepmimic.core.fixmatch import FixMatch, FixMatchBatches, FixMatchLoss


def test_only_confident_weak_views_teach_their_strong_views_their_class():
    labelled, y = torch.randn(2, 3), torch.tensor([0, 2])
    weak = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.1, 0.0]])  # one confident (class 0), one not
    strong = torch.randn(2, 3)
    loss, stats = FixMatchLoss(threshold=0.95, weight=2.0).loss(torch.cat([labelled, weak, strong]), y)
    unlabelled = F.cross_entropy(strong[:1], torch.tensor([0])) / 2  # divided by all the batch's pool images
    assert torch.allclose(loss, F.cross_entropy(labelled, y) + 2.0 * unlabelled)
    assert torch.allclose(stats, torch.stack([torch.tensor(0.5), unlabelled]))


def test_no_gradient_flows_through_the_weak_views_targets():
    logits = torch.randn(2 + 2 * 4, 3, requires_grad=True)
    logits.data[2:6] = torch.tensor([10.0, 0.0, 0.0])  # all confident
    FixMatchLoss(0.95, 1.0).loss(logits, torch.tensor([0, 1]))[0].backward()
    assert torch.count_nonzero(logits.grad[2:6]) == 0 and torch.count_nonzero(logits.grad[6:]) > 0


def batches(labelled=10, pool=40, mu=3):
    g = torch.Generator().manual_seed(0)
    return FixMatchBatches(torch.randint(0, 256, (labelled, 1, 8, 8), generator=g, dtype=torch.uint8),
                           torch.arange(labelled) % 3, torch.randint(0, 256, (pool, 1, 8, 8), generator=g,
                                                                     dtype=torch.uint8),
                           batch_size=4, fixmatch=FixMatch(mu=mu, strong=Augment("trivialaugment")), shift=1)


def test_a_step_holds_the_labelled_batch_then_mu_times_as_many_pool_images_twice():
    b = batches()
    steps = list(b.epoch(0, 0))
    assert b.steps == len(steps) == 40 // 12  # full steps only
    for images, targets in steps:
        assert images.shape == (4 + 2 * 12, 1, 8, 8) and images.dtype == torch.float32 and targets.shape == (4,)
    weak, strong = steps[0][0][4:].chunk(2)
    assert not torch.equal(weak, strong)  # the strong view is augmented again


def test_the_labelled_images_are_drawn_again_when_the_pool_outlasts_them():
    b = batches(labelled=5, pool=120, mu=2)  # 15 steps of 4 labelled images: 60 draws of 5 images
    assert sum(len(t) for _, t in b.epoch(0, 0)) == b.steps * 4 == 60


def test_steps_set_the_epochs():
    assert FixMatch(mu=7, steps=100).epochs(pool=1078, batch_size=32, epochs=5) == math.ceil(100 / (1078 // 224))
    assert FixMatch().epochs(pool=1078, batch_size=32, epochs=5) == 5
