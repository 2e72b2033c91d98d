"""Strong augmentation: images/s of the augmentation alone and of the core loop with and without it.

The augmentation alone, at several batch sizes: this project's per-image draw over kornia's operations
(`core/augment.py`); kornia's own policy, which draws once per batch (the same operations for every image, so not
the published method, shown for its cost); and torchvision's v2 RandAugment called once per image (its per-image
draw). The core loop: Table 2's CIFAR-10 mentor on random 3×32×32 images, 128 a batch, without augmentation and
with each policy.

    python benchmarks/augment.py [--images 4096] [--epochs 3] [--batch-sizes 32 128 512] [--device cuda]
"""

from __future__ import annotations

import argparse

import torch

from common import EpochClock, machine, print_table, seconds
from deepmimic.core.architectures import ModelSpec
from deepmimic.core.augment import Augment, strong
from deepmimic.core.training import Training, train

MENTOR = ModelSpec("c2-mp-c2-mp-c2-mp-fc2")  # Table 2's CIFAR-10 mentor


def alone(x: torch.Tensor, device: torch.device, sizes: list[int]) -> list[list[object]]:
    """Images/s of each way of augmenting batches of each size, over all of `x` (after one warm-up batch)."""
    from kornia.augmentation.auto import RandAugment
    from torchvision.transforms import v2

    kornia_batch, torchvision_one = RandAugment(n=2, m=9), v2.RandAugment(num_ops=2, magnitude=9)
    ways = {
        "per image over kornia's operations (ours, randaugment)": lambda b: strong(b, Augment("randaugment")),
        "per image over kornia's operations (ours, trivialaugment)": lambda b: strong(b, Augment("trivialaugment")),
        "kornia RandAugment, one draw a batch": lambda b: kornia_batch(b.float() / 255),
        "torchvision v2 RandAugment, called per image": lambda b: torch.stack([torchvision_one(i) for i in b]),
    }
    rows = []
    for name, way in ways.items():
        rates = []
        for size in sizes:
            way(x[:size])
            wall = seconds(lambda way=way, size=size: [way(x[i:i + size]) for i in range(0, len(x), size)], device)
            rates.append(round(len(x) / wall))
        rows.append([name, *rates])
    return rows


def loop(x: torch.Tensor, y: torch.Tensor, epochs: int, device: torch.device) -> list[list[object]]:
    """Images/s of the core loop (median epoch) without augmentation and with each policy."""
    rows, base = [], None
    for augment in (None, Augment("randaugment"), Augment("trivialaugment")):
        torch.manual_seed(0)
        model = MENTOR.build(tuple(x.shape[1:]), 10, [128.0] * 3, [64.0] * 3).to(device)
        clock = EpochClock(device)
        train(model, x, y, Training(epochs=epochs, batch_size=128, augment=augment), clock)
        rate = len(x) / clock.median()
        base = base or rate
        rows.append([augment.policy if augment else "none", round(rate), round(rate / base, 3)])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), generator=g, dtype=torch.uint8).to(device)
    y = torch.randint(0, 10, (args.images,), generator=g).to(device)
    print(machine(device))
    print_table("Augmentation alone, 3×32×32: images/s at each batch size",
                ["way", *(f"batch {b}" for b in args.batch_sizes)], alone(x, device, args.batch_sizes))
    print_table(f"Core loop, Table 2's mentor, {args.images} images × {args.epochs} epochs",
                ["augment", "images/s", "ratio to none"], loop(x, y, args.epochs, device))


if __name__ == "__main__":
    main()
