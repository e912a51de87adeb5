"""The pieces of the match over WORK without a server: the SPRT fold counts pairs in pair order
and each pair once (so a pair reported twice, or out of order, changes nothing); a code version
packs to the same bytes every time, uncommitted changes included and ignored files left out,
and unpacks once into its digest's folder, refusing bytes that fail the digest; the units the
pipeline plans carry the local match's openings and flips."""

from __future__ import annotations

import subprocess

import pytest

from engine.games import get_game
from handlers.pipeline.bundle import BundleError, pack_tree, unpack_cached
from handlers.pipeline.config import MatchGate, SprtBounds
from handlers.pipeline.match import SprtFold, plan_pairs
from handlers.pipeline.work_player import pair_event_id

GATE = MatchGate(max_pairs=10, sprt=SprtBounds(elo0=-40.0, elo1=0.0))


def test_pairs_are_counted_in_pair_order_and_once():
    seen = []
    fold = SprtFold(GATE, progress=lambda m: seen.append(m.pairs))
    assert fold.add(1, 4) and fold.counts == [0] * 5  # held: pair 0 is not in yet
    assert not fold.add(1, 0)  # a second report of pair 1 changes nothing
    assert fold.add(0, 2) and fold.counts == [0, 0, 1, 0, 1] and seen == [1, 2]
    assert not fold.add(0, 0) and fold.counts == [0, 0, 1, 0, 1]  # pair 0 again: counted already


def test_the_verdict_does_not_depend_on_the_order_pairs_finish():
    results = [0, 1, 0, 2, 0, 0, 1, 0] * 4  # a clearly broken candidate
    gate = MatchGate(max_pairs=len(results))
    forward, backward = SprtFold(gate), SprtFold(gate)
    for index, penta in enumerate(results):
        forward.add(index, penta)
    for index, penta in reversed(list(enumerate(results))):
        backward.add(index, penta)
    assert forward.outcome == backward.outcome
    assert forward.decided and forward.outcome.verdict == "reject"
    assert forward.outcome.pairs < len(results)  # stopped at the first crossing, later pairs ignored


def test_the_plan_is_the_local_matchs_and_ids_are_fixed_by_validation_and_pair():
    game = get_game("tictactoe")
    assert plan_pairs(game, 6, seed=3) == plan_pairs(game, 6, seed=3)
    assert plan_pairs(game, 6, seed=3) != plan_pairs(game, 6, seed=4)
    assert pair_event_id("v1", 2) == pair_event_id("v1", 2) != pair_event_id("v1", 3)
    assert pair_event_id("v1", 2) != pair_event_id("v2", 2)


@pytest.fixture
def checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("A = 1\n")
    (repo / ".gitignore").write_text("ignored.txt\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t",
                    "commit", "-qm", "x"], check=True)
    return repo


def test_a_working_tree_packs_deterministically_with_its_uncommitted_changes(checkout, tmp_path):
    (checkout / "pkg" / "a.py").write_text("A = 2\n")  # uncommitted change
    (checkout / "new.py").write_text("B = 1\n")  # untracked, not ignored
    (checkout / "ignored.txt").write_text("secret")
    data, digest = pack_tree(checkout)
    assert pack_tree(checkout) == (data, digest)
    folder = unpack_cached(data, digest, tmp_path / "cache")
    assert folder.name == digest
    assert (folder / "pkg" / "a.py").read_text() == "A = 2\n" and (folder / "new.py").exists()
    assert not (folder / "ignored.txt").exists()
    assert unpack_cached(b"not read again", digest, tmp_path / "cache") == folder  # once per digest
    (checkout / "new.py").write_text("B = 2\n")
    assert pack_tree(checkout)[1] != digest


def test_bytes_that_fail_their_digest_are_refused(checkout, tmp_path):
    data, digest = pack_tree(checkout)
    with pytest.raises(BundleError, match="digest"):
        unpack_cached(data + b"x", digest, tmp_path / "cache")
    assert not (tmp_path / "cache" / digest).exists()
