import numpy as np
import pytest
import torch

from deepmimic.core.architectures import build_model
from deepmimic.core.evaluation import (
    accuracy_and_loss,
    agreement,
    confusion_matrix,
    predict_logits,
    probability_metrics,
)
from deepmimic.core.soft_labels import soft_labels
from deepmimic.core.training import CrossEntropy, Training, random_flip, random_shift, train


def toy(n=256, seed=0):
    """Two classes told apart by brightness."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (torch.rand(n, 1, 4, 4, generator=g) * 100 + y[:, None, None, None] * 120).to(torch.uint8)
    return x, y


def fitted(targets_fn=None, seed=0, epochs=5):
    x, y = toy()
    torch.manual_seed(seed)
    model = build_model("c-fc", (1, 4, 4), 2, width=4, fc_width=8)
    targets = targets_fn(y) if targets_fn else y
    train(model, x, targets, Training(epochs=epochs, batch_size=32, lr=0.1), seed=seed)
    return model, x, y


def test_training_on_hard_labels_learns():
    model, x, y = fitted()
    acc, _ = accuracy_and_loss(predict_logits(model, x), y)
    assert acc > 0.95


def test_training_on_soft_targets_learns():
    model, x, y = fitted(lambda y: torch.nn.functional.one_hot(y, 2).float() * 0.8 + 0.1)
    acc, _ = accuracy_and_loss(predict_logits(model, x), y)
    assert acc > 0.95


def test_same_seed_gives_identical_weights():
    a, _, _ = fitted(seed=4)
    b, _, _ = fitted(seed=4)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_soft_labels_are_probability_rows():
    model, x, _ = fitted()
    probs = soft_labels(model, x)
    assert probs.shape == (len(x), 2) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert soft_labels(model, x, temperature=5.0).max() < probs.max()


def test_random_shift_moves_each_image_within_bounds():
    x = torch.zeros(64, 1, 5, 5, dtype=torch.uint8)
    x[:, :, 2, 2] = 255
    shifted = random_shift(x, 1)
    pos = shifted.view(64, -1).argmax(1)
    rows, cols = pos // 5, pos % 5
    assert shifted.dtype == torch.uint8 and int(shifted.sum()) == 64 * 255
    assert rows.min() >= 1 and rows.max() <= 3 and cols.min() >= 1 and cols.max() <= 3
    assert len(set(pos.tolist())) > 1


def test_random_flip_mirrors_about_half_the_images_and_keeps_the_rest():
    torch.manual_seed(0)
    x = torch.arange(400 * 3, dtype=torch.float32).view(400, 1, 1, 3)
    out = random_flip(x)
    mirrored = (out == x.flip(3)).all(3).flatten()
    assert ((out == x).all(3).flatten() | mirrored).all()
    assert 150 < int(mirrored.sum()) < 250


def test_label_smoothing_applies_to_true_labels_only():
    logits = torch.tensor([[4.0, 0.0, 0.0]])
    hard, soft = torch.tensor([0]), torch.tensor([[0.9, 0.05, 0.05]])
    smoothed, plain = CrossEntropy(label_smoothing=0.3), CrossEntropy()
    assert smoothed.loss(logits, hard)[0] > plain.loss(logits, hard)[0] + 0.3
    assert torch.equal(smoothed.loss(logits, soft)[0], plain.loss(logits, soft)[0])


def test_the_loop_reports_each_epochs_mean_loss_and_the_objectives_stats():
    class Halved(CrossEntropy):  # reports a constant figure per batch
        stats = ("half",)

        def loss(self, logits, targets):
            return super().loss(logits, targets)[0], torch.tensor([0.5])

    x, y = toy()
    seen = []
    train(build_model("c-fc", (1, 4, 4), 2, width=4, fc_width=8), x, y, Training(epochs=2, batch_size=32),
          lambda epoch, stats: seen.append((epoch, stats)), objective=Halved())
    assert [e for e, _ in seen] == [1, 2] and all(set(s) == {"loss", "half"} and s["half"] == 0.5 for _, s in seen)
    assert seen[1][1]["loss"] < seen[0][1]["loss"]


def test_metrics():
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    assert confusion_matrix(labels, preds, 2).tolist() == [[1, 1], [0, 2]]
    assert agreement(preds, labels) == 0.75


def test_probability_metrics_score_answered_probabilities():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m = probability_metrics(probs, np.array([0, 1, 1]), 2)
    assert m["test_accuracy"] == pytest.approx(2 / 3)
    assert m["test_loss"] == pytest.approx(-np.log([0.9, 0.8, 0.4]).mean())
    assert m["confusion_matrix"] == [[1, 0], [1, 1]]


@pytest.mark.parametrize("epochs,every,expected", [(60, None, 3), (5, None, 1), (60, 10, 10), (200, None, 10)])
def test_the_evaluation_schedule_gives_about_twenty_points_unless_set(epochs, every, expected):
    assert Training(epochs=epochs, eval_every=every).evaluation_every == expected


def test_one_nan_weight_is_found_and_named():
    from deepmimic.core.training import nonfinite

    conv = torch.nn.Conv2d(2, 2, 5, padding=2, groups=2, bias=False)
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("nan")
    assert nonfinite(torch.nn.Sequential(conv)) == ["0.weight"]
    assert nonfinite(torch.nn.Sequential(torch.nn.Conv2d(2, 2, 5))) == []


def test_a_teacher_s_answers_to_each_view_replace_the_batch_s_targets():
    """With a teacher, the student learns the teacher's answers to the views it trains on: the batch's own
    targets (here every image's class swapped) are never learnt."""
    x, y = toy()
    teacher, _, _ = fitted()
    torch.manual_seed(1)
    student = build_model("c-fc", (1, 4, 4), 2, width=4, fc_width=8)
    train(student, x, 1 - y, Training(epochs=5, batch_size=32, lr=0.1, shift=1), teacher=teacher.eval())
    assert agreement(predict_logits(student, x).argmax(1).numpy(), predict_logits(teacher, x).argmax(1).numpy()) > 0.95
