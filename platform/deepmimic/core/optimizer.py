"""The paper's optimiser: SGD with (Nesterov) momentum and weight decay.

The update is `torch.optim.SGD(nesterov=True)`'s foreach path, op for op, so
the two agree bit for bit. It is ours because `torch.optim`'s first optimiser
in a process imports `torch._dynamo` (benchmarks/RESULTS.md), and every Ray
worker and Tune trial is a fresh process that would pay it again.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class SGD:
    """SGD with Nesterov momentum (plain SGD at momentum 0) and L2 weight decay; `lr` may change between steps,
    and may be a 0-d tensor on the parameters' device (filled in place between replays of a captured step).
    Parameters outside `head` learn at `lr` times `backbone_scale` (1: every one alike; 0: frozen)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float | torch.Tensor, momentum: float = 0.0,
                 weight_decay: float = 0.0, head: Iterable[torch.Tensor] = ()) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("the optimiser got no trainable parameters")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[torch.Tensor] | None = None  # momentum buffers, made at the first step as torch does
        ids = {id(p) for p in head}
        self.in_head = [id(p) in ids for p in self.params]
        self.backbone_scale = 1.0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):  # torch would skip such a parameter; the buffers here stay aligned instead
            raise RuntimeError("every trainable parameter needs a gradient: the model has a parameter it did not use")
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        if self.momentum:
            if self.buffers is None:
                self.buffers = [g.detach().clone() for g in grads]
            else:
                torch._foreach_mul_(self.buffers, self.momentum)
                torch._foreach_add_(self.buffers, grads)
            grads = torch._foreach_add(grads, self.buffers, alpha=self.momentum)
        if self.backbone_scale != 1.0:  # the head at lr, the rest at lr × scale
            for scale, part in ((1.0, True), (self.backbone_scale, False)):
                chosen = [i for i, head in enumerate(self.in_head) if head == part]
                if chosen and scale:
                    torch._foreach_add_([self.params[i] for i in chosen], [grads[i] for i in chosen],
                                        alpha=-float(self.lr) * scale)
        elif isinstance(self.lr, torch.Tensor):  # a device tensor, as a step replayed from a CUDA graph reads it
            torch._foreach_sub_(self.params, torch._foreach_mul(grads, self.lr))
        else:
            torch._foreach_add_(self.params, grads, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        """The momentum buffers in `torch.optim.SGD.state_dict()`'s layout."""
        return {"state": {i: {"momentum_buffer": b} for i, b in enumerate(self.buffers or [])}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore momentum buffers saved by `state_dict` (or by `torch.optim.SGD`)."""
        saved = state["state"]
        if not saved:
            self.buffers = None
            return
        if len(saved) != len(self.params):
            raise ValueError(f"optimiser state holds {len(saved)} buffers for {len(self.params)} parameters")
        self.buffers = [saved[i]["momentum_buffer"].to(p.device, p.dtype) for i, p in enumerate(self.params)]
