"""Which of torchvision's classifiers build for which images, and why the others do not: every name of
`torchvision.models.list_models(module=torchvision.models)` checked as `architecture: torchvision/<name>` is
(`ModelSpec.check`, the config's check: on the meta device, nothing allocated, RegNets apart), for 10 classes.

    python benchmarks/library_models.py [--shapes 1x8x8 3x32x32 3x64x64 3x224x224]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import machine, print_table
from deepmimic.core.architectures import ArchitectureError, ModelSpec


def main() -> None:
    import torchvision.models as models

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=["1x8x8", "3x32x32", "3x64x64", "3x224x224"])
    args = p.parse_args()
    names = models.list_models(module=models)
    print(machine(torch.device("cpu")), f"torchvision's classifiers: {len(names)}", sep="\n")
    rows, reasons = [], {}
    for text in args.shapes:
        shape = tuple(int(v) for v in text.split("x"))
        start, refused = time.perf_counter(), []
        for name in names:
            try:
                ModelSpec(f"torchvision/{name}").check(shape, 10)
            except ArchitectureError as e:
                refused.append(name)
                reasons.setdefault(name, {})[text] = str(e).split(" images (", 1)[-1].rstrip(")")[:90]
        rows.append([text, len(names) - len(refused), len(refused), round(time.perf_counter() - start, 1)])
    print_table("torchvision classifiers that build, by image size", ["images", "build", "do not", "check s"], rows)
    print_table("Those that do not, with the first line of why", ["name", *args.shapes],
                [[name, *(why.get(s, "builds") for s in args.shapes)] for name, why in reasons.items()])


if __name__ == "__main__":
    main()
