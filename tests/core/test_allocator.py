import subprocess
import sys

import pytest

from deepmimic.core.allocator import keep_freed_memory

# Forty training steps of batch 128 on 28×28 images after ten to warm up, in a fresh process:
# the minor page faults they cost (activations of ~6 MB are freed and allocated again every step).
# Tuned, the heap still grows now and then (0-6,300 faults in 10 steps); forty steps let that settle.
STEPS = """
import resource, sys, torch
import torch.nn.functional as F
from deepmimic.core.allocator import keep_freed_memory
from deepmimic.core.architectures import ModelSpec
from deepmimic.core.optimizer import SGD
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
torch.manual_seed(0)
model = ModelSpec("c-mp-fc2").build((1, 28, 28), 10)
opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randint(0, 256, (128, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (128,))
for step in range(50):
    if step == 10:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not keep_freed_memory(), reason="no glibc malloc to tune")
def test_freed_activations_stay_in_the_process():
    untuned, tuned = faults("default"), faults("tuned")
    assert tuned * 10 < untuned, (tuned, untuned)
