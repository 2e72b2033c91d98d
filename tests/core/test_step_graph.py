"""The CUDA-graph step: needs a CUDA device (run where one is lent; skipped elsewhere)."""

import pytest
import torch

from deepmimic.core.architectures import build_model
from deepmimic.core.step_graph import StepGraph
from deepmimic.core.training import Training, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_replays_read_each_new_batch_and_a_short_batch_runs_eagerly():
    total = torch.zeros((), device="cuda")

    def step(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total.add_(images.sum())  # a side effect the graph must repeat on each replay
        return (images * targets).sum()

    graphed = StepGraph(step, batch_size=4)
    batches = [torch.full((4,), float(i), device="cuda") for i in range(8)] + [torch.ones(2, device="cuda")]
    losses = [float(graphed(b, b + 1)) for b in batches]
    assert graphed.graph is not None
    assert losses == [float((b * (b + 1)).sum()) for b in batches]
    assert float(total) == sum(float(b.sum()) for b in batches)


@cuda
def test_graphed_training_ends_where_eager_training_ends():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (1000,), generator=g)  # 31 full batches of 32 and one of 8 an epoch
    x = (torch.rand(1000, 1, 4, 4, generator=g) * 100 + y[:, None, None, None] * 120).to(torch.uint8)
    weights = {}
    for graphed in (True, False):
        torch.manual_seed(0)
        model = build_model("c-fc", (1, 4, 4), 2, width=4, fc_width=8).cuda()
        hyper = Training(epochs=3, batch_size=32, lr=0.1, bf16=False, cuda_graph=graphed)
        train(model, x.cuda(), y.cuda(), hyper, seed=0)
        weights[graphed] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(weights[True], weights[False]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
