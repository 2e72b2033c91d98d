import pytest
import torch
import torch.nn.functional as F

from deepmimic.core.architectures import ModelSpec
from deepmimic.core.optimizer import SGD

from ..conftest import imported_by_fresh_python

X = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
Y = torch.randint(0, 10, (32,))


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return ModelSpec("c-mp-fc").build((1, 8, 8), 10)


def steps(model: torch.nn.Module, opt, lrs: list[float]) -> None:
    for lr in lrs:
        if isinstance(opt, SGD):
            opt.lr = lr
        else:
            opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        F.cross_entropy(model(X), Y).backward()
        opt.step()


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_steps_match_torch_sgd_bit_for_bit(momentum):
    ours, theirs = net(), net()
    lrs = [0.1, 0.07, 0.03, 0.01]
    steps(ours, SGD(ours.parameters(), lr=0.1, momentum=momentum, weight_decay=5e-4), lrs)
    steps(theirs, torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=momentum, weight_decay=5e-4,
                                  nesterov=momentum > 0), lrs)
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))


def test_a_restored_state_goes_on_as_if_never_stopped():
    whole, cut = net(), net()
    opt = SGD(whole.parameters(), lr=0.1, momentum=0.9)
    steps(whole, opt, [0.1] * 4)
    first = SGD(cut.parameters(), lr=0.1, momentum=0.9)
    steps(cut, first, [0.1] * 2)
    second = SGD(cut.parameters(), lr=0.1, momentum=0.9)
    second.load_state_dict(first.state_dict())
    steps(cut, second, [0.1] * 2)
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), cut.parameters()))


def test_torch_sgd_state_loads():
    model = net()
    theirs = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    steps(model, theirs, [0.1])
    ours = SGD(model.parameters(), lr=0.1, momentum=0.9)
    ours.load_state_dict(theirs.state_dict())
    assert all(torch.equal(b, theirs.state[p]["momentum_buffer"]) for b, p in zip(ours.buffers, model.parameters()))


def test_state_for_other_parameters_is_refused():
    opt = SGD(net().parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="buffers"):
        opt.load_state_dict({"state": {0: {"momentum_buffer": torch.zeros(1)}}})


def test_a_training_step_does_not_import_torch_dynamo():
    # The reason the class exists: torch.optim's first optimiser imports torch._dynamo (1-2 s a process).
    code = ("import torch; from deepmimic.core.training import Training, train; "
            "from deepmimic.core.architectures import ModelSpec; "
            "m = ModelSpec('c-mp-fc').build((1, 8, 8), 10); "
            "train(m, torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), "
            "Training(epochs=1))")
    assert imported_by_fresh_python(code, "torch._dynamo") == []


def test_a_parameter_without_a_gradient_is_refused():
    model = net()
    unused = torch.nn.Parameter(torch.zeros(3))
    opt = SGD([*model.parameters(), unused], lr=0.1, momentum=0.9)
    F.cross_entropy(model(X), Y).backward()
    with pytest.raises(RuntimeError, match="did not use"):
        opt.step()


def test_a_learning_rate_held_in_a_tensor_steps_as_the_float_one():
    ours, theirs = net(), net()
    lrs = [0.1, 0.07, 0.03, 0.01]
    steps(ours, SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4), lrs)
    held = SGD(theirs.parameters(), lr=torch.zeros(()), momentum=0.9, weight_decay=5e-4)
    for lr in lrs:
        held.lr.fill_(lr)
        held.zero_grad()
        F.cross_entropy(theirs(X), Y).backward()
        held.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_a_scaled_backbone_steps_as_torch_sgd_with_two_parameter_groups():
    ours, theirs = net(), net()
    head = list(ours[-1].parameters())  # the last linear layer
    opt = SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, head=head)
    opt.backbone_scale = 0.1
    steps(ours, opt, [0.1, 0.05])
    rest = [p for p in theirs.parameters() if all(p is not q for q in theirs[-1].parameters())]
    reference = torch.optim.SGD([{"params": rest, "lr": 0.01}, {"params": list(theirs[-1].parameters())}], lr=0.1,
                                momentum=0.9, weight_decay=5e-4, nesterov=True)
    for lr in (0.1, 0.05):
        reference.param_groups[0]["lr"], reference.param_groups[1]["lr"] = lr * 0.1, lr
        reference.zero_grad()
        F.cross_entropy(theirs(X), Y).backward()
        reference.step()
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(ours.parameters(), theirs.parameters()))


def test_a_frozen_backbone_stays_as_it_was_while_the_head_learns():
    model, before = net(), net()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, head=list(model[-1].parameters()))
    opt.backbone_scale = 0.0
    steps(model, opt, [0.1, 0.1])
    frozen = [torch.equal(a, b) for a, b in zip(model.parameters(), before.parameters())]
    assert frozen == [True] * (len(frozen) - 2) + [False, False]  # the head's weight and bias moved
