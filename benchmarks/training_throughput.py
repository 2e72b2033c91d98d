"""Benchmark 1: training throughput of the core loop against a plain PyTorch loop.

Images/s come from the median epoch time of each run. Same model, optimizer, schedule, loss, batch size and epochs; the plain loop
feeds `TensorDataset` + `DataLoader(batch_size=128, shuffle=True)`, the core loop
keeps the data on the device and draws batches by index. Fashion-MNIST with
Table 1's architectures by default; `--tiny` uses Table 5's Tiny ImageNet
mentor on random 64×64 images (the GPU target).

    python benchmarks/training_throughput.py [--epochs 3] [--device cuda] [--bf16] [--channels-last]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import TABLE1, EpochClock, accuracy, build, fashion_split, machine, plain_train, print_table

from deepmimic.core.architectures import ModelSpec, count_parameters
from deepmimic.core.evaluation import predict_logits
from deepmimic.core.training import Hyper, train

TABLE5_MENTOR = ModelSpec("(c-bn-d)9-fc-bn-d-s", width=32, width_growth=1, dropout=0.1)


def compare(name: str, make, x, y, test, hyper: Hyper, device: torch.device) -> list[list[object]]:
    """Train a fresh copy of the model with each loop; one row per loop and a ratio."""
    rows, rates = [], {}
    warm = Hyper(epochs=1, batch_size=hyper.batch_size, bf16=hyper.bf16, channels_last=hyper.channels_last)
    plain_train(make().to(device), x[:1024], y[:1024], warm, device)  # first-use costs (oneDNN kernels, caches)
    train(make().to(device), x[:1024].to(device), y[:1024].to(device), warm)
    for loop in ("plain", "core"):
        model, clock = make().to(device), EpochClock(device)
        if loop == "plain":
            plain_train(model, x, y, hyper, device, clock)
            per_epoch = len(x)
        else:
            xd, yd = x.to(device), y.to(device)
            clock.last = time.perf_counter()
            train(model, xd, yd, hyper, clock)
            per_epoch = (len(x) // hyper.batch_size) * hyper.batch_size  # the core loop drops the ragged tail
        rates[loop] = per_epoch / clock.median()
        acc = accuracy(predict_logits(model, test[0].to(device)), test[1]) if test else float("nan")
        rows.append([name, count_parameters(model), loop, hyper.epochs, round(sum(clock.times), 2),
                     round(clock.median(), 3), round(rates[loop]), acc, ""])
    rows[-1][-1] = round(rates["core"] / rates["plain"], 2)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="core loop: bfloat16 autocast")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="core loop: NCHW")
    p.add_argument("--compile", action="store_true", help="core loop: torch.compile")
    p.add_argument("--tiny", type=int, default=0, metavar="N", help="Table 5's mentor on N random 64×64 images instead")
    args = p.parse_args()
    device = torch.device(args.device)
    fast = Hyper(epochs=args.epochs, batch_size=128, lr=0.05, bf16=args.bf16, channels_last=args.channels_last, compile=args.compile)
    print(machine(device))
    print(f"core loop options: bf16={args.bf16} channels_last={args.channels_last} compile={args.compile}")
    header = ["model", "params", "loop", "epochs", "seconds", "median epoch s", "images/s", "test acc", "core/plain"]
    rows: list[list[object]] = []
    if args.tiny:
        x = torch.randint(0, 256, (args.tiny, 3, 64, 64), dtype=torch.uint8)
        y = torch.randint(0, 200, (args.tiny,))
        make = lambda: TABLE5_MENTOR.build((3, 64, 64), 200, [0.5] * 3, [0.25] * 3)  # noqa: E731
        rows += compare(f"Table 5 mentor {TABLE5_MENTOR.architecture}", make, x, y, None, fast, device)
        print(f"sizes: {args.tiny} random images 3×64×64, 200 classes, batch 128")
    else:
        data = fashion_split()
        print(f"sizes: Fashion-MNIST mentor part {len(data.mentor_x)} images (true labels), test {len(data.test_x)}, batch 128")
        for name, arch in TABLE1.items():
            make = lambda arch=arch: build(arch, (1, 28, 28), 10, data.mean, data.std)  # noqa: E731
            rows += compare(f"{name} {arch}", make, data.mentor_x, data.mentor_y, (data.test_x, data.test_y), fast, device)
    print_table("Training throughput: core loop vs plain DataLoader loop", header, rows)


if __name__ == "__main__":
    main()
