"""The matchmaking server end to end: a real server on a free port, real WebSocket clients, a
real nats-server. Most games use a stand-in AI (the first legal move) so the tests are fast;
``test_human_vs_the_real_ai_to_the_end`` plays the real ``AiPlayers`` (worker processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from engine.games import get_game
from handlers.matchmaking.config import ClockSettings, P2PConfig, PoolSettings, ServerSettings
from handlers.matchmaking.server import MatchmakingServer
from projections.matchmaking import MatchmakingProjection
from projections.runner import ProjectionRunner
from streams import names
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "mm"
SECRET = b"test-secret"


class FirstLegal:
    """Stand-in AI for the tests: the first legal move, at once."""

    def __init__(self) -> None:
        self.moves = 0
        self.budgets: list[int | None] = []  # the thinking time the server allowed each move

    MODELS = ("m-a", "m-b")  # the models this stand-in knows

    async def choose_move(self, game: str, moves: list[int], level: int, *, game_id: str = "",
                          model_id: str = "", budget_ms: int | None = None) -> Any:
        self.moves += 1
        self.budgets.append(budget_ms)
        return SimpleNamespace(move=get_game(game).from_moves(moves).legal_moves()[0], think_ms=0.0,
                               model_id=model_id or "first-legal")

    def model_problem(self, game: str, model_id: str) -> str | None:
        return None if model_id in self.MODELS else f"no model {model_id!r} in this run's registry"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def settings(**server: Any) -> P2PConfig:
    base: dict[str, Any] = dict(port=0, max_frame_bytes=512, rate_soft_per_s=30, rate_hard_per_s=60,
                                abandon_s=30.0, broom_every_s=0.05, idle_s=10_000, hello_timeout_s=10_000)
    base.update(server)
    return P2PConfig(server=ServerSettings(**base), pools=PoolSettings(tick_s=0.05, offer_ai_after_s=20.0))


@contextlib.asynccontextmanager
async def running(store, config: P2PConfig | None = None, ai: Any = None, clock: Any = None):
    server = MatchmakingServer(config or settings(), store, RUN, ai or FirstLegal(), SECRET,
                               host="127.0.0.1", port=0, **({"clock": clock} if clock else {}))
    async with server:
        yield server


class Client:
    """A WebSocket client that keeps what it received and waits for a message by type."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}
        self._read = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, server: MatchmakingServer, hello: bool = True, **hello_fields: Any):
        async with connect(f"ws://127.0.0.1:{server.port}/ws", max_size=None) as ws:
            client = cls(ws)
            if hello:
                await client.send(type="hello", v=1, **hello_fields)
                client.welcome = await client.expect("welcome")
            yield client

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def expect(self, kind: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The next message (after the last one expected) of ``kind`` with ``fields``."""

        async def wait() -> dict[str, Any]:
            while True:
                while self._read < len(self.seen):
                    message = self.seen[self._read]
                    self._read += 1
                    if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                        return message
                self.seen.append(json.loads(await self.ws.recv()))

        return await asyncio.wait_for(wait(), timeout)

    async def error(self, code: str) -> dict[str, Any]:
        return await self.expect("error", code=code)


async def play_out(client: Client, start: dict[str, Any]) -> dict[str, Any]:
    """Play the first legal move whenever it is this client's turn, until the game is over."""
    seat, state = start["seat"], start["state"]
    while state["status"] == "playing":
        if state["to_move"] == seat:
            await client.send(type="move", game_id=start["game_id"], move=state["legal"][0],
                              version=state["version"])
        state = await client.expect("state", game_id=start["game_id"], version=state["version"] + 1)
    return await client.expect("over", game_id=start["game_id"])


async def game_events(store, game_id: str) -> list[Any]:
    filt = names.aggregate_filter(names.EVENTS, RUN, names.p2p_game_aggregate(game_id))
    return [stored.event async for stored in store.read(subject_filter=filt)]


async def scrape(server: MatchmakingServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's ``/metrics`` over real HTTP: (sample name, sorted labels) -> value."""
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain")
            return answer.read().decode()

    text = await asyncio.to_thread(get)  # the server answers from this test's event loop
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_human_vs_ai_to_the_end_is_recorded_and_rated(store):
    async with running(store) as server, Client.open(server, name="ann") as ann:
        await ann.send(type="seek", game="tictactoe", opponent="ai", level=2, seat=0)
        start = await ann.expect("start")
        assert start["seat"] == 0 and [p["kind"] for p in start["players"]] == ["human", "ai"]
        over = await play_out(ann, start)
        assert over["result"] == 0 and over["reason"] == "win"  # first-legal AI loses the row
        assert over["ratings"][0]["rating"] > 1500 and over["ratings"][1] is not None
        events = await game_events(store, start["game_id"])
        tags = [e.tag for e in events]
        assert tags[0] == "p2p.game_started" and tags[-1] == "p2p.game_finished"
        assert [e.move for e in events if e.tag == "p2p.move_played"] == [0, 1, 2, 3, 4, 5, 6]
        assert events[-1].ratings[0].player == ann.welcome["player"]
        # the metrics count what the log holds
        seen = await scrape(server)
        run = (("run", RUN),)
        humans = sum(1 for e in events if e.tag == "p2p.move_played" and e.seat == 0)
        assert seen[("jetzero_p2p_moves_total", (("player", "human"), *run))] == humans == 4
        assert seen[("jetzero_p2p_moves_total", (("player", "ai"), *run))] == 3
        assert seen[("jetzero_p2p_move_seconds_count", run)] == humans
        assert seen[("jetzero_p2p_ai_move_seconds_count", (("level", "2"), *run))] == 3
        assert seen[("jetzero_p2p_games_started_total", (("kind", "vs_ai"), *run))] == 1
        assert seen[("jetzero_p2p_games_finished_total", (("reason", "win"), *run))] == 1
        assert seen[("jetzero_p2p_live_games", run)] == 0 and seen[("jetzero_p2p_connections", run)] == 1
        assert seen[("jetzero_p2p_players_online", run)] == 1
    runner = ProjectionRunner(store, MatchmakingProjection(), RUN, use_snapshots=False)
    view = await runner.catch_up()
    assert view.live_games() == [] and view.rating("ai-2").games == 1


async def test_human_vs_the_real_ai_to_the_end(store, nats_settings):
    from handlers.matchmaking.ai import AiPlayers, AiSettings

    tiny = AiSettings(workers=1, max_think_ms=200, batch_wait_ms=0)
    async with AiPlayers.open(tiny, nats_settings, RUN) as ai:
        async with running(store, ai=ai) as server, Client.open(server) as bob:
            await bob.send(type="seek", game="tictactoe", opponent="ai", level=1, seat=1)
            start = await bob.expect("start", timeout=60)
            over = await play_out(bob, start)
            assert over["result"] in (0, 1, "draw") and over["reason"] in ("win", "draw")
            events = await game_events(store, start["game_id"])
            ai_moves = [e for e in events if e.tag == "p2p.move_played" and e.seat == 0]
            assert ai_moves and all(e.model_id == "initial-tictactoe" for e in ai_moves)
            seen = await scrape(server)
            raw = (("kind", "raw_policy"), ("run", RUN))
            lane = ai.stats.raw_policy  # level 1's lane (a blunder skips the network)
            assert lane.moves == len(ai_moves)
            assert seen[("jetzero_p2p_ai_evaluations_total", raw)] == lane.evaluations
            assert seen[("jetzero_p2p_ai_mean_batch", raw)] == pytest.approx(lane.mean_batch)


async def test_two_humans_paired_a_spectator_watches_and_a_resign_rates_both(store):
    async with running(store) as server, Client.open(server, name="a") as a, \
            Client.open(server, name="b") as b:
        await a.send(type="seek", game="connect4", opponent="human", seat=0)
        seeking = await a.expect("seeking")
        assert seeking["range"] == [1400.0, 1600.0]
        await b.send(type="seek", game="connect4", opponent="human")
        start_a, start_b = await a.expect("start"), await b.expect("start")
        assert (start_a["seat"], start_b["seat"]) == (0, 1) and start_a["game_id"] == start_b["game_id"]
        game_id = start_a["game_id"]
        async with Client.open(server) as watcher:
            await watcher.send(type="games")
            listed = await watcher.expect("games")
            assert [g["game_id"] for g in listed["games"]] == [game_id]
            await watcher.send(type="watch", game_id=game_id)
            assert (await watcher.expect("start"))["seat"] is None
            await a.send(type="move", game_id=game_id, move=3, version=0)
            seen = await watcher.expect("state", version=1)
            assert seen["board"][-1][3] == 1 and (await b.expect("state", version=1))["to_move"] == 1
            await b.send(type="resign", game_id=game_id)
            over = await watcher.expect("over")
            assert over["result"] == 0 and over["reason"] == "resign"
            assert over["ratings"][0]["rating"] > 1500 > over["ratings"][1]["rating"]
            await a.send(type="move", game_id=game_id, move=3, version=2)  # a move in a finished game
            assert (await a.error("game_over"))["ref"] == "move"


async def test_reconnect_with_the_token_resumes_the_game(store):
    async with running(store) as server:
        async with Client.open(server) as first:
            await first.send(type="seek", game="connect4", opponent="ai", level=1, seat=0)
            start = await first.expect("start")
            await first.send(type="move", game_id=start["game_id"], move=3, version=0)
            state = await first.expect("state", version=2)  # my move and the AI's answer
            token = first.welcome["token"]
        async with Client.open(server, token=token) as again:
            assert again.welcome["player"] == first.welcome["player"]
            assert again.welcome["games"] == [start["game_id"]]
            resumed = await again.expect("start", game_id=start["game_id"])
            assert resumed["seat"] == 0 and resumed["state"]["moves"] == state["moves"]
            assert resumed["state"]["abandoned"] == 0  # the timer ran while away ...
            back = await again.expect("state", abandoned=None)  # ... and stops on return
            await again.send(type="move", game_id=start["game_id"], move=3, version=back["version"])
            await again.expect("state", moves=[*state["moves"], 3])


async def test_a_game_in_progress_survives_a_server_restart(store):
    async with running(store) as server, Client.open(server) as a, Client.open(server) as b:
        await a.send(type="seek", game="tictactoe", opponent="human", seat=0)
        await b.send(type="seek", game="tictactoe", opponent="human", seat=1)
        start = await a.expect("start")
        await a.send(type="move", game_id=start["game_id"], move=4, version=0)
        await b.expect("state", version=1)
        await b.send(type="move", game_id=start["game_id"], move=0, version=1)
        await a.expect("state", version=2)
        tokens = a.welcome["token"], b.welcome["token"]
    async with running(store) as restarted:  # a new server on the same log
        async with Client.open(restarted, token=tokens[0]) as a2, \
                Client.open(restarted, token=tokens[1]) as b2:
            resumed = await a2.expect("start", game_id=start["game_id"])
            assert resumed["state"]["moves"] == [4, 0] and resumed["seat"] == 0
            assert (await b2.expect("start", game_id=start["game_id"]))["seat"] == 1
            state = await a2.expect("state", abandoned=None)  # both back
            for client, move in ((a2, 2), (b2, 6), (a2, 3), (b2, 5), (a2, 1), (b2, 8), (a2, 7)):
                await client.send(type="move", game_id=start["game_id"], move=move, version=state["version"])
                state = await a2.expect("state", version=state["version"] + 1)
            assert state["moves"] == [4, 0, 2, 6, 3, 5, 1, 8, 7]
            over = await b2.expect("over")
            assert over["result"] == 0 and over["reason"] == "win"


async def test_every_bad_input_is_answered_and_changes_nothing(store):
    async with running(store) as server, Client.open(server, hello=False) as c:
        await c.send(type="games")
        assert (await c.error("no_hello"))["ref"] == "games"
        await c.send(type="hello", v=1, token="h-0123456789abcdef.Zm9yZ2Vk")
        await c.error("bad_token")
        await c.send(type="hello", v=2)
        assert "1" in (await c.error("bad_field"))["message"]
        await c.send(type="hello", v=1)
        await c.expect("welcome")
        await c.send(type="seek", game="tictactoe", opponent="ai", level=1, seat=0)
        start = await c.expect("start")
        gid = start["game_id"]
        def frame(**fields: Any) -> str:
            return json.dumps(fields)

        for text, code in [
            ("{oops", "bad_json"), ("[]", "bad_json"), (frame(type="fly"), "unknown_type"),
            (frame(type="move", game_id=gid), "missing_field"),
            (frame(type="move", game_id=gid, move="x", version=0), "bad_field"),
            (frame(type="move", game_id=gid, move=99, version=0), "illegal_move"),
            (frame(type="move", game_id=gid, move=4, version=7), "stale_version"),
            (frame(type="move", game_id="nope", move=4, version=0), "no_such_game"),
            (frame(type="seek", game="tictactoe", opponent="ai"), "missing_field"),
            (frame(type="cancel", seek="nope"), "no_such_seek"),
            (frame(type="draw_accept", game_id=gid), "not_allowed"),
            (frame(type="claim", game_id=gid), "not_allowed"),
            (frame(type="ping", pad="x" * 600), "too_large"),
        ]:
            await c.ws.send(text)
            error = await c.error(code)
            assert error["message"] and "\n" not in error["message"], text
        # a stale move is told the current state
        assert any(m["type"] == "state" and m["version"] == 0 and m["moves"] == [] for m in c.seen)
        await c.send(type="move", game_id=gid, move=4, version=0)  # connection and game intact
        await c.expect("state", version=1)
        ai_moved = await c.expect("state", version=2)
        assert ai_moved["to_move"] == 0
        await c.send(type="move", game_id=gid, move=8, version=1)  # AI's turn passed: a stale version
        await c.error("stale_version")
        async with Client.open(server) as intruder:
            await intruder.send(type="move", game_id=gid, move=8, version=2)
            await intruder.error("not_in_game")
            await intruder.send(type="resign", game_id=gid)
            await intruder.error("not_in_game")
        await c.send(type="ping", t=7)
        assert (await c.expect("pong"))["t"] == 7
        over_events = [e for e in await game_events(store, gid) if e.tag == "p2p.move_played"]
        assert [e.move for e in over_events] == [4, 0]


async def test_a_flood_closes_that_connection_alone(store):
    async with running(store, settings(rate_soft_per_s=5, rate_hard_per_s=20)) as server:
        async with Client.open(server) as calm, Client.open(server) as flood:
            for i in range(40):
                try:
                    await flood.send(type="ping", t=i)
                except ConnectionClosed:
                    break
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    flood.seen.append(json.loads(await asyncio.wait_for(flood.ws.recv(), 10)))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            codes = [m.get("code") for m in flood.seen if m["type"] == "error"]
            assert "rate_limited" in codes and sum(m["type"] == "pong" for m in flood.seen) <= 5
            await calm.send(type="ping", t=1)
            assert (await calm.expect("pong"))["t"] == 1
        async with connect(f"ws://127.0.0.1:{server.port}/ws", max_size=None) as huge:
            await huge.send("x" * (512 * 64 + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(huge.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_origins_and_the_connection_cap_are_checked_at_the_handshake(store):
    config = settings(max_connections=2, allowed_origins=["https://play.example"])
    async with running(store, config) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        async with connect(url, origin="https://play.example"), \
                connect(url, origin=f"http://127.0.0.1:{server.port}"):  # type: ignore[arg-type]
            await until(lambda: _true(len(server.clients) == 2), 5, "two connections")
            with pytest.raises(InvalidStatus) as full:
                async with connect(url):
                    pass
            assert full.value.response.status_code == 503
        await until(lambda: _true(not server.clients), 5, "the connections gone")
        async with Client.open(server) as later:
            await later.send(type="ping")
            await later.expect("pong")


async def _true(value: bool) -> bool:
    return value


async def test_abandonment_lets_the_opponent_claim_and_the_ai_claims_its_own(store):
    clock = Clock()
    async with running(store, clock=clock) as server, Client.open(server) as a:
        async with Client.open(server) as b:
            await a.send(type="seek", game="connect4", opponent="human", seat=0)
            await b.send(type="seek", game="connect4", opponent="human", seat=1)
            start = await a.expect("start")
        gid = start["game_id"]
        left = await a.expect("state", abandoned=1)
        await a.send(type="claim", game_id=gid)
        assert "claim in 30 s" in (await a.error("not_allowed"))["message"]
        clock.now += 30
        await a.send(type="claim", game_id=gid)
        over = await a.expect("over", game_id=gid)
        assert (over["result"], over["reason"]) == (0, "abandoned") and left["version"] >= 1
        async with Client.open(server) as c:
            await c.send(type="seek", game="tictactoe", opponent="ai", level=1, seat=0)
            ai_game = (await c.expect("start"))["game_id"]
            await a.send(type="watch", game_id=ai_game)
            await a.expect("start", game_id=ai_game)
        await a.expect("state", game_id=ai_game, abandoned=0)
        clock.now += 31
        over = await a.expect("over", game_id=ai_game)
        assert (over["result"], over["reason"]) == (1, "abandoned")
        done = (await game_events(store, ai_game))[-1]
        assert (done.tag, done.result, done.reason) == ("p2p.game_finished", "1", "abandoned")


async def test_a_game_both_humans_left_ends_unrated_after_deserted_s(store):
    clock = Clock()
    async with running(store, config=settings(deserted_s=600.0), clock=clock) as server, \
            Client.open(server) as watcher:
        async with Client.open(server) as a, Client.open(server) as b:
            await a.send(type="seek", game="connect4", opponent="human", seat=0)
            await b.send(type="seek", game="connect4", opponent="human", seat=1)
            gid = (await a.expect("start"))["game_id"]
            await watcher.send(type="watch", game_id=gid)
            await watcher.expect("start", game_id=gid)
        await watcher.expect("state", game_id=gid, abandoned=1)  # b left first; then a
        table = server.tables[gid]
        await until(lambda: _true(table.deserted_since == clock.now), 10, "both players gone")
        clock.now += 599  # not yet: the game stays live
        await watcher.send(type="ping")
        await watcher.expect("pong")
        assert gid in server.tables
        clock.now += 1
        over = await watcher.expect("over", game_id=gid)
        assert (over["result"], over["reason"], over["ratings"]) == ("draw", "deserted", [None, None])
        done = (await game_events(store, gid))[-1]
        assert (done.tag, done.result, done.reason, done.ratings) == ("p2p.game_finished", "draw", "deserted",
                                                                     [None, None])
        assert gid not in server.tables and server.view.game(gid) is None


async def test_a_lonely_seek_is_offered_the_nearest_ai_and_can_be_cancelled(store):
    clock = Clock()
    async with running(store, clock=clock) as server, Client.open(server) as alone:
        await alone.send(type="seek", game="connect4", opponent="human")
        seek = (await alone.expect("seeking"))["seek"]
        clock.now += 20
        offer = await alone.expect("offer_ai", seek=seek)
        assert offer["level"] == 4  # 1500 sits between the uncalibrated 4 (1400) and 5 (1600)
        await alone.send(type="cancel", seek=seek)
        await alone.expect("cancelled", seek=seek)
        assert server.pool.seeks == ()


async def test_an_exhibition_is_played_out_for_its_watcher(store):
    ai = FirstLegal()
    async with running(store, ai=ai) as server, Client.open(server) as fan:
        await fan.send(type="exhibition", game="tictactoe", levels=[1, 8])
        start = await fan.expect("start")
        assert start["seat"] is None and [p["level"] for p in start["players"]] == [1, 8]
        over = await fan.expect("over", game_id=start["game_id"])
        assert over["ratings"] == [None, None] and ai.moves == 7
        finished = (await game_events(store, start["game_id"]))[-1]
        assert msgspec.to_builtins(finished.ratings) == [None, None]


async def test_an_exhibition_between_two_models_and_an_unknown_model_refused(store):
    async with running(store) as server, Client.open(server) as fan:
        await fan.send(type="exhibition", game="tictactoe", models=["m-a", "nope"])
        refused = await fan.error("bad_field")
        assert "exhibition.models[1]" in refused["message"] and "nope" in refused["message"]
        await fan.send(type="exhibition", game="tictactoe")
        assert "levels" in (await fan.error("missing_field"))["message"]
        assert server.tables == {}
        await fan.send(type="exhibition", game="tictactoe", models=["m-b", "m-a"], levels=[2, 7])
        start = await fan.expect("start")
        assert [(p["model"], p["level"]) for p in start["players"]] == [("m-b", 2), ("m-a", 7)]
        await fan.expect("over", game_id=start["game_id"])
        moves = [e for e in await game_events(store, start["game_id"]) if e.tag == "p2p.move_played"]
        assert [e.model_id for e in moves] == ["m-b", "m-a"] * 3 + ["m-b"]
        assert [s.model for s in (await game_events(store, start["game_id"]))[0].seats] == ["m-b", "m-a"]


async def test_the_idle_broom_closes_silent_connections(store):
    clock = Clock()
    config = settings(hello_timeout_s=10, idle_s=100)
    async with running(store, config, clock=clock) as server, Client.open(server, hello=False) as mute, \
            Client.open(server) as quiet, Client.open(server) as chatty:
        await until(lambda: _true(len(server.clients) == 3), 5, "three connections")
        clock.now += 11
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(mute.ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        clock.now += 50
        await chatty.send(type="ping", t=1)
        await chatty.expect("pong")
        clock.now += 50  # quiet has been silent 111 s, chatty 50 s
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(quiet.ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        await chatty.send(type="ping", t=2)
        assert (await chatty.expect("pong"))["t"] == 2


def clocked(initial_s: float, increment_s: float = 0.0) -> P2PConfig:
    clock = ClockSettings(initial_s=initial_s, increment_s=increment_s)
    return msgspec.structs.replace(settings(), clock=clock)


async def test_a_human_whose_clock_runs_out_loses_on_time_by_the_servers_timer(store):
    ai = FirstLegal()
    async with running(store, clocked(1.0, 0.5), ai=ai) as server, Client.open(server) as ann:
        await ann.send(type="seek", game="tictactoe", opponent="ai", level=1, seat=1)
        start = await ann.expect("start")
        assert start["state"]["clocks"] is not None
        moved = await ann.expect("state", version=1)  # the AI moved; now ann's clock runs
        assert moved["to_move"] == 1 and 0 < moved["clocks"][1] <= 1000 and moved["clocks"][0] > 1000
        final = await ann.expect("state", status="over")  # ann never moves
        over = await ann.expect("over", game_id=start["game_id"])
        assert over["result"] == 0 and over["reason"] == "timeout" and final["clocks"][1] == 0
        events = await game_events(store, start["game_id"])
        assert (events[0].clock_initial_ms, events[0].clock_increment_ms) == (1000, 500)
        # the record is the clocks at the move; the state shows them as of its sending, a little later
        recorded = events[1].clocks
        assert recorded[0] == moved["clocks"][0] and 0 <= recorded[1] - moved["clocks"][1] <= 50
        assert events[-1].reason == "timeout"
        # the AI was given what its clock could spare: 1/30 of 1 s left, plus 3/4 of the increment
        assert len(ai.budgets) == 1 and 1000 // 30 + 375 - 1 <= ai.budgets[0] <= 1000 // 30 + 375
        await ann.send(type="move", game_id=start["game_id"], move=4, version=moved["version"])
        await ann.error("game_over")


async def test_the_clocks_survive_a_restart_as_recorded_after_the_last_move(store):
    async with running(store, clocked(60.0, 2.0)) as server, Client.open(server) as a, \
            Client.open(server) as b:
        await a.send(type="seek", game="tictactoe", opponent="human", seat=0)
        await b.send(type="seek", game="tictactoe", opponent="human", seat=1)
        start = await a.expect("start")
        await a.send(type="move", game_id=start["game_id"], move=4, version=0)
        after = await b.expect("state", version=1)
        assert 60_000 < after["clocks"][0] <= 62_000 and after["clocks"][1] <= 60_000
        tokens = a.welcome["token"], b.welcome["token"]
    recorded = (await game_events(store, start["game_id"]))[-1].clocks
    async with running(store, clocked(5.0)) as restarted, Client.open(restarted, token=tokens[0]) as a2:
        resumed = await a2.expect("start", game_id=start["game_id"])  # the game's own control, not 5 s
        clocks = resumed["state"]["clocks"]  # seat 1 to move: its clock runs again from the record
        assert clocks[0] == recorded[0] and 0 < recorded[1] - 5_000 < clocks[1] <= recorded[1]
