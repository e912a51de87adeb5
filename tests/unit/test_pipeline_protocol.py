"""The engine line protocol: its lines parse and format both ways, and the engine (driven in
process through its ``handle``) answers every request, searches several games in one ``go``,
keeps a game's tree between its moves, and answers bad requests with one error line."""

from __future__ import annotations

import io

import pytest

from engine.network import build_network
from handlers.pipeline.engine_process import ROOT, Engine
from handlers.pipeline.protocol import (
    HELLO,
    ProtocolError,
    format_position,
    parse_bench,
    parse_bestmove,
    parse_position,
)
from tests.pipeline_support import C4, TINY, save


def test_position_lines_round_trip():
    for moves, gid in [((), None), ((3, 3, 4), None), ((0,), "p7c"), ((), "g1")]:
        line = format_position(moves, gid)
        assert parse_position(line.split()) == (gid or "0", tuple(moves))


@pytest.mark.parametrize("line, problem", [
    ("position", "startpos"), ("position game", "game id"), ("position startpos 3 4", "moves"),
    ("position startpos moves x", "action numbers"),
])
def test_bad_positions_are_refused_with_the_reason(line, problem):
    with pytest.raises(ProtocolError, match=problem):
        parse_position(line.split())


def test_answers_parse_and_errors_raise_their_text():
    assert parse_bestmove("bestmove 3") == (3, "0")
    assert parse_bestmove("bestmove 6 game p2b") == (6, "p2b")
    with pytest.raises(ProtocolError, match="illegal move 9"):
        parse_bestmove("error illegal move 9")
    with pytest.raises(ProtocolError, match="expected 'bestmove"):
        parse_bestmove("bestmove 3 4")
    bench = parse_bench("bench evals 1000 sims 2000 seconds 0.5")
    assert (bench.evals_per_s, bench.sims_per_s) == (2000.0, 4000.0)
    with pytest.raises(ProtocolError, match="evals, sims and seconds"):
        parse_bench("bench evals 10 sims x seconds 1")


class Driven:
    def __init__(self):
        self.out = io.StringIO()
        self.engine = Engine(self.out)

    def __call__(self, *lines: str) -> list[str]:
        start = self.out.tell()
        for line in lines:
            assert self.engine.handle(line)
        self.out.seek(start)
        answer = self.out.read().splitlines()
        self.out.seek(0, io.SEEK_END)
        return answer


@pytest.fixture
def engine(tmp_path):
    model = save(build_network(C4, TINY, seed=3), tmp_path / "m.pt")
    drive = Driven()
    assert drive(HELLO) == ["id name jetzero-engine", "id protocol 1", f"id root {ROOT}", "ready"]
    assert drive("game connect4", "setoption threads 1") == ["ok game connect4", "ok threads 1"]
    assert drive(f"model {model}")[0].startswith("ok model connect4-")
    return drive


def test_one_go_answers_every_staged_game_in_order_with_legal_moves(engine):
    answers = engine("position game a startpos", "position game b startpos moves 0 0 0 0 0",
                     "position startpos moves 3", "go simulations 8")
    moves = [parse_bestmove(line) for line in answers]
    assert [gid for _, gid in moves] == ["a", "b", "0"]
    for (move, _), prior in zip(moves, [(), (0, 0, 0, 0, 0), (3,)], strict=True):
        assert move in C4.from_moves(prior).legal_moves()


def test_a_games_tree_is_kept_when_its_position_follows_on(engine):
    engine("position game a startpos", "go simulations 16")
    search, slot = engine.engine.search, engine.engine.slot_of["a"]
    assert search.visit_counts(slot).sum() == 16
    engine("position game a startpos moves 3 3", "go simulations 16")
    assert engine.engine.slot_of["a"] == slot
    assert search.root_state(slot).moves == (3, 3)
    assert search.visit_counts(slot).sum() >= 16  # the reused subtree's visits plus 16 new


def test_bad_requests_get_one_error_line_and_the_engine_goes_on(engine):
    assert engine("position startpos moves 9", "go simulations 4")[0].startswith("error illegal move 9")
    assert engine("position startpos moves x", "go simulations 4") == [
        "error position: moves are action numbers, got 'x'"]
    assert engine("frobnicate") == ["error unknown request 'frobnicate'"]
    assert engine("jetzero-engine 2")[0].startswith("error this engine speaks")
    assert engine("model /nonexistent.pt")[0].startswith("error CheckpointError: cannot read checkpoint")
    assert engine("isready") == ["readyok"]
    assert parse_bestmove(engine("position startpos", "go simulations 4")[0])[0] in range(7)


def test_bench_reports_evaluations_and_simulations(engine):
    figures = parse_bench(engine("bench seconds 0.2 games 4 simulations 4")[0])
    assert figures.seconds >= 0.2 and figures.evals > 0
    assert figures.sims % 4 == 0 and figures.sims > 0


def test_requests_before_game_and_model_are_refused_and_quit_ends():
    drive = Driven()
    assert drive("position startpos", "go simulations 4") == ["error game and model first"]
    assert drive("model /x.pt") == ["error model before game"]
    assert drive.engine.handle("quit") is False
