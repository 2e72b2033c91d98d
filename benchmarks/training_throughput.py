"""Benchmark 1: training throughput of the core loop against a plain PyTorch loop.

Images/s come from the median epoch time of each run. Same model, optimizer, schedule, loss,
batch size and epochs; the plain loop feeds `TensorDataset` + `DataLoader(batch_size=128, shuffle=True)`, the core loop
keeps the data on the device and draws batches by index. Fashion-MNIST with
Table 1's architectures by default; `--tiny` uses Table 5's Tiny ImageNet
mentor on random 64×64 images (the GPU target).

    python benchmarks/training_throughput.py [--epochs 5] [--seeds 3] [--device cuda] [--bf16 auto|on|off]
                                             [--no-channels-last] [--no-cuda-graph]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import TABLE1, EpochClock, accuracy, build, fashion_split, machine, plain_train, print_table
from deepmimic.core.architectures import ModelSpec, count_parameters
from deepmimic.core.evaluation import predict_logits
from deepmimic.core.training import Training, native_bf16, train

TABLE5_MENTOR = ModelSpec("(c-bn-d)9-fc-bn-d-s", width=32, width_growth=1, dropout=0.1)


def compare(name: str, make, x, y, test, hyper: Training, device: torch.device, seeds: int) -> list[list[object]]:
    """Train fresh models with each loop, `seeds` times (seeds 0, 1, ...; the plain
    and the core run of one seed start from the same weights); one row per loop
    and the ratio of throughputs. Accuracy is the mean over seeds, since a single
    run's order of batches moves it by a few tenths of a percent."""
    rows = []
    warm = Training(epochs=1, batch_size=hyper.batch_size, bf16=hyper.bf16, channels_last=hyper.channels_last,
                 cuda_graph=hyper.cuda_graph)
    plain_train(make(0).to(device), x[:1024], y[:1024], warm, device)  # first-use costs (oneDNN kernels, caches)
    train(make(0).to(device), x[:1024].to(device), y[:1024].to(device), warm)
    rates: dict[str, float] = {}
    for loop in ("plain", "core"):
        clock, accs = EpochClock(device), []
        for seed in range(seeds):
            model = make(seed).to(device)
            if loop == "plain":
                clock.last = time.perf_counter()
                plain_train(model, x, y, hyper, device, clock, seed=seed)
            else:
                xd, yd = x.to(device), y.to(device)
                clock.last = time.perf_counter()
                train(model, xd, yd, hyper, clock, seed=seed)
            accs.append(accuracy(predict_logits(model, test[0].to(device)), test[1]) if test else float("nan"))
        rates[loop] = len(x) / clock.median()
        rows.append([name, count_parameters(model), loop, f"{hyper.epochs} × {seeds}", round(sum(clock.times), 2),
                     round(clock.median(), 3), round(rates[loop]), round(sum(accs) / seeds, 4),
                     " ".join(f"{a:.4f}" for a in accs), ""])
    rows[-1][-1] = round(rates["core"] / rates["plain"], 2)
    return rows


def build_spec(spec: ModelSpec, shape: tuple[int, int, int], classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return spec.build(shape, classes, [0.5] * shape[0], [0.25] * shape[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="core loop: bfloat16 autocast (auto, the platform's default: where the device has it natively)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="core loop: NCHW")
    p.add_argument("--compile", action="store_true", help="core loop: torch.compile")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="core loop: every step eagerly on a GPU (default: replayed from a CUDA graph)")
    p.add_argument("--tiny", type=int, default=0, metavar="N", help="Table 5's mentor on N random 64×64 images instead")
    args = p.parse_args()
    device = torch.device(args.device)
    bf16 = {"auto": native_bf16(device), "on": True, "off": False}[args.bf16]
    fast = Training(epochs=args.epochs, batch_size=128, lr=0.05, bf16=bf16, channels_last=args.channels_last,
                 compile=args.compile, cuda_graph=args.cuda_graph)
    print(machine(device))
    print(f"core loop options: bf16={bf16} ({args.bf16}) channels_last={args.channels_last} compile={args.compile} "
          f"cuda_graph={args.cuda_graph and device.type == 'cuda'}")
    header = ["model", "params", "loop", "epochs × seeds", "seconds", "median epoch s", "images/s", "mean test acc",
              "test acc per seed", "core/plain"]
    rows: list[list[object]] = []
    if args.tiny:
        x = torch.randint(0, 256, (args.tiny, 3, 64, 64), dtype=torch.uint8)
        y = torch.randint(0, 200, (args.tiny,))
        make = lambda seed: build_spec(TABLE5_MENTOR, (3, 64, 64), 200, seed)  # noqa: E731
        rows += compare(f"Table 5 mentor {TABLE5_MENTOR.architecture}", make, x, y, None, fast, device, args.seeds)
        print(f"sizes: {args.tiny} random images 3×64×64, 200 classes, batch 128")
    else:
        data = fashion_split()
        print(f"sizes: Fashion-MNIST mentor part {len(data.mentor_x)} images (true labels), "
              f"test {len(data.test_x)}, batch 128")
        by_arch: dict[str, list[str]] = {}
        for name, arch in TABLE1.items():  # Student-A is the mentor's architecture: one row for both
            by_arch.setdefault(arch, []).append(name)
        for arch, names in by_arch.items():
            name = " / ".join(names)
            make = lambda seed, arch=arch: build(arch, (1, 28, 28), 10, data.mean, data.std, seed)  # noqa: E731
            rows += compare(f"{name} {arch}", make, data.mentor_x, data.mentor_y, (data.test_x, data.test_y), fast,
                            device, args.seeds)
    print_table("Training throughput: core loop vs plain DataLoader loop", header, rows)


if __name__ == "__main__":
    main()
