"""The synthetic run of ``bench/projection_replay.py``: its records decode, and every projection of
the registry folds them into the run they describe (a champion with a rating, matches
completed, shards synced), so the benchmark measures folds that do their real work."""

from __future__ import annotations

from bench.projection_replay import RUN, SyntheticRun, fold_in_memory, synthetic_log
from projections import PROJECTIONS
from streams import codec, names


def test_the_synthetic_run_decodes_and_every_projection_folds_it():
    events = synthetic_log(2_000)
    assert len(events) == 2_000 and len({e.id for e in events}) == 2_000
    assert all(codec.decode(codec.encode(e)) == e for e in events)
    kinds = {e.tag for e in events}
    assert {"game.finished", "pool.batch_synced", "training.started", "checkpoint.saved",
            "match.scheduled", "match.pair_played", "match.completed", "candidate.promoted",
            "candidate.rejected"} <= kinds
    pairs = sum(e.tag == "match.pair_played" for e in events)
    assert pairs > 10 * sum(e.tag == "match.completed" for e in events)  # many pairs per match

    got = fold_in_memory(events)
    assert set(got["folds"]) == set(PROJECTIONS)
    states = got["states"]
    champion = states["model_registry"].champion
    assert champion is not None and champion.model_id == got["champion"]
    assert states["ratings"].rating(champion.model_id) is not None and got["ladder_players"] > 5
    assert sum(m.completed for m in states["matches"].matches.values()) > 10
    assert states["game_tally"].games == sum(e.tag == "game.finished" for e in events)
    assert all(f["records"] > 0 for f in got["folds"].values())


def test_rollbacks_name_the_sequence_of_a_real_promotion():
    run = SyntheticRun(RUN, seed=3)
    events = run.take(60_000)
    seq_of = {}
    position = 0
    for e in events:
        if e.STREAM == names.EVENTS:
            position += 1
            seq_of[e.id] = position
    promotions = {seq_of[e.id]: e.model_id for e in events if e.tag == "candidate.promoted"}
    rollbacks = [e for e in events if e.tag == "champion.rolled_back"]
    assert rollbacks and all(promotions.get(r.to_promotion_seq) == r.model_id for r in rollbacks)
