"""``settle_heap``: what the matchmaking server has loaded when it starts listening is frozen out
of the collector's reach (the full collections that made its move p99, bench/matchmaking.py)."""

from __future__ import annotations

import gc

from handlers.matchmaking.service import settle_heap


def test_settle_heap_freezes_what_is_loaded_and_collects_first():
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()  # cyclic garbage: collected before the freeze, not frozen with the rest
    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000  # the modules loaded in this process at least
    finally:
        gc.unfreeze()  # the frozen objects back in the oldest generation, where they can be seen
    assert gc.get_freeze_count() == 0
    assert not any(type(o) is Cycle for o in gc.get_objects())
