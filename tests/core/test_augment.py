"""Strong augmentation (`core/augment.py`): a draw per image, reproducible, the images' shape and range kept, and
the targets left as they were."""

import pytest
import torch

from deepmimic.core.architectures import build_model
from deepmimic.core.augment import Augment, strong
from deepmimic.core.training import CrossEntropy, Training, train

from ..conftest import imported_by_fresh_python


def digits_like(n: int = 32, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (1, channels, 16, 16), generator=g, dtype=torch.uint8).repeat(n, 1, 1, 1)


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
def test_each_image_gets_its_own_draw(policy):
    torch.manual_seed(0)
    out = strong(digits_like(32), Augment(policy))
    distinct = {out[i].numpy().tobytes() for i in range(len(out))}
    assert len(distinct) >= 16  # 32 copies of one image, changed in (mostly) different ways


@pytest.mark.parametrize("channels", [1, 3])
def test_the_images_keep_their_shape_and_uint8_range(channels):
    x = digits_like(8, channels)
    out = strong(x, Augment("randaugment", ops=3, magnitude=20))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 255.0


def test_the_same_seed_draws_the_same_augmentation():
    draws = []
    for _ in range(2):
        torch.manual_seed(5)
        draws.append(strong(digits_like(8, 3), Augment("randaugment")))
    assert torch.equal(*draws)


def test_a_low_magnitude_changes_less_than_the_default():
    x = digits_like(64, 3)
    change = []
    for magnitude in (1, 20):
        torch.manual_seed(0)
        change.append((strong(x, Augment("randaugment", magnitude=magnitude)) - x.float()).abs().mean().item())
    assert change[0] < change[1]


class Recorded(CrossEntropy):
    """The mentor's loss, keeping every batch of targets it is given."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.seen: list[torch.Tensor] = []

    def loss(self, logits, targets):
        self.seen.append(targets.clone())
        return super().loss(logits, targets)


def test_an_augmented_image_keeps_its_soft_label():
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    soft = torch.softmax(torch.randn(64, 3), 1)
    objective = Recorded()
    model = build_model("c-fc", (1, 8, 8), 3, width=4)
    train(model, images, soft, Training(epochs=1, batch_size=64, augment=Augment("randaugment")),
          objective=objective)
    # One full-batch step: its targets are the soft labels, in some order, unchanged.
    seen = objective.seen[0]
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, soft.tolist()))


def test_kornia_is_imported_only_where_a_recipe_augments():
    assert imported_by_fresh_python("import deepmimic.core.training", "kornia", "torchvision") == []
