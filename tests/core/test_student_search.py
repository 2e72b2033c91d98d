"""The search's pure pieces: students from the grammar, their latency, the Pareto front and the answer."""

from __future__ import annotations

import pytest

from deepmimic.core.architectures import ModelSpec
from deepmimic.core.student_search import Candidate, architecture, latency_ms, pareto_front, winner


def candidate(trial: str, params: int, score: float, stopped: bool = False) -> Candidate:
    return Candidate(trial, "c-mp-fc", 8, params, params / 1000, params / 100, 3 if stopped else 9, score, stopped)


@pytest.mark.parametrize("draw, expected", [
    ((1, 1, 1, False), "c-mp-fc2"),                          # the paper's shallow student
    ((2, 1, 1, False), "c-mp-c-mp-fc2"),                     # the paper's mentor
    ((2, 2, 0, True), "(c-bn)2-mp-(c-bn)2-mp-fc"),
    ((3, 1, 0, True), "c-bn-mp-c-bn-mp-c-bn-mp-fc"),
])
def test_a_draw_is_written_in_the_papers_notation_and_builds(draw, expected):
    assert architecture(*draw) == expected
    ModelSpec(expected, width=4).check((1, 8, 8), 10)


def test_latency_is_measured_per_batch():
    model = ModelSpec("c-mp-fc", width=4).build((1, 8, 8), 10)
    one, many = latency_ms(model, (1, 8, 8), 1, repeats=5), latency_ms(model, (1, 8, 8), 256, repeats=5)
    assert 0 < one < many


def test_the_front_holds_only_students_no_other_beats_on_size_and_score():
    a, b, c, d = candidate("a", 100, 0.90), candidate("b", 200, 0.85), candidate("c", 300, 0.99), \
        candidate("d", 50, 0.20, stopped=True)
    assert [x.trial for x in pareto_front([a, b, c, d], "params")] == ["a", "c"]  # b is beaten; d stopped early


def test_the_answer_is_the_smallest_reaching_the_target_else_the_best_found():
    small, big, best = candidate("small", 100, 0.991), candidate("big", 900, 0.995), candidate("x", 500, 0.98)
    assert winner([big, small, best], "params", 0.99) == (small, True)
    assert winner([best, candidate("y", 50, 0.5)], "params", 0.99) == (best, False)
    fast = Candidate("fast", "c-mp-fc", 8, 5000, 0.01, 1.0, 9, 0.995, False)
    assert winner([small, fast], "latency", 0.99)[0] == fast
