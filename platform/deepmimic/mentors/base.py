"""What a mentor kind is: its `mentor:` section, what it is made of, and how it is made.

A kind is a frozen pydantic model (its section of the experiment file) whose methods say what determines it,
which other mentors it needs first, which networks it trains and which black boxes it asks, and how it is
made and labels a separate pool. The means (training a model, asking a model or a black box about images,
making a needed mentor) come from the stage that runs it, through `MentorJob` and `PoolJob`
(`distributed/mentor_stage.py`, `distributed/student_stage.py`): a kind imports no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from ..core.answers import Answerer
from ..core.black_box import Queries
from ..core.fixmatch import FixMatch
from ..core.results import BudgetUse, MentorResult
from ..schema import ModelConfig, Name, Strict

if TYPE_CHECKING:
    from ..distributed.data import SplitTables, TableInfo
    from ..distributed.mentor_folder import MentorFolder
    from ..distributed.mentor_stage import MentorOutcome
    from ..distributed.train import Trained
    from .black_box import BlackBoxConfig


@dataclass(frozen=True)
class Made:
    """A mentor made: its result and its predicted class for each test image, in the test table's order."""

    result: MentorResult
    test_predictions: np.ndarray


class MentorJob(Protocol):
    """What the mentor stage gives a kind to make its mentor with (the same data, split and seed for all)."""

    key: str                  # the mentor's cache key (its tables' producer)
    files: MentorFolder       # its folder: where a kind writes tables of its own
    written: SplitTables      # the labelled table (id, image, label), the paper's pool (id, image), the test set
    soft_labels: str          # the table of its answers for the pool (and out-of-domain images)
    test_probabilities: str   # the table of its answers for the test set

    def train(self, model: ModelConfig, table: TableInfo | None = None, fixmatch: FixMatch | None = None,
              target: str = "soft_label") -> Trained:
        """`model` trained on the labelled table's true classes, or on `table`'s `target` column (`soft_label`:
        a mentor that learns from another's answers; `label`: true classes), with the pool's images too under
        `fixmatch` (`core/fixmatch.py`); reported live where the sweep tracks it."""

    def answer(self, answerer: Answerer) -> tuple[dict[str, float], Queries | None]:
        """Its answers for the pool and the test set written to the tables above: the seconds each took, and the
        queries a black box answered."""

    def within_budget(self, answerer: Answerer, box: BlackBoxConfig) -> tuple[dict[str, float], Queries,
                                                                              BudgetUse]:
        """As `answer`, for the pool images `box`'s budget pays for, chosen in its rounds by its strategy
        (`distributed/query_rounds.py`); what was spent."""

    def answers(self, key: str) -> str:
        """The answer cache's folder for a black box's answers (`core/answer_cache.py`), shared by the cache."""

    def needed(self, mentor: Mentor) -> MentorOutcome:
        """A mentor this one needs (`Mentor.needs`), made now or found made."""

    def scored(self, name: str, description: str, seconds: float, queries: Queries | None,
               budget: BudgetUse | None = None) -> Made:
        """The mentor whose test probabilities are written, scored on the test set's true labels."""


class PoolJob(Protocol):
    """What labelling a separate pool gives a kind: where its answers go, and the means to make them."""

    key: str                  # the mentor's cache key (its tables' producer)
    uri: str                  # the pool's soft-label table this mentor writes
    outcome: MentorOutcome    # the mentor, made

    def label(self, answerer: Answerer) -> None:
        """Every pool image answered by Ray Data batch inference into `uri`."""

    def of(self, mentor: Mentor) -> str:
        """A needed mentor's soft labels of the same pool, made if missing."""

    def answers(self, key: str) -> str:
        """As `MentorJob.answers`."""


class Mentor(Strict):
    """A mentor's section of the experiment file; each subclass is a kind (the registry in `__init__.py`)."""

    name: Name
    marker: ClassVar[str | None] = None   # the key whose presence in a `mentor:` mapping says this kind
    in_trial: ClassVar[bool] = True       # made in a Tune trial holding a worker's resources; False: in the
    #                                       driver, cheaply, from the mentors it needs
    member: ClassVar[bool] = True         # may be one of an ensemble's members
    no_separate_pool: ClassVar[str] = ""  # why it cannot label a separate pool (`dataset.unlabeled`); "": it can
    sees_pool_labels: ClassVar[bool] = False  # learns from the pool's true labels: a reference (the ceiling)
    no_network: ClassVar[str] = ""        # why a student cannot ask its network each step (a `teacher_online`
    #                                       method); "": it can

    @classmethod
    def with_students(cls, raw: dict[str, Any], students: list[Any]) -> dict[str, Any]:
        """Its raw section with what it takes from the experiment's raw `students` where it names none."""
        return raw

    @classmethod
    def inherit(cls, raw: dict[str, Any], merged: Any) -> dict[str, Any]:
        """Its raw section with the experiment's `training:` defaults given to the networks it trains (`merged`
        does it for one model's mapping)."""
        return raw

    @property
    def budgeted(self) -> bool:
        """Whether it answers only the pool images a query budget pays for (the students learn from those)."""
        return False

    def identity(self) -> Any:
        """What of it determines its cache key (with the data, split, seed and out-of-domain source)."""
        return self.model_dump()

    def needs(self) -> list[Mentor]:
        """Mentors made before it, on the same data, split and seed (an ensemble's members)."""
        return []

    def models(self) -> list[tuple[str, ModelConfig]]:
        """The networks it trains, each with its place in the section (`""` for the section itself)."""
        return []

    def check(self, shape: tuple[int, int, int], classes: int) -> None:
        """A UserError where the kind's own rule does not hold for such images (its networks are checked apart)."""

    def black_boxes(self) -> list[BlackBoxConfig]:
        """The black boxes it asks."""
        return []

    def params(self) -> dict[str, Any]:
        """Its settings as MLflow params, beyond a trained network's (`run_names.model_params`)."""
        return {}

    def make(self, job: MentorJob) -> Made:
        """Make the mentor: its answers for the pool and the test set, its result."""
        raise NotImplementedError

    def label_pool(self, job: PoolJob) -> None:
        """Answer every image of a separate pool into `job.uri`."""
        raise NotImplementedError
