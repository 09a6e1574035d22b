"""`plan`: which delivery of a batch may be inserted, and which repeat it. Pure."""

from __future__ import annotations

import pytest

from service.store.batch import Plan, plan

CASES = [
    pytest.param([], Plan([], []), id="empty"),
    pytest.param(["a"], Plan([0], [[]]), id="one"),
    pytest.param(["a", "b", "c"], Plan([0, 1, 2], [[], [], []]), id="all-distinct"),
    pytest.param(["a", "a", "a"], Plan([0], [[1, 2]]), id="all-copies"),
    pytest.param(["a", "b", "a", "c", "b", "a"], Plan([0, 1, 3], [[2, 5], [4], []]), id="mixed"),
]


@pytest.mark.parametrize(("keys", "expected"), CASES)
def test_plan(keys: list[str], expected: Plan) -> None:
    """The first arrival of each key is its candidate; later copies follow it, in order."""
    assert plan(keys) == expected
