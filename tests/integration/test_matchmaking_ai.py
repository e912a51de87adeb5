"""The AI players against a real nats-server: the champion published through
``publish_checkpoint`` plays, concurrent searches share network calls, the levels follow a
promotion, the event loop stays free, a short search does not wait for a long one, a killed
search process fails its moves at once and is replaced; and a small real calibration on
tic-tac-toe."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import msgspec
import pytest

from engine.checkpoint import make_meta, save_checkpoint
from engine.games import get_game
from engine.network import build_network, default_network_config, set_torch_threads
from handlers.loop.checkpoints import publish_checkpoint
from handlers.matchmaking.ai import AiPlayers, AiSettings, AiUnavailable
from handlers.matchmaking.calibrate import CalibrationSettings, run_calibration
from handlers.matchmaking.config import load_p2p_config
from handlers.matchmaking.levels import DEFAULT_LEVELS, SEARCH_CHUNK, LevelSettings
from streams import events as ev
from streams import names
from streams.matchmaking_events import P2pLevelsCalibrated
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "mm-ai"
TTT = get_game("tictactoe")
# small searches: the test is about batching and plumbing, not strength
LEVELS = [
    lv if lv.kind == "raw_policy" else msgspec.structs.replace(lv, simulations=4 * (lv.number - 3))
    for lv in DEFAULT_LEVELS
]


async def publish(store, model_id: str, generation: int, seed: int) -> None:
    net = build_network(TTT, default_network_config(TTT.name), seed=seed)
    meta = make_meta(net, game=TTT, model_id=model_id, generation=generation, created=0.0)
    await publish_checkpoint(
        store, RUN, save_checkpoint(net, meta), event_id=f"ckpt-{model_id}", model_id=model_id,
        generation=generation, game=TTT.name, source="test",
    )


async def test_the_champion_plays_batched_and_the_levels_follow_it(store, nats_settings):
    await publish(store, "ttt-g0", 0, seed=1)  # generation 0: the champion by convention
    settings = AiSettings(workers=1, batch_wait_ms=20, max_think_ms=2000)
    async with AiPlayers.open(settings, nats_settings, RUN, levels=LEVELS) as ai:
        assert ai.registry is not None
        await ai.registry.wait_for(lambda s: s.champion is not None, timeout=10)
        await ai.warm_up(TTT.name)
        before = msgspec.structs.replace(ai.stats.search)
        openings = [[], [4], [0], [4, 0], [8], [2, 6]]
        answers = await asyncio.gather(*(
            ai.choose_move(TTT.name, moves, 8, game_id=f"g{i}") for i, moves in enumerate(openings)
        ))
        for moves, answer in zip(openings, answers, strict=True):
            assert answer.model_id == "ttt-g0"
            assert answer.move in TTT.from_moves(moves).legal_moves()
            assert answer.think_ms > 0
        searches = ai.stats.search.moves - before.moves
        calls = ai.stats.search.network_calls - before.network_calls
        assert searches == len(openings)
        assert ai.stats.search.batches - before.batches < len(openings)  # served together
        assert calls < searches * LEVELS[7].simulations  # fewer calls than searching alone
        assert ai.stats.search.mean_batch > 1

        # a game of another game has no champion: the initial network plays it
        other = await ai.choose_move("connect4", [3], 1, game_id="c4")
        assert other.model_id == "initial-connect4"

        # a promotion: the next moves are the new champion's
        await publish(store, "ttt-g1", 1, seed=2)
        await store.append(ev.CandidatePromoted(id="promote-g1", time=time.time(), run=RUN,
                                                model_id="ttt-g1", previous_champion="ttt-g0", generation=1))

        async def new_champion_moves():
            return (await ai.choose_move(TTT.name, [4], 2, game_id="after")).model_id == "ttt-g1"

        await until(new_champion_moves, timeout=10, what="the levels to follow the new champion")

        # an exhibition between models: a named model plays, whoever is champion
        named = await ai.choose_move(TTT.name, [4], 2, game_id="named", model_id="ttt-g0")
        assert named.model_id == "ttt-g0" and named.move in TTT.from_moves([4]).legal_moves()
        assert ai.model_problem(TTT.name, "ttt-g0") is None
        assert "no model 'nope'" in (ai.model_problem(TTT.name, "nope") or "")
        assert "plays tictactoe" in (ai.model_problem("connect4", "ttt-g0") or "")


async def test_searches_never_block_the_event_loop(nats_settings):
    slow = [*LEVELS[:7], LevelSettings(number=8, kind="search", simulations=100_000, think_ms=1500)]
    async with AiPlayers.open(AiSettings(max_think_ms=1500), nats_settings, RUN, levels=slow) as ai:
        await ai.choose_move("connect4", [], 1)  # the workers are up
        gaps: list[float] = []
        thinking = asyncio.ensure_future(ai.choose_move("connect4", [], 8, game_id="slow"))
        last = time.monotonic()
        while not thinking.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        answer = thinking.result()
        assert answer.think_ms >= 1000  # it searched to its deadline ...
        assert answer.think_ms < 10_000  # ... and stopped there
        assert len(gaps) > 20 and max(gaps) < 0.5  # while the loop kept turning
        # a clocked game's budget caps the same level's thinking: one chunk of the search, then out
        before = ai.stats.search.evaluations
        hurried = await ai.choose_move("connect4", [], 8, game_id="hurried", budget_ms=1)
        assert hurried.think_ms < 1000 and 0 < ai.stats.search.evaluations - before <= 2 * SEARCH_CHUNK


SLOW = [*LEVELS[:7], LevelSettings(number=8, kind="search", simulations=100_000, think_ms=1500)]


async def test_short_searches_do_not_wait_for_a_long_one(nats_settings):
    async with AiPlayers.open(AiSettings(max_think_ms=1500), nats_settings, RUN, levels=SLOW) as ai:
        await ai.warm_up("connect4")  # the search process is up, the net loaded
        thinking = asyncio.ensure_future(ai.choose_move("connect4", [], 8, game_id="long"))

        async def long_one_sent():
            return ai.searching == 1

        await until(long_one_sent, timeout=10, what="the long search to be sent", poll=0.005)
        openings = [[3], [3, 3], [2], [4, 4], [0]]
        short = await asyncio.gather(*(
            ai.choose_move("connect4", moves, 5, game_id=f"short-{i}") for i, moves in enumerate(openings)
        ))
        assert not thinking.done()  # the long search still runs
        for moves, answer in zip(openings, short, strict=True):
            assert answer.move in get_game("connect4").from_moves(moves).legal_moves()
            assert answer.think_ms < 1000  # they joined it rather than waiting for it
        long = await thinking
        assert long.think_ms >= 1000  # it searched on to its deadline


async def test_a_killed_search_process_fails_its_moves_at_once_and_is_replaced(nats_settings):
    async with AiPlayers.open(AiSettings(max_think_ms=1500), nats_settings, RUN, levels=SLOW) as ai:
        await ai.warm_up("connect4")
        (pid,) = ai.search_pids()
        thinking = asyncio.ensure_future(ai.choose_move("connect4", [], 8, game_id="doomed"))

        async def sent():
            return ai.searching == 1

        await until(sent, timeout=10, what="the search to be sent", poll=0.005)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(AiUnavailable, match="search process stopped"):
            await thinking
        assert time.monotonic() - killed < 1.0  # at once, not at the search's deadline (1.5 s)
        assert ai.searching == 0 and ai.search_pids() == []
        again = await ai.choose_move("connect4", [3], 5, game_id="after")  # a new process
        assert again.move in get_game("connect4").from_moves([3]).legal_moves()
        assert ai.search_pids() and ai.search_pids() != [pid]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="no SCHED_IDLE on this system")
@pytest.mark.parametrize("idle", [True, False])
async def test_searches_run_on_cpu_nothing_else_wants_unless_told_not_to(idle):
    settings = AiSettings(max_think_ms=500, search_idle=idle, search_nice=7)
    async with AiPlayers.open(settings, None, RUN, levels=LEVELS) as ai:
        await ai.warm_up("connect4")
        (pid,) = ai.search_pids()
        assert os.sched_getscheduler(pid) == (os.SCHED_IDLE if idle else os.SCHED_OTHER)
        assert os.getpriority(os.PRIO_PROCESS, pid) - os.getpriority(os.PRIO_PROCESS, 0) == 7
        moved = await ai.choose_move("connect4", [3], 8, game_id="idle")
        assert moved.move in get_game("connect4").from_moves([3]).legal_moves()


async def test_a_small_calibration_on_tictactoe(store, nats_settings, tmp_path):
    set_torch_threads(1)
    await publish(store, "ttt-g0", 0, seed=1)
    config = tmp_path / "p2p.yaml"
    config.write_text("# matchmaking\nratings:\n  tau: 0.4\n\nlevels:\n"
                      + "".join(f"  - {msgspec.json.encode(lv).decode()}\n" for lv in LEVELS)
                      + "\nai:\n  workers: 2\n")
    settings = CalibrationSettings(pairs=2, pure_mcts_iterations=16, rounds=2, seed=3)
    calibration, event = await run_calibration(
        nats=nats_settings, run=RUN, game_name="tictactoe", config_path=config, settings=settings,
    )
    assert event.model_id == "ttt-g0" and event.rounds == 2
    assert event.games == 24 * 2 * 2  # 24 pairings, 2 pairs of games each
    assert set(event.references) == {"random", "pure-mcts-16"} and event.references["random"] == 0.0
    written = load_p2p_config(config)
    assert written.levels == calibration.levels
    assert all(lv.elo is not None for lv in written.levels)
    assert written.ratings.tau == 0.4 and written.ai.workers == 2  # the rest of the file kept
    assert config.read_text().startswith("# matchmaking\nratings:\n  tau: 0.4\n\nlevels:\n")
    # ends kept, and the Elo written is the one measured for the settings written
    assert written.levels[0] == msgspec.structs.replace(LEVELS[0], elo=written.levels[0].elo)
    assert [lv.elo for lv in event.levels] == pytest.approx([lv.elo for lv in written.levels], abs=0.06)

    levels_filter = names.aggregate_filter(names.EVENTS, RUN, names.P2P_LEVELS_AGGREGATE)
    stored = await store.last(names.EVENTS, levels_filter)
    assert stored is not None and isinstance(stored.event, P2pLevelsCalibrated)
    assert stored.event == event
