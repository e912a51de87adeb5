"""Matches and ratings read models: pairs counted once, completion on SPRT or cap, the ladder."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.rating import bradley_terry, elo_from_pentanomial, sprt
from projections.base import fold
from projections.matches import Matches, MatchesProjection, match_decision
from projections.ratings import (
    ANCHOR,
    MatchResult,
    Ratings,
    RatingsProjection,
    compute_ladder,
    games_from_pentanomial,
)
from streams import events as ev

MP = MatchesProjection()
RP = RatingsProjection()


def model(name: str) -> ev.PlayerSpec:
    return ev.PlayerSpec(kind="model", model_id=name, simulations=10)


def scheduled(
    match_id: str = "g",
    max_pairs: int = 200,
    a: ev.PlayerSpec | None = None,
    b: ev.PlayerSpec | None = None,
    **sprt: float,
) -> ev.MatchScheduled:
    return ev.MatchScheduled(
        id=f"s-{match_id}",
        time=0.0,
        run="r",
        match_id=match_id,
        candidate=a or model("cand"),
        opponent=b or model("champ"),
        max_pairs=max_pairs,
        sprt=ev.SprtParams(**sprt),
    )


def pair(index: int, category: int, match_id: str = "g") -> ev.MatchPairPlayed:
    return ev.MatchPairPlayed(
        id=f"p-{match_id}-{index}-{category}",
        time=float(index),
        run="r",
        match_id=match_id,
        unit_id="u",
        pair_index=index,
        opening=[],
        pentanomial=category,
    )


def completed(decision: dict, at: float = 1.0) -> ev.MatchCompleted:
    return ev.MatchCompleted(id=f"c-{decision['match_id']}", time=at, run="r", **decision)


def test_a_pair_reported_twice_is_counted_once():
    s = fold(MP, [scheduled(), pair(0, 4), pair(1, 2), pair(0, 4), pair(0, 0)])
    m = s.get("g")
    assert m.pentanomial == (0, 0, 1, 0, 1) and m.pairs == 2
    assert m.pairs_counted == {0, 1}


def test_figures_are_the_engine_rating_of_the_counts():
    cats = [4, 3, 2, 2, 1, 0, 3, 4, 2]
    s = fold(MP, [scheduled(elo0=0.0, elo1=10.0)] + [pair(i, c) for i, c in enumerate(cats)])
    m = s.get("g")
    counts = [cats.count(k) for k in range(5)]
    est = elo_from_pentanomial(counts)
    test = sprt(counts, 0.0, 10.0)
    assert (m.elo, m.ci95, m.los) == (est.elo, est.ci95, est.los)
    assert (m.llr, m.lower, m.upper, m.sprt_verdict) == (test.llr, test.lower, test.upper, test.verdict)


@pytest.mark.parametrize(
    "pattern, verdict", [([4, 3, 2, 2, 4, 1, 3, 2], "accept"), ([0, 1, 2, 1, 0, 3, 2, 1], "reject")]
)
def test_a_match_completes_when_its_sprt_decides(pattern, verdict):
    s = fold(MP, [scheduled(max_pairs=400)])
    decision, i = None, 0
    while decision is None:
        s = MP.apply(s, pair(i, pattern[i % len(pattern)]))
        decision = match_decision(s.get("g"))
        i += 1
    assert decision["verdict"] == verdict and decision["pairs"] == i < 400
    bound = decision["upper"] if verdict == "accept" else decision["lower"]
    assert abs(decision["llr"]) >= abs(bound)
    assert sum(decision["pentanomial"]) == i
    # completing freezes the figures: later pairs are tallied apart, a repeat changes nothing
    done = MP.apply(s, completed(decision))
    m = done.get("g")
    assert m.completed and m.verdict == verdict and match_decision(m) is None
    later = MP.apply(MP.apply(done, pair(i, 4)), completed({**decision, "verdict": "reject"}))
    assert later.get("g").pentanomial == m.pentanomial and later.get("g").late_pairs == 1
    assert later.get("g").verdict == verdict


def test_a_match_completes_inconclusive_at_its_cap():
    s = fold(MP, [scheduled(max_pairs=6)] + [pair(i, 2 + (i % 2)) for i in range(5)])
    assert match_decision(s.get("g")) is None
    s = MP.apply(s, pair(5, 1))
    decision = match_decision(s.get("g"))
    assert decision["verdict"] == "inconclusive" and decision["pairs"] == 6
    assert "max_pairs 6" in decision["reason"]
    s = MP.apply(s, pair(6, 4))  # outside the match: not counted
    assert s.get("g").pairs == 6 and s.get("g").ignored_pairs == 1


def test_pairs_of_unknown_matches_and_other_events_change_nothing():
    s = fold(MP, [scheduled()])
    assert MP.apply(s, pair(0, 4, match_id="nope")) is s
    assert MP.apply(s, ev.NodeJoined(id="n", time=0.0, run="r", node="x")) is s


@st.composite
def match_logs(draw):
    out = [scheduled("a", max_pairs=30), scheduled("b", max_pairs=30)]
    for _ in range(draw(st.integers(0, 50))):
        mid = draw(st.sampled_from(["a", "b"]))
        if draw(st.integers(0, 20)) == 0:
            out.append(
                ev.MatchCompleted(
                    id="c",
                    time=0.0,
                    run="r",
                    match_id=mid,
                    verdict="inconclusive",
                    pairs=0,
                    pentanomial=[0, 0, 0, 0, 0],
                    elo=0.0,
                    elo_ci95=0.0,
                    llr=0.0,
                    lower=-1.0,
                    upper=1.0,
                )
            )
        else:
            out.append(pair(draw(st.integers(0, 31)), draw(st.integers(0, 4)), mid))
    return out


@settings(max_examples=40, deadline=None)
@given(match_logs(), st.data())
def test_matches_snapshot_plus_tail_equals_full_replay(log, data):
    cut = data.draw(st.integers(0, len(log)))
    snapshot = fold(MP, log[:cut])
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=Matches)
    assert fold(MP, log[cut:], restored) == fold(MP, log)


@given(st.lists(st.integers(0, 50), min_size=5, max_size=5))
def test_pairs_become_games_with_the_same_points(counts):
    wins, draws, losses = games_from_pentanomial(counts)
    assert wins + draws + losses == 2 * sum(counts)
    assert 2 * wins + draws == sum(k * c for k, c in enumerate(counts))  # half-points


def _completed_match(match_id, a, b, counts):
    decision = dict(
        match_id=match_id,
        verdict="inconclusive",
        pairs=sum(counts),
        pentanomial=counts,
        elo=0.0,
        elo_ci95=0.0,
        llr=0.0,
        lower=-1.0,
        upper=1.0,
    )
    return [scheduled(match_id, a=a, b=b), completed(decision)]


def test_the_ladder_is_anchored_on_random_with_intervals():
    random, mcts = ev.PlayerSpec(kind="random"), ev.PlayerSpec(kind="pure_mcts", simulations=50)
    log = (
        _completed_match("m1-random", model("m1"), random, [0, 1, 3, 6, 10])
        + _completed_match("m1-mcts", model("m1"), mcts, [2, 4, 8, 4, 2])
        + _completed_match("m2-m1", model("m2"), model("m1"), [1, 3, 6, 6, 4])
        + _completed_match("m2-m1", model("m2"), model("m1"), [9, 9, 9, 9, 9])
    )  # repeat
    s = fold(RP, log)
    assert s.anchor == ANCHOR and s.ladder[ANCHOR].elo == 0.0 and s.unrated == ()
    assert [name for name, _ in s.ranked()] == ["m2", "m1", "pure_mcts:50", "random:0"]
    rows = [(r.a, r.b, r.wins_a, r.draws, r.wins_b) for r in s.results.values()]
    assert s.ladder == bradley_terry(rows, ANCHOR)
    assert all(r.ci95 > 0 and math.isfinite(r.ci95) for n, r in s.ladder.items() if n != ANCHOR)
    assert s.ladder["m2"].games == 2 * 20
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(s), type=Ratings)
    assert restored == s


def test_players_with_no_chain_to_the_anchor_are_unrated():
    results = [
        MatchResult(match_id="1", a="m1", b="m0", wins_a=5, draws=3, wins_b=2),
        MatchResult(match_id="2", a="x", b="y", wins_a=1, draws=0, wins_b=1),
    ]
    anchor, ladder, unrated = compute_ladder(results)
    assert anchor == "m0" and set(ladder) == {"m0", "m1"} and unrated == ("x", "y")
    assert ladder["m1"].elo > 0
    assert compute_ladder([]) == ("", {}, ())
