"""End to end: a hand-written DeepMimic script, as a user writes it first (one process, `DataLoader`,
`torch.optim.SGD`), against `deepmimic sweep` on the same work, in the same run: Fashion-MNIST 20/80,
mentor `c-mp-c-mp-fc2`, students `c-mp-c-mp-fc` and `c-mp-fc`, the same epochs, batch size and
schedule. Both are fresh processes timed from start to exit, and both print their test accuracies.

    python benchmarks/end_to_end.py [--epochs 10] [--batch 128]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time

import torch
import yaml

from common import FASHION, machine, print_table

PLAIN = r'''
# DeepMimic by hand: a mentor on 20% of Fashion-MNIST's labels, its soft labels for the other 80%,
# two students on those alone. Plain PyTorch: TensorDataset, DataLoader, torch.optim.SGD.
import gzip, math, sys
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

root, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)

def idx(name):
    with gzip.open(f"{root}/{name}.gz") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)

x = torch.tensor(idx("train-images-idx3-ubyte"), dtype=torch.float32)[:, None] / 255
y = torch.tensor(idx("train-labels-idx1-ubyte"), dtype=torch.long)
tx = torch.tensor(idx("t10k-images-idx3-ubyte"), dtype=torch.float32)[:, None] / 255
ty = torch.tensor(idx("t10k-labels-idx1-ubyte"), dtype=torch.long)
order = torch.randperm(len(x))
mentor_part, pool = order[: len(x) // 5], order[len(x) // 5:]
mean, std = x[mentor_part].mean(), x[mentor_part].std()

def net(convs, hidden):
    layers, channels, side = [], 1, 28
    for width in convs:
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, side = width, side // 2
    layers += [nn.Flatten()]
    features = channels * side * side
    if hidden:
        layers += [nn.Linear(features, hidden), nn.ReLU()]
        features = hidden
    return nn.Sequential(*layers, nn.Linear(features, 10))

def fit(model, images, targets):
    loader = DataLoader(TensorDataset(images, targets), batch_size=batch, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = len(loader) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for epoch in range(epochs):
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model((xb - mean) / std), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model):.4f}", flush=True)

def predict(model, images):
    model.eval()
    with torch.no_grad():
        return torch.cat([F.softmax(model((b - mean) / std), 1) for (b,) in DataLoader(TensorDataset(images), 256)])

def accuracy(model):
    return (predict(model, tx).argmax(1) == ty).float().mean().item()

mentor = net([32, 64], 128)
fit(mentor, x[mentor_part], y[mentor_part])
soft = predict(mentor, x[pool])  # the pool's soft labels: no true label reaches a student
print(f"RESULT Mentor {accuracy(mentor):.4f}")
for name, (convs, hidden) in {"Student-A": ([32, 64], 0), "Student-B": ([32], 0)}.items():
    student = net(convs, hidden)
    fit(student, x[pool], soft)
    print(f"RESULT {name} {accuracy(student):.4f}")
'''


def search_space(epochs: int, batch: int) -> dict:
    return {
        "name": "end_to_end", "seed": 0, "dataset": {"name": "fashion_mnist", "root": FASHION},
        "split": {"mentor_ratio": 0.2},
        "training": {"epochs": epochs, "batch_size": batch, "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4},
        "mentor": {"name": "Mentor", "architecture": "c-mp-c-mp-fc2"},
        "students": [{"name": "Student-A", "architecture": "c-mp-c-mp-fc"},
                     {"name": "Student-B", "architecture": "c-mp-fc"}],
        # the mentor trains alone on both cores; the students two at a time on one each
        "resources": {"num_workers": 1, "cpus_per_worker": 1, "threads_per_worker": 1,
                      "mentor": {"cpus_per_worker": 2, "threads_per_worker": 2}},
        "fault_tolerance": {"checkpoint_every": 0},
        "grid": {"student": ["Student-A", "Student-B"]},
    }


def timed(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    print(machine(torch.device("cpu")))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "deepmimic_by_hand.py")
        with open(script, "w") as f:
            f.write(PLAIN)
        plain_s, plain_out = timed([sys.executable, script, FASHION, str(args.epochs), str(args.batch)], env)
        space = os.path.join(folder, "end_to_end.yaml")
        with open(space, "w") as f:
            yaml.safe_dump(search_space(args.epochs, args.batch), f)
        sweep_s, _ = timed([sys.executable, "-m", "deepmimic.cli", "sweep", space, "--out", f"{folder}/out",
                            "--cache", f"{folder}/cache"], env)
        with open(f"{folder}/out/results.csv") as f:
            rows = list(csv.DictReader(f))
    plain = {k: 100 * float(v) for k, v in re.findall(r"^RESULT (\S+) ([\d.]+)$", plain_out, re.M)}
    ours = {"Mentor": 100 * float(rows[0]["mentor_accuracy"])}
    ours |= {r["student"]: 100 * float(r["student_accuracy"]) for r in rows}
    print(f"Fashion-MNIST 20/80, {args.epochs} epochs, batch {args.batch}; whole processes, start to exit")
    print_table("End to end: a hand-written script against `deepmimic sweep`",
                ["run", "seconds", "Mentor %", "Student-A %", "Student-B %", "speed-up"], [
                    ["hand-written (DataLoader, torch.optim.SGD)", round(plain_s, 1),
                     *(f"{plain[m]:.2f}" for m in ("Mentor", "Student-A", "Student-B")), 1.0],
                    ["deepmimic sweep", round(sweep_s, 1), *(f"{ours[m]:.2f}" for m in ("Mentor", "Student-A",
                                                                                         "Student-B")),
                     round(plain_s / sweep_s, 2)]])


if __name__ == "__main__":
    main()
