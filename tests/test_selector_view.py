"""A query round's selector scores the pool as Ray Data batch inference on the asking trial's own resources, and
sees what one process scoring the whole pool would."""

from __future__ import annotations

import time

import numpy as np
import torch

from deepmimic.core.query_selection import scores
from deepmimic.distributed import selector_view

from .conftest import raylet_children, session_ray, small_checkpoint


def torch_workers() -> set[int]:
    """This session's Ray's idle workers that have imported PyTorch (a scoring task's, once it is done)."""
    return set(raylet_children(lambda proc: (proc / "cmdline").read_bytes().startswith(b"ray::IDLE")
                               and "libtorch" in (proc / "maps").read_text()))


class Trial:
    """An actor holding every CPU of the Ray, as a Tune trial holds its own (a task would lend them while it
    waits): a scoring task that asked for one would wait for ever."""

    def view(self, *args):
        return selector_view.view(*args)


def trial(ray):
    """A `Trial` started on the session's Ray."""
    return ray.remote(num_cpus=ray.cluster_resources()["CPU"])(Trial).remote()


def test_a_trial_holding_every_cpu_gets_the_one_process_view_of_its_pool(tmp_path, digits):
    ray = session_ray()
    model = small_checkpoint(tmp_path / "selector", digits)
    images = digits.train.images
    order = np.random.default_rng(0).permutation(len(images))
    candidates, asked = order[:1000], order[1000:1300]

    holder = trial(ray)
    view = ray.get(holder.view.remote(str(tmp_path / "selector"), images, candidates, asked), timeout=120)
    ray.kill(holder)
    probabilities, features = scores(model, torch.from_numpy(images[candidates]))
    _, asked_features = scores(model, torch.from_numpy(images[asked]))
    assert np.array_equal(view.probabilities, probabilities) and np.array_equal(view.features, features)
    assert np.array_equal(view.asked_features, asked_features)


def test_the_next_rounds_scoring_finds_the_last_rounds_worker_still_there(tmp_path, digits):
    ray = session_ray()
    small_checkpoint(tmp_path / "selector", digits)
    order = np.arange(len(digits.train.images))
    holder, args = trial(ray), (str(tmp_path / "selector"), digits.train.images, order[:500], order[500:600])
    ray.get(holder.view.remote(*args), timeout=120)
    before = torch_workers()
    time.sleep(3)  # a selector's training between rounds: Ray's default kills a worker idle for 1 s
    ray.get(holder.view.remote(*args), timeout=120)
    ray.kill(holder)
    assert before and torch_workers() == before
