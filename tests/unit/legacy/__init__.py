"""Frozen copies of projection folds as they were before they became linear in the events
(``*_v1``): the unit tests fold the same events through both and compare what readers see;
and of the search before its node pool held positions as arrays (``mcts_v1``: same visit counts)."""
