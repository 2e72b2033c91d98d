"""A black box's answers kept by image content: asked once, kept as they come, a damaged part asked again."""

import os

import numpy as np
import pytest

from deepmimic.core.answer_cache import CachedAnswers, image_keys
from deepmimic.core.black_box import BlackBoxError, Queries

IMAGES = np.random.default_rng(0).integers(0, 256, (10, 1, 4, 4), dtype=np.uint8)


class Box:
    """A black box answering a fixed rule, counting what it is asked; it fails from its `fail_at`th image on."""

    batch_size = 3

    def __init__(self, fail_at=None):
        self.queries, self.fail_at = Queries(), fail_at

    def open(self, device):
        return self

    def probabilities(self, images):
        if self.fail_at is not None and self.queries.images + len(images) > self.fail_at:
            raise BlackBoxError("black box down")
        self.queries.requests += 1
        self.queries.images += len(images)
        p = np.stack([images.reshape(len(images), -1).mean(1), 255 - images.reshape(len(images), -1).mean(1)], 1)
        return (p / 255).astype(np.float32)


def test_an_image_asked_before_is_answered_from_the_cache(tmp_path):
    first = CachedAnswers(Box(), str(tmp_path)).open("cpu")
    want = first.probabilities(IMAGES[:6])
    again = CachedAnswers(Box(), str(tmp_path)).open("cpu")
    got = again.probabilities(IMAGES)
    np.testing.assert_array_equal(got[:6], want)
    assert again.queries == Queries(requests=2, images=4, cached=6)  # the 4 new ones, in batches of 3


def test_answers_received_before_a_failure_are_kept(tmp_path):
    stopped = CachedAnswers(Box(fail_at=7), str(tmp_path)).open("cpu")
    with pytest.raises(BlackBoxError):
        stopped.probabilities(IMAGES)
    later = CachedAnswers(Box(), str(tmp_path)).open("cpu")
    later.probabilities(IMAGES)
    assert later.queries == Queries(requests=2, images=4, cached=6)  # two batches of 3 came before it stopped


def test_a_damaged_part_is_left_out_and_its_images_asked_again(tmp_path):
    CachedAnswers(Box(), str(tmp_path)).open("cpu").probabilities(IMAGES[:3])
    part = next(p for p in os.listdir(tmp_path) if p.endswith(".parquet"))
    data = bytearray((tmp_path / part).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / part).write_bytes(bytes(data))
    again = CachedAnswers(Box(), str(tmp_path)).open("cpu")
    assert again.damaged == 1
    again.probabilities(IMAGES[:3])
    assert again.queries == Queries(requests=1, images=3, cached=0)


def test_images_differing_in_one_pixel_or_in_shape_have_different_keys():
    other = IMAGES.copy()
    other[0, 0, 0, 0] ^= 1
    assert image_keys(IMAGES)[0] != image_keys(other)[0]
    assert image_keys(IMAGES[:1])[0] != image_keys(IMAGES[:1].reshape(1, 1, 2, 8))[0]
    assert len(set(image_keys(IMAGES).tolist())) == len(IMAGES)
