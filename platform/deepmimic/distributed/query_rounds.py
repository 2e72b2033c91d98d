"""A query budget spent in rounds (`mentors/black_box.py`): the first round's images drawn at random, each later
round's chosen by the budget's strategy from what a selector network, trained on every answer so far, sees of the
pool images not yet asked (`core/query_selection.py`). Runs where the mentor is made (its Tune trial), once per
mentor and grid point: every student of that point learns from the same answered images.

Each round's selector is trained from scratch, not from the last round's weights: a warm-started network
generalises worse than one trained afresh on the grown set (Ash & Adams, "On Warm-Starting Neural Network
Training", 2020), and ActiveThief retrains its substitute each iteration too. A resumed mentor finds each round's
final checkpoint (the same weights, so the same choices) and each answer in the answer cache: it asks nothing
twice.

The selector scores the pool as Ray Data batch inference on this trial's resources (`selector_view.py`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..core import tables
from ..core.answers import Answerer
from ..core.black_box import Queries
from ..core.query_selection import STRATEGIES, round_sizes
from ..core.results import BudgetUse
from ..schema import ModelConfig
from . import selector_view
from .data import write_rows
from .soft_labeling import device

if TYPE_CHECKING:
    from ..mentors.black_box import BlackBoxConfig
    from .mentor_stage import _Job


def spend(job: _Job, answerer: Answerer, box: BlackBoxConfig) -> tuple[dict[str, float], Queries, BudgetUse]:
    """Ask `answerer` about the pool images `box`'s budget pays for, chosen round by round, and about every test
    image; write the answers to the mentor's soft-label and test tables. The seconds spent answering each, the
    queries, and what the budget bought."""
    pool = job.written.pool
    assert pool is not None and box.selector is not None  # the config refuses a separate pool; gives a selector
    table = tables.read(pool.uri, ["id", "image"]).sort_by("id")
    ids, images = table.column("id").to_numpy(), tables.decode_images(table.column("image"), pool.shape)
    order = np.random.default_rng(job.cfg.seed).permutation(len(ids))  # every strategy's first round: random's
    sizes = round_sizes(box.images(len(ids)), box.rounds, box.seed_fraction)
    strategy = STRATEGIES[box.selection]()
    answering = answerer.open(device())
    asked, answers, seconds = np.zeros(0, np.int64), [], 0.0
    for round_, k in enumerate(sizes):
        rest = order[~np.isin(order, asked)]
        if round_ == 0 or not strategy.needs_selector:
            pick = rest[:k]
        else:
            answered = tables.soft_label_table(ids[asked], np.concatenate(answers))
            selector = _selector(job, box.selector, round_, answered.append_column("image", table["image"].take(asked)))
            with job.watch("selection"):
                view = selector_view.view(selector, images, rest, asked)
                pick = rest[strategy.choose(view, k)]
        start = time.perf_counter()
        answers.append(answering.probabilities(images[pick]))
        seconds += time.perf_counter() - start
        asked = np.concatenate([asked, pick])
    tables.write_table(tables.soft_label_table(ids[asked], np.concatenate(answers)), job.soft_labels, job.key)
    test = tables.read(job.written.test.uri, ["id", "image"])
    start = time.perf_counter()
    test_answers = answering.probabilities(tables.decode_images(test.column("image"), job.written.test.shape))
    tested = time.perf_counter() - start
    tables.write_table(tables.soft_label_table(test.column("id").to_numpy(), test_answers), job.test_probabilities,
                       job.key)
    spent = BudgetUse(box.selection, box.images(len(ids)), len(asked), len(ids), tuple(sizes),
                      f"{box.selector.name} ({box.selector.architecture})")
    return {job.soft_labels: seconds, job.test_probabilities: tested}, answering.queries or Queries(), spent


def _selector(job: _Job, selector: ModelConfig, round_: int, answered: pa.Table) -> str:
    """The checkpoint of the selector trained on the answers so far (a run of its own per round, kept in the
    mentor's folder)."""
    data = write_rows(answered, f"{job.files.path}/rounds/answered-{round_}.parquet", job.written.mentor, job.key)
    # Scored on the test set once, at its end: nobody reads a selector's learning curve
    training = dataclasses.replace(selector.training, eval_every=selector.training.epochs)
    trained = job.train(selector.model_copy(update={"name": f"{selector.name}-round{round_}", "training": training}),
                        data, tracked=False)
    return trained.uri
