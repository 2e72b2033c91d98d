import numpy as np
import pytest

from deepmimic.core.soft_labels import combine

A = np.array([[0.6, 0.4], [0.2, 0.8]], np.float32)
B = np.array([[0.2, 0.8], [0.4, 0.6]], np.float32)


def test_mean_rule_averages_the_mentors_probabilities():
    np.testing.assert_allclose(combine([A, B]), [[0.4, 0.6], [0.3, 0.7]], atol=1e-6)


def test_geometric_rule_is_a_normalised_geometric_mean():
    out = combine([A, B], "geometric")
    expected = np.sqrt(A * B) / np.sqrt(A * B).sum(1, keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_vote_rule_gives_the_majority_class_one_hot():
    np.testing.assert_array_equal(combine([A, B, A], "vote"), [[1, 0], [0, 1]])


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="median"):
        combine([A, B], "median")
