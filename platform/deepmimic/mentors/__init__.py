"""The mentor-kind registry: what a `mentor:` section can be.

A kind is one module here (a `base.Mentor` subclass: its section of the experiment file and its behaviour)
and one line in `KINDS`. The config validates `mentor:` into the kind its mapping says (the first kind whose
`marker` key it holds, else the trained one); the stages call the kind's methods and never ask which it is.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from .base import Made, Mentor, MentorJob, PoolJob
from .black_box import BlackBoxConfig, BlackBoxMentor
from .ceiling import CeilingMentor
from .ensemble import EnsembleMentor
from .fixmatch import FixMatchMentor
from .generation import GenerationMentor
from .trained import TrainedMentor

KINDS: dict[str, type[Mentor]] = {
    "trained": TrainedMentor,
    "black box": BlackBoxMentor,
    "ensemble": EnsembleMentor,
    "generation": GenerationMentor,
    "fixmatch": FixMatchMentor,
    "ceiling": CeilingMentor,
}
DEFAULT = "trained"  # a mapping holding no kind's marker


def kind_of(raw: Any) -> type[Mentor]:
    """The kind of a raw `mentor:` mapping, or of a validated section."""
    if isinstance(raw, Mentor):
        return type(raw)
    markers = [kind for kind in KINDS.values() if kind.marker is not None and isinstance(raw, dict)
               and kind.marker in raw]
    return markers[0] if markers else KINDS[DEFAULT]


def _union(kinds: dict[str, type[Mentor]]) -> Any:
    """Pydantic's union of `kinds`, told apart by `kind_of` (tags in <…>: `config._describe` leaves them out)."""
    tags = {kind: f"<{name}>" for name, kind in kinds.items()}
    return Annotated[Union[tuple(Annotated[kind, Tag(tag)] for kind, tag in tags.items())],  # noqa: UP007
                     Discriminator(lambda raw: tags.get(kind_of(raw), tags[KINDS[DEFAULT]]))]


MentorConfig = _union(KINDS)
MemberConfig = _union({name: kind for name, kind in KINDS.items() if kind.member})  # what an ensemble combines
# Each refers to the other's union (a generation may be a member; an ensemble, a teacher): both names for both.
_NAMES = {"MemberConfig": MemberConfig, "TeacherConfig": MentorConfig}
GenerationMentor.model_rebuild(_types_namespace=_NAMES)
EnsembleMentor.model_rebuild(_types_namespace=_NAMES)

__all__ = ["KINDS", "BlackBoxConfig", "Made", "Mentor", "MentorConfig", "MentorJob", "PoolJob", "kind_of"]
