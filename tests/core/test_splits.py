import numpy as np

from deepmimic.core.splits import out_of_domain, stratified_split, unbalanced

LABELS = np.repeat(np.arange(5), [100, 80, 60, 40, 20])


def test_split_is_stratified_disjoint_and_complete():
    split = stratified_split(LABELS, 0.2, seed=3)
    assert np.intersect1d(split.mentor, split.student).size == 0
    assert np.array_equal(np.sort(np.concatenate([split.mentor, split.student])), np.arange(len(LABELS)))
    assert np.bincount(LABELS[split.mentor]).tolist() == [20, 16, 12, 8, 4]


def test_split_depends_on_seed_only():
    a, b, c = (stratified_split(LABELS, 0.2, s) for s in (1, 1, 2))
    assert np.array_equal(a.mentor, b.mentor)
    assert not np.array_equal(a.mentor, c.mentor)


def test_unbalanced_removes_at_most_the_bound_per_class():
    keep = unbalanced(LABELS, 0.5, seed=0)
    before, after = np.bincount(LABELS), np.bincount(LABELS[keep], minlength=5)
    assert np.all(after >= np.floor(before * 0.5)) and after.sum() < before.sum()
    assert np.array_equal(keep, unbalanced(LABELS, 0.5, seed=0))


def test_out_of_domain_adds_at_most_the_ratio_per_class():
    picked = out_of_domain(LABELS, ood_count=1000, ratio=0.3, seed=0)
    assert 0 < len(picked) <= int(0.3 * len(LABELS)) + 5
    assert len(np.unique(picked)) == len(picked) and picked.max() < 1000
