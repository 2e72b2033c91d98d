"""Several mentors (trained or black boxes) whose soft labels are combined."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..core import tables
from ..core.soft_labels import combine
from ..schema import ModelConfig
from .base import Made, Mentor, MentorJob, PoolJob
from .black_box import BlackBoxConfig


class EnsembleMentor(Mentor):
    """`members` (each a mentor of its own, made once beside it) combined by `rule`: the `mean` of the
    probabilities, their normalised `geometric` mean, or a one-hot majority `vote`."""

    marker = "members"
    in_trial = False
    member = False
    no_network = "an ensemble is its members' networks, not one"
    members: list[MemberConfig] = Field(min_length=2)  # noqa: F821 (the registry's union, resolved there)
    rule: Literal["mean", "geometric", "vote"] = "mean"

    @field_validator("members", mode="before")
    @classmethod
    def _members_may_be(cls, members: Any) -> Any:
        from . import KINDS, kind_of  # the registry imports this module

        for i, member in enumerate(members if isinstance(members, list) else []):
            if not kind_of(member).member:
                kind = next(name for name, k in KINDS.items() if k is kind_of(member))
                raise ValueError(f"members.{i}: an ensemble's member cannot be of the kind {kind!r}")
        return members

    @field_validator("members")
    @classmethod
    def _distinct(cls, members: list[Any]) -> list[Any]:
        budgeted = [i for i, m in enumerate(members) if m.budgeted]
        if budgeted:
            raise ValueError(f"members.{budgeted[0]}: a budgeted black box answers part of the pool; an ensemble "
                             "combines answers for all of it")
        if len({m.model_dump_json() for m in members}) < len(members):
            raise ValueError("ensemble members must differ (architecture, seed or black box)")
        names = [m.name for m in members]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ensemble member names must be unique, repeated: {', '.join(dup)}")
        return members

    @classmethod
    def inherit(cls, raw: dict[str, Any], merged: Any) -> dict[str, Any]:
        from . import kind_of  # the registry imports this module

        members = raw.get("members")
        if not isinstance(members, list):
            return raw
        return {**raw, "members": [kind_of(m).inherit(m, merged) if isinstance(m, dict) else m for m in members]}

    def identity(self) -> Any:
        return self.model_dump() | {"members": [m.identity() for m in self.members]}

    def needs(self) -> list[Mentor]:
        return list(self.members)

    def models(self) -> list[tuple[str, ModelConfig]]:
        return [(f"members.{i}" + (f".{where}" if where else ""), model)
                for i, member in enumerate(self.members) for where, model in member.models()]

    def black_boxes(self) -> list[BlackBoxConfig]:
        return [box for member in self.members for box in member.black_boxes()]

    def params(self) -> dict[str, Any]:
        return {"ensemble.rule": self.rule, "ensemble.members": ",".join(m.name for m in self.members)}

    def make(self, job: MentorJob) -> Made:
        members = [job.needed(m) for m in self.members]
        if members[0].soft_labelled:  # else a separate pool, labelled later, and no out-of-domain images
            combine_tables([m.files.soft_labels for m in members], self.rule, job.soft_labels, job.key)
        combine_tables([m.files.test_probabilities for m in members], self.rule, job.test_probabilities, job.key)
        asked = [m.result.queries for m in members if m.result.queries]
        description = f"ensemble ({self.rule}): " + " + ".join(m.result.name for m in members)
        # An ensemble asks every member: its test-set time is theirs summed.
        seconds = sum(m.result.inference_time_s for m in members)
        return job.scored(self.name, description, seconds, sum(asked[1:], asked[0]) if asked else None)

    def label_pool(self, job: PoolJob) -> None:
        combine_tables([job.of(m) for m in self.members], self.rule, job.uri, job.key)


def combine_tables(members: list[str], rule: str, uri: str, producer: str) -> None:
    """One soft-label table at `uri` from the members' tables of the same images, combined by `rule`."""
    answers = [tables.read(member).sort_by("id") for member in members]
    ids = answers[0].column("id")
    if any(not a.column("id").equals(ids) for a in answers[1:]):
        raise RuntimeError(f"{uri}: ensemble members labelled different images")
    combined = combine([tables.decode_soft_labels(a.column("soft_label")) for a in answers], rule)
    tables.write_table(tables.soft_label_table(ids.to_numpy(), combined), uri, producer)

