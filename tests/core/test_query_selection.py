"""Choosing which pool images to ask a paid mentor about: round sizes, each strategy's rule, the selector's view."""

import numpy as np
import pytest
import torch

from deepmimic.core.architectures import ModelSpec
from deepmimic.core.query_selection import SHORTLIST, STRATEGIES, View, k_center, round_sizes, scores


@pytest.mark.parametrize("budget, rounds, seed, sizes", [
    (100, 5, 0.1, [10, 23, 23, 22, 22]),
    (100, 1, 0.1, [100]),
    (3, 5, 0.1, [1, 1, 1]),         # too few images for every round: no empty round
    (50, 3, 1.0, [50]),             # all of it at random
])
def test_the_budget_is_spent_in_rounds_the_first_its_seed_share(budget, rounds, seed, sizes):
    assert round_sizes(budget, rounds, seed) == sizes
    assert sum(sizes) == budget


def _view(probabilities, features=None, asked=None):
    n = len(probabilities)
    features = np.zeros((n, 2), np.float32) if features is None else features
    return View(np.asarray(probabilities, np.float32), features, np.zeros((1, 2), np.float32) if asked is None
                else asked)


def test_random_takes_the_candidates_in_their_random_order():
    assert STRATEGIES["random"]().choose(None, 3).tolist() == [0, 1, 2]


def test_entropy_and_margin_take_the_least_certain():
    probs = [[0.98, 0.01, 0.01], [0.34, 0.33, 0.33], [0.5, 0.5, 0.0], [0.9, 0.05, 0.05]]
    assert STRATEGIES["entropy"]().choose(_view(probs), 2).tolist() == [1, 2]
    assert STRATEGIES["margin"]().choose(_view(probs), 2).tolist() == [2, 1]  # margins 0.0 and 0.01


def test_k_center_takes_the_farthest_from_what_was_asked_and_never_twice():
    features = np.array([[0, 0], [0.1, 0], [10, 0], [10.1, 0], [0, 5]], np.float32)
    picked = k_center(features, np.array([[0, 0]], np.float32), 3)
    assert picked[:2].tolist() == [3, 4]  # 10.1 from the asked image, then 5 from both
    assert len(set(picked.tolist())) == 3
    assert sorted(k_center(np.zeros((4, 2), np.float32), np.zeros((1, 2), np.float32), 4).tolist()) == [0, 1, 2, 3]


def test_entropy_kcenter_chooses_diverse_images_among_the_most_uncertain():
    rng = np.random.default_rng(0)
    n, k = 200, 5
    probs = rng.dirichlet(np.ones(10), n)
    features = rng.normal(size=(n, 8)).astype(np.float32)
    picked = STRATEGIES["entropy_kcenter"]().choose(_view(probs, features, np.zeros((1, 8), np.float32)), k)
    entropy = -(probs * np.log(probs)).sum(1)
    shortlist = set(np.argsort(-entropy)[: SHORTLIST * k].tolist())
    assert len(set(picked.tolist())) == k and set(picked.tolist()) <= shortlist
    assert set(picked.tolist()) != set(np.argsort(-entropy)[:k].tolist())  # not uncertainty alone


def test_the_selector_scores_its_probabilities_and_penultimate_features():
    torch.manual_seed(0)
    model = ModelSpec("c-mp-fc2", width=4, fc_width=16).build((1, 8, 8), 10, [80.0], [60.0]).eval()
    images = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    probabilities, features = scores(model, images)
    assert probabilities.shape == (7, 10) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert features.shape == (7, 16)  # the last linear layer's input: its output gives the probabilities
    assert np.allclose(torch.softmax(last(torch.from_numpy(features)), 1).detach().numpy(), probabilities, atol=1e-5)
