"""The ratings fold is linear in the events: persistent maps, the ladder fitted once when read,
the same figures as ``compute_ladder``, and the sparse ladder fit agreeing with the dense one."""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import projections.ratings as ratings_module
from engine.ladder import DENSE_MAX, bradley_terry, fit_ladder
from projections import persistent
from projections.base import fold
from projections.ratings import (
    MatchResult,
    Ratings,
    RatingsProjection,
    compute_ladder,
    games_from_pentanomial,
)
from streams import events as ev

RP = RatingsProjection()
LABELS = ["random", "pure_mcts", "m0", "m1", "m2", "m3", "m4", "m5"]


def spec(label: str) -> ev.PlayerSpec:
    if label == "random":
        return ev.PlayerSpec(kind="random")
    if label == "pure_mcts":
        return ev.PlayerSpec(kind="pure_mcts", simulations=50)
    return ev.PlayerSpec(kind="model", model_id=label, simulations=10)


def scheduled(match_id: str, a: str, b: str) -> ev.MatchScheduled:
    return ev.MatchScheduled(id=f"s-{match_id}", time=0.0, run="r", match_id=match_id,
                             candidate=spec(a), opponent=spec(b), max_pairs=50, sprt=ev.SprtParams())


def completed(match_id: str, counts: list[int]) -> ev.MatchCompleted:
    return ev.MatchCompleted(id=f"c-{match_id}", time=1.0, run="r", match_id=match_id,
                             verdict="inconclusive", pairs=sum(counts), pentanomial=counts, elo=0.0,
                             elo_ci95=0.0, llr=0.0, lower=-1.0, upper=1.0)


@st.composite
def ratings_logs(draw):
    """Matches scheduled and completed in any order, with repeats, strays and bad counts."""
    log, ids = [], []
    for _ in range(draw(st.integers(0, 40))):
        roll = draw(st.integers(0, 9))
        if roll < 4 or not ids:
            a, b = draw(st.sampled_from(LABELS)), draw(st.sampled_from(LABELS))
            match_id = f"x{draw(st.integers(0, 14))}"
            ids.append(match_id)
            log.append(scheduled(match_id, a, b))
        else:
            counts = draw(st.lists(st.integers(0 if roll < 9 else -1, 6), min_size=5, max_size=5))
            log.append(completed(draw(st.sampled_from([*ids, "stray"])), counts))
    return log


def expected_results(log) -> list[MatchResult]:
    """The completed matches as the module docstring defines them, worked out apart from the fold."""
    labels: dict[str, tuple[str, str]] = {}
    done: dict[str, MatchResult] = {}
    for e in log:
        if isinstance(e, ev.MatchScheduled):
            if e.candidate.label != e.opponent.label:
                labels.setdefault(e.match_id, (e.candidate.label, e.opponent.label))
        elif e.match_id in labels and e.match_id not in done and min(e.pentanomial) >= 0:
            wins, draws, losses = games_from_pentanomial(e.pentanomial)
            a, b = labels[e.match_id]
            done[e.match_id] = MatchResult(match_id=e.match_id, a=a, b=b, wins_a=wins, draws=draws,
                                           wins_b=losses)
    return list(done.values())


@settings(max_examples=60, deadline=None)
@given(ratings_logs())
def test_the_folded_ladder_is_what_compute_ladder_gives_on_the_same_games(log):
    s = fold(RP, log)
    results = expected_results(log)
    assert list(s.results.values()) == results
    anchor, ladder, unrated = compute_ladder(results)
    assert (s.anchor, s.ladder, s.unrated) == (anchor, ladder, unrated)
    assert all(s.rating(name) == rating for name, rating in ladder.items())
    assert s.rating("nobody") is None


@settings(max_examples=40, deadline=None)
@given(ratings_logs(), st.data())
def test_ratings_snapshot_plus_tail_equals_full_replay(log, data):
    cut = data.draw(st.integers(0, len(log)))
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(fold(RP, log[:cut])), type=Ratings)
    whole = fold(RP, log)
    assert fold(RP, log[cut:], restored) == whole
    assert fold(RP, log[cut:], restored).ladder == whole.ladder


def test_the_fold_fits_no_ladder_and_a_read_fits_it_once(monkeypatch):
    fits = []
    real = ratings_module.fit_ladder
    monkeypatch.setattr(ratings_module, "fit_ladder", lambda *a, **k: fits.append(1) or real(*a, **k))
    log = []
    for i in range(300):
        log += [scheduled(f"m{i}", f"m{i}", "random"), completed(f"m{i}", [1, 2, 3, 2, 1 + i % 3])]
    s = fold(RP, log)
    assert fits == []  # before: one refit of every game so far per completed match
    assert s.rating("m7") == s.ladder["m7"] and s.anchor == "random:0" and len(s.ranked()) == 301
    assert fits == [1]


def test_a_snapshot_of_the_old_layout_is_refused_not_read_as_empty():
    old = {"players": {}, "results": {}, "ladder": {}, "anchor": "", "unrated": []}
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=Ratings)


@given(st.lists(st.tuples(st.integers(0, 30), st.integers()), max_size=200))
def test_a_persistent_map_is_a_dict_whose_old_versions_stay(puts):
    versions, model = [()], [{}]
    for key, value in puts:
        versions.append(persistent.put(versions[-1], key, value))
        model.append({**model[-1], key: value})
    for levels, expected in zip(versions, model, strict=True):
        assert persistent.merged(levels) == expected and list(persistent.merged(levels)) == list(expected)
        assert all(persistent.get(levels, k) == v for k, v in expected.items())
        assert all(persistent.contains(levels, k) for k in expected)
        assert len(levels) <= math.log2(len(expected) + 1) + 1
    assert persistent.get(versions[-1], -1, "absent") == "absent"


def test_a_persistent_put_copies_logarithmically_many_entries():
    levels: tuple = ()
    copied = 0
    for key in range(4096):
        levels = persistent.put(levels, key, key)
        copied += sum(len(level) for level in levels if key in level)
    assert copied <= 4096 * (math.log2(4096) + 2)  # a dict copy per put would be ~8.4 million


def _lineage_results(players: int, seed: int) -> list[tuple[str, str, int, int, int]]:
    rng, champion, rows = random.Random(seed), "m0", []
    for k in range(1, players):
        for opponent in (champion, "random:0", "pure_mcts:200"):
            rows.append((f"m{k}", opponent, rng.randint(0, 9), rng.randint(0, 5), rng.randint(1, 9)))
        champion = f"m{k}" if rng.random() < 0.3 else champion
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_sparse_ladder_fit_agrees_with_the_dense_one(seed):
    rows = _lineage_results(120, seed)
    dense = bradley_terry(rows, "random:0")
    sparse = fit_ladder(rows, "random:0", dense_max=0)
    for name, rating in dense.items():
        got = sparse.rating(name)
        assert got.games == rating.games
        assert got.elo == pytest.approx(rating.elo, abs=1e-6)
        assert got.ci95 == pytest.approx(rating.ci95, abs=1e-6)


def test_a_ladder_of_thousands_reads_one_rating_without_a_dense_table():
    rows = _lineage_results(6 * DENSE_MAX, 4)
    ladder = fit_ladder(rows, "random:0")
    r = ladder.rating("m2000")
    assert r is not None and math.isfinite(r.elo) and 0 < r.ci95 < 1000 and r.games > 0
