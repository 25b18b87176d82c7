"""Shared by the unit tests of the edge's pure modules (core, history)."""

import pytest


class Clock:
    """A monotonic clock that only moves when a test moves it."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()
