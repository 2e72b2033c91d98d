"""Benchmarks 2 and 5: soft-label generation against a plain eval loop, and the
test-set inference time of mentor and students (the paper's Table 6).

The mentor is trained briefly with the core loop first (inference speed does not
depend on how well it was trained); the Fashion-MNIST student pool is 48,000 images.

    python benchmarks/inference.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch

from common import TABLE1, build, fashion_split, machine, plain_predict, print_table, seconds
from deepmimic.core.architectures import count_parameters
from deepmimic.core.evaluation import inference_time
from deepmimic.core.soft_labels import soft_labels
from deepmimic.core.training import Training, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = torch.device(args.device)
    data = fashion_split()
    print(machine(device))
    print(f"sizes: student pool {len(data.pool_x)} images, test {len(data.test_x)} images, 1×28×28")

    models = {name: build(arch, (1, 28, 28), 10, data.mean, data.std).to(device) for name, arch in TABLE1.items()}
    mentor = models["Mentor"]
    train(mentor, data.mentor_x.to(device), data.mentor_y.to(device), Training(epochs=1, batch_size=128))
    pool = data.pool_x.to(device)
    soft_labels(mentor, pool[:256])  # warm-up
    rows, rate = [], {}
    for loop in ("plain", "core"):
        fn = ((lambda: plain_predict(mentor, data.pool_x, device)) if loop == "plain"
              else (lambda: soft_labels(mentor, pool)))
        t = min(seconds(fn, device) for _ in range(args.repeats))
        rate[loop] = len(pool) / t
        rows.append(["Mentor " + TABLE1["Mentor"], loop, round(t, 3), round(rate[loop]), ""])
    rows[-1][-1] = round(rate["core"] / rate["plain"], 2)
    same = (plain_predict(mentor, data.pool_x, device) - torch.from_numpy(soft_labels(mentor, pool))).abs().max().item()
    print_table("Soft-label generation: core (inference_mode, channels-last, batches of 256 on CPU) "
                "vs plain eval loop (DataLoader, 128)",
                ["model", "loop", "best of repeats, s", "images/s", "core/plain"], rows)
    print(f"largest difference between the two loops' probabilities: {same:.2e}")

    test = data.test_x.to(device)
    times = {name: inference_time(model, test, args.repeats) for name, model in models.items()}
    print_table("Test-set inference time (paper's Table 6)",
                ["model", "architecture", "params", "seconds", "student/mentor"],
                [[name, TABLE1[name], count_parameters(m), round(times[name], 4),
                  round(times[name] / times["Mentor"], 3)] for name, m in models.items()])


if __name__ == "__main__":
    main()
