"""Evaluators for tests that count the network's work."""

from __future__ import annotations

from engine.mcts import UniformEvaluator

__all__ = ["CountingEvaluator"]


class CountingEvaluator(UniformEvaluator):
    """Uniform priors and value 0, recording the size of every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def evaluate(self, states, legal=None):
        self.batches.append(len(states))
        return super().evaluate(states, legal)
