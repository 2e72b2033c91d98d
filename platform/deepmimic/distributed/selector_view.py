"""A query round's selector scores the pool images not yet asked, and those asked, as Ray Data batch inference
(`query_rounds.py`; the strategies read the result, `core/query_selection.py`).

The trial that asks waits for the answer, so the scoring tasks take no resources of their own: they run on the
trial's node, one at a time, on the trial's CPU threads and GPU. A bundle reserved for them beside the trial's (as
streamed students' reads have, `streaming.py`) would hold a second GPU idle through the training between rounds
and, on two CPUs, halve how many trials run at once, for one forward pass over the pool a round.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow as pa
import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..core import checkpoints
from ..core.query_selection import View, scores
from .cluster import no_progress_bars

# Rows a task scores: a multiple of every batch size `predict_logits` uses, so each image is scored in the same
# batch as when one process scored the whole pool (the same choices to the last bit).
BLOCK_ROWS = 8192


def view(selector_uri: str, images: np.ndarray, candidates: np.ndarray, asked: np.ndarray) -> View:
    """The view of the selector checkpointed at `selector_uri` of the `candidates` and `asked` rows of uint8
    `images` (N×C×H×W), scored by Ray Data tasks on this process's node and device."""
    # Not three lines a round in the trial's log: the executor's own logger, as Ray Data resets "ray.data"'s level
    # at each execution.
    logging.getLogger("ray.data._internal.execution.streaming_executor").setLevel(logging.WARNING)
    no_progress_bars()
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    # A block an item, made here: from_arrow/from_numpy compute each block's metadata in a task that asks for a
    # CPU, which the waiting trial's actor keeps (a task blocked in ray.get lends its CPU; an actor does not).
    blocks = [{"images": images[rows[i:i + BLOCK_ROWS]].tobytes()}
              for rows in (candidates, asked) for i in range(0, len(rows), BLOCK_ROWS)]
    data = ray.data.from_items(blocks, override_num_blocks=len(blocks)).map_batches(
        _score, batch_size=None, batch_format="pyarrow", num_cpus=0, compute=ray.data.TaskPoolStrategy(size=1),
        fn_kwargs={"uri": selector_uri, "shape": images.shape[1:], "threads": torch.get_num_threads(),
                   "gpus": [str(g) for g in ray.get_gpu_ids()]},
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False))
    probabilities, features = [], []
    for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
        probabilities.append(batch["probabilities"])
        features.append(batch["features"])
    probs, feats = np.concatenate(probabilities), np.concatenate(features)
    n = len(candidates)
    return View(probs[:n], feats[:n], feats[n:])


def _score(batch: pa.Table, uri: str, shape: tuple[int, ...], threads: int, gpus: list[str]) -> dict[str, np.ndarray]:
    torch.set_num_threads(threads)  # Ray gives a task that asks for no CPU one thread
    device = _borrowed(gpus)
    images = np.frombuffer(batch.column("images")[0].as_py(), np.uint8).reshape(-1, *shape)
    probs, feats = scores(checkpoints.load_model_at(uri, device), torch.from_numpy(images.copy()).to(device))
    return {"probabilities": probs, "features": feats}  # a small model: loaded each block


def _borrowed(gpus: list[str]) -> torch.device:
    """The asking trial's GPU, or the CPU. A task that asks for no GPU sees its node's GPUs as the raylet does,
    where the trial's GPU ids are named."""
    if not gpus or not torch.cuda.is_available():
        return torch.device("cpu")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return torch.device("cuda", visible.split(",").index(gpus[0]) if visible else int(gpus[0]))
