"""The cluster view fold and the training window's version-skew rule (no server)."""

from __future__ import annotations

from handlers.loop.config import TrainingSection
from projections.base import fold
from projections.cluster_view import ClusterViewProjection, lag, skewed
from projections.models import ModelRegistryProjection
from projections.pool import PoolProjection, shard_lag, training_window
from streams import events as ev
from streams.cluster_events import ClusterPolicySet, NodeModelRefused, NodeModelSynced, NodeRefused

R = "r"


def saved(i: int, generation: int) -> ev.CheckpointSaved:
    return ev.CheckpointSaved(id=f"c{i}", time=float(i), run=R, model_id=f"m{generation}",
                              object_name="o", digest="d", generation=generation)


def promoted(i: int, generation: int) -> ev.CandidatePromoted:
    return ev.CandidatePromoted(id=f"p{i}", time=float(i), run=R, model_id=f"m{generation}",
                                generation=generation)


def batch(i: int, generation: int, first: int) -> ev.PoolBatchSynced:
    return ev.PoolBatchSynced(id=f"b{i}", time=float(i), run=R, shard_id=f"s{i}", object_name="o",
                              digest="d", games=4, positions=100, games_first_seq=first,
                              games_last_seq=first + 3, models=[f"m{generation}"])


def folded(projection, events):
    state = projection.initial()
    for seq, event in enumerate(events, 1):
        state = projection.apply_at(state, event, seq) if hasattr(projection, "apply_at") else \
            projection.apply(state, event)
    return state


def test_the_view_lists_each_node_with_its_model_version_config_and_lag():
    view = fold(ClusterViewProjection(), [
        saved(1, 0), saved(2, 1), saved(3, 2), saved(4, 3),
        ClusterPolicySet(id="x", time=0.0, run=R, min_version="0.2.0", max_model_lag=1),
        ev.NodeJoined(id="j1", time=1.0, run=R, node="a", model_id="m0", software_version="0.2.0",
                      config_sha256="c1", session="s1", roles=["selfplay"]),
        ev.NodeJoined(id="j2", time=1.0, run=R, node="b", model_id="m0", software_version="0.2.1",
                      config_sha256="c1", session="s2"),
        promoted(5, 1), promoted(6, 2), promoted(7, 3),
        NodeModelSynced(id="y1", time=2.0, run=R, node="a", model_id="m3", generation=3),
        NodeModelSynced(id="y2", time=2.0, run=R, node="b", model_id="m1", generation=1),
        NodeModelRefused(id="z", time=3.0, run=R, node="b", model_id="m3", reason="digest"),
        NodeRefused(id="q", time=4.0, run=R, node="c", software_version="0.1.0", min_version="0.2.0",
                    reason="below 0.2.0"),
    ])
    a, b, c = view.nodes["a"], view.nodes["b"], view.nodes["c"]
    assert view.champion == "m3" and view.champion_generation == 3
    assert (a.model_id, lag(view, a), a.software_version, a.config_sha256) == ("m3", 0, "0.2.0", "c1")
    assert (b.model_id, lag(view, b), b.refused_model) == ("m1", 2, "m3")
    assert [n.node for n in skewed(view)] == ["b"]  # 2 generations behind, the policy allows 1
    assert c.refusals == 1 and c.refused_join == "below 0.2.0" and not c.session
    gone = ClusterViewProjection().apply(view, ev.NodeLeft(id="l", time=5.0, run=R, node="b"))
    assert gone.nodes["b"].left and skewed(gone) == []
    # a rollback makes the champion older: nobody is behind it
    back = ClusterViewProjection().apply(view, ev.ChampionRolledBack(
        id="rb", time=6.0, run=R, to_promotion_seq=5, model_id="m1"))
    assert back.champion_generation == 1 and lag(back, back.nodes["b"]) == 0


def test_games_of_a_model_past_max_model_lag_stay_in_the_pool_but_out_of_the_window():
    # m0 plays on while m1, m2, m3 are promoted: its later shards lag 2 and 3 generations
    log = [saved(1, 0), batch(2, 0, 1), saved(3, 1), promoted(4, 1), batch(5, 1, 5), batch(6, 0, 9),
           saved(7, 2), promoted(8, 2), saved(9, 3), promoted(10, 3), batch(11, 0, 13), batch(12, 3, 17)]
    pool = folded(PoolProjection(), log)
    registry = folded(ModelRegistryProjection(), log)
    lags = {s.shard_id: shard_lag(registry, s) for s in pool.shards}
    assert lags == {"s2": 0, "s5": 0, "s6": 1, "s11": 3, "s12": 0}
    config = TrainingSection(window="fixed", window_positions=10_000)
    everything = {s.shard_id for s in training_window(pool, registry, config)}
    assert everything == set(lags)  # no policy: no limit
    policy = ClusterPolicySet(id="x", time=0.0, run=R, max_model_lag=1)
    limited = PoolProjection().apply_at(pool, policy, 13)
    window = {s.shard_id for s in training_window(limited, registry, config)}
    assert window == {"s2", "s5", "s6", "s12"}  # s11 (3 behind) is left out
    assert limited.shard("s11") is not None and limited.positions == pool.positions  # recorded, kept
    strict = PoolProjection().apply_at(pool, ClusterPolicySet(id="y", time=0.0, run=R, max_model_lag=0), 14)
    assert {s.shard_id for s in training_window(strict, registry, config)} == {"s2", "s5", "s12"}
