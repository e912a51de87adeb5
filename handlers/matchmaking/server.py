"""The matchmaking server: one process, many games, on websockets' asyncio server.

The I/O shell around the pure parts: every client frame is size-checked, rate-limited, decoded
at the one decode point (``protocol.decode_client``) and dispatched; a bad frame is answered
with an ``error`` naming the problem and changes nothing. A change to a game is decided by the
pure rules (``games``), appended to the log first (``p2p.*`` events, ids derived from the game)
and only then applied and sent to the game's players and spectators. The live games and the
ratings are the matchmaking projection's, caught up at start (a game in progress survives a
restart) and then folded with the events this server appends.

Abuse: a frame over ``max_frame_bytes`` is refused (``too_large``; one 64 times larger closes
the socket, 1009); past ``rate_soft_per_s`` frames a second each frame is answered
``rate_limited``, past ``rate_hard_per_s`` the connection alone is closed (1008); origins
outside the allowed list (and not the page's own) are refused at the handshake (403); past
``max_connections`` a handshake is refused (503). Keepalive pings are websockets' own; the idle
broom closes connections silent for ``idle_s`` (or without hello for ``hello_timeout_s``).
When a player's last connection drops, their opponent's ``claim`` wins after ``abandon_s``; in
a game against the AI the AI claims it. A game that both human players have left for
``deserted_s`` (counted from the server's start for a game rebuilt after a restart) ends a
draw, unrated, reason ``deserted``, so it does not stay live for ever.

AI moves come from ``AiPlayers`` (worker processes, batched): the loop only awaits them.

Metrics (``handlers.matchmaking.metrics``) are served at ``GET /metrics`` on the same port.

Clocks (``clock:`` in config/p2p.yaml, recorded in ``p2p.game_started``): a timer per game
waits for the seat to move's flag and ends the game ``timeout``; each ``p2p.move_played``
records the ms left per seat, so a restart rebuilds them (the time the server was down, and the
unfinished turn before it, are not charged). An AI's thinking runs its clock like anyone's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from engine.glicko2 import Rating
from handlers.matchmaking import games as rules
from handlers.matchmaking import pools, protocol, tokens, views
from handlers.matchmaking.config import P2PConfig
from handlers.matchmaking.http_files import METRICS_PATH, WS_PATH, is_upgrade, response, serve_static
from handlers.matchmaking.levels import levels_by_number
from handlers.matchmaking.metrics import CONTENT_TYPE_LATEST, MatchmakingMetrics
from projections.matchmaking import (
    MatchmakingProjection,
    MatchmakingState,
    ai_player,
    current,
    level_start,
    rating_changes,
)
from projections.runner import ProjectionRunner
from streams.batched_append import BatchedAppender
from streams.envelope import Event, derived_id
from streams.errors import JetzeroError
from streams.matchmaking_events import P2pGameFinished, P2pGameStarted, P2pMovePlayed
from streams.store import EventStore

__all__ = ["AiMover", "MatchmakingServer", "RateLimiter"]

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_GOING_AWAY = 1001
FRAME_CLOSE_FACTOR = 64  # a frame this many times over the limit closes the connection
FINISHED_KEPT = 1000  # finished games remembered, so a late move is told `game_over`


class AiMover(Protocol):
    """What the server needs of the AI (``handlers.matchmaking.ai.AiPlayers``)."""

    async def choose_move(self, game: str, moves: list[int], level: int, *, game_id: str = "",
                          model_id: str = "", budget_ms: int | None = None) -> Any: ...

    def model_problem(self, game: str, model_id: str) -> str | None: ...


class RateLimiter:
    """Frames per one-second window: ``ok``, ``limited`` past ``soft``, ``close`` past ``hard``."""

    def __init__(self, soft: int, hard: int):
        self.soft, self.hard = soft, hard
        self.window = 0.0
        self.count = 0

    def check(self, now: float) -> str:
        if now - self.window >= 1.0:
            self.window, self.count = now, 0
        self.count += 1
        if self.count > self.hard:
            return "close"
        return "limited" if self.count > self.soft else "ok"


class Client:
    def __init__(self, ws: ServerConnection, limiter: RateLimiter, now: float):
        self.ws = ws
        self.limiter = limiter
        self.player: str | None = None
        self.name = ""
        self.connected = now
        self.last_seen = now


class Table:
    """A live game: its room, a lock ordering its changes, its spectators, its AI task."""

    def __init__(self, room: rules.Room):
        self.room = room
        self.lock = asyncio.Lock()
        self.watchers: set[Client] = set()
        self.ai_task: asyncio.Task | None = None
        self.changed = asyncio.Event()  # set at each change: the flag timer looks again
        self.deserted_since: float | None = None  # when its last human player left (both away)

    def seat_of(self, player: str) -> int | None:
        for i, seat in enumerate(self.room.seats):
            if seat.kind == "human" and seat.id == player:
                return i
        return None

    def humans(self) -> list[tuple[int, str]]:
        return [(i, s.id) for i, s in enumerate(self.room.seats) if s.kind == "human"]


class _Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class MatchmakingServer:
    """The server of one run. ``await start()``, then ``port``; ``await close()``."""

    def __init__(
        self,
        config: P2PConfig,
        store: EventStore,
        run: str,
        ai: AiMover,
        secret: bytes,
        *,
        host: str | None = None,
        port: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.settings = config.server
        self.store = store
        self.appends = BatchedAppender(store)  # a burst of moves goes to the log as one batch
        self.run = run
        self.ai = ai
        self.secret = secret
        self.host = host if host is not None else self.settings.host
        self.port = port if port is not None else self.settings.port
        self.clock = clock
        self.levels = levels_by_number(config.levels)
        self.starts = level_start({n: lv.elo for n, lv in self.levels.items()})
        self.view: MatchmakingState = MatchmakingProjection().initial()
        self.tables: dict[str, Table] = {}
        self.finished: dict[str, rules.Room] = {}  # the last FINISHED_KEPT games that ended here
        self.clients: set[Client] = set()
        self.sessions: dict[str, set[Client]] = {}  # player -> open connections
        self.pool = pools.Pool()
        self._projection = MatchmakingProjection()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._ai_tasks: set[asyncio.Task] = set()
        self._timers: set[asyncio.Task] = set()  # the games' flag timers
        self.moves_played = 0
        self.metrics = MatchmakingMetrics(self, run)

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild the live games from the log, then listen."""
        runner = ProjectionRunner(self.store, self._projection, self.run)
        self.view = await runner.catch_up()
        now = self.clock()
        for live in self.view.live_games():
            clock = rules.TimeControl(initial_ms=live.clock_initial_ms, increment_ms=live.clock_increment_ms)
            room = rules.new_room(live.game_id, live.game, views.room_seats(live.seats), rated=live.rated,
                                  clock=clock if live.clock_initial_ms else None, now=now)
            clocks = (live.clocks[0], live.clocks[1]) if len(live.clocks) == 2 else None
            table = self.tables[live.game_id] = Table(rules.replay(room, live.moves, clocks, now))
            self._presence(table, now)
            self._schedule_ai(table)
            self._start_timer(table)
        if self.tables:
            log.info("matchmaking: %d game(s) in progress rebuilt from the log", len(self.tables))
        s = self.settings
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._process_request,
            max_size=s.max_frame_bytes * FRAME_CLOSE_FACTOR, ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s, compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._pairing(), name="p2p-pools"),
                       asyncio.create_task(self._broom(), name="p2p-broom")]

    async def close(self) -> None:
        for task in [*self._tasks, *self._ai_tasks, *self._timers]:
            task.cancel()
        for task in [*self._tasks, *self._ai_tasks, *self._timers]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.appends.close()

    async def __aenter__(self) -> MatchmakingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- handshake ---------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] == METRICS_PATH and not is_upgrade(request):
            return response(HTTPStatus.OK, self.metrics.exposition(), CONTENT_TYPE_LATEST)
        if is_upgrade(request) and request.path.split("?", 1)[0] == WS_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, request.headers.get("Host", "")):
                return response(HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed\n".encode(),
                                "text/plain; charset=utf-8")
            if len(self.clients) >= self.settings.max_connections:
                return response(HTTPStatus.SERVICE_UNAVAILABLE, b"too many connections; try later\n",
                                "text/plain; charset=utf-8")
        return serve_static(connection, request)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        allowed = self.settings.allowed_origins
        return "*" in allowed or origin in allowed or urlsplit(origin).netloc == host

    # -- connections -------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        s = self.settings
        client = Client(ws, RateLimiter(s.rate_soft_per_s, s.rate_hard_per_s), self.clock())
        self.clients.add(client)
        try:
            closing: asyncio.Task | None = None
            async for frame in ws:
                if closing is not None:
                    continue  # drained unread, so the client's close reply is read
                client.last_seen = self.clock()
                verdict = client.limiter.check(time.monotonic())
                if verdict == "close":
                    closing = asyncio.create_task(ws.close(CLOSE_POLICY, "flood: over the rate limit"))
                    continue
                if verdict == "limited":
                    self._error(client, "rate_limited",
                                f"more than {s.rate_soft_per_s} frames a second; frame dropped")
                    continue
                size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
                if size > s.max_frame_bytes:
                    self._error(client, "too_large", f"frame of {size} bytes; at most {s.max_frame_bytes}")
                    continue
                message = protocol.decode_client(frame)
                if isinstance(message, protocol.ProtocolError):
                    self._send([client], message.error())
                    continue
                await self._dispatch(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._gone(client)

    def _gone(self, client: Client) -> None:
        self.clients.discard(client)
        for table in self.tables.values():
            table.watchers.discard(client)
        player = client.player
        if player is None:
            return
        sessions = self.sessions.get(player, set())
        sessions.discard(client)
        if sessions:
            return
        self.sessions.pop(player, None)
        self.pool = pools.remove(self.pool, {s.seek_id for s in self.pool.of_player(player)})
        now = self.clock()
        for table in self._tables_of(player):
            self._presence(table, now)

    def _tables_of(self, player: str) -> list[Table]:
        return [t for t in self.tables.values() if t.seat_of(player) is not None]

    def _send(self, clients, message: msgspec.Struct) -> None:
        broadcast([c.ws for c in clients], protocol.encode(message).decode())

    def _error(self, client: Client, code: str, message: str, ref: str | None = None) -> None:
        self._send([client], protocol.Error(code=code, message=message, ref=ref))

    def _audience(self, table: Table) -> set[Client]:
        audience = set(table.watchers)
        for _, player in table.humans():
            audience |= self.sessions.get(player, set())
        return audience

    # -- dispatch ----------------------------------------------------------------------------

    async def _dispatch(self, client: Client, message: protocol.ClientMessage) -> None:
        kind = str(type(message).__struct_config__.tag)
        try:
            if isinstance(message, protocol.Ping):
                self._send([client], protocol.Pong(t=message.t))
            elif isinstance(message, protocol.Hello):
                self._hello(client, message)
            elif client.player is None:
                raise _Refused("no_hello", f"say hello first (got {kind})")
            elif isinstance(message, protocol.Seek):
                await self._seek(client, message)
            elif isinstance(message, protocol.Cancel):
                self._cancel(client, message)
            elif isinstance(message, protocol.Exhibition):
                await self._exhibition(client, message)
            elif isinstance(message, protocol.Watch):
                self._watch(client, message)
            elif isinstance(message, protocol.Games):
                self._send([client], protocol.GamesList(
                    games=[views.summary(t.room, self._rating_of) for t in self.tables.values()]))
            elif isinstance(message, protocol.Move):
                started = time.perf_counter()
                await self._act(client, message)
                self.metrics.human_move(time.perf_counter() - started)
            else:
                await self._act(client, message)
        except _Refused as refused:
            self._error(client, refused.code, refused.message, kind)
        except JetzeroError as exc:  # the log refused an append: nothing changed
            log.warning("matchmaking: %s failed: %s", kind, exc)
            self._error(client, "server_error", f"{kind} not done: {exc}", kind)

    def _rating(self, player: str, *, start: float = 1500.0) -> Rating:
        r = self.config.ratings
        return current(self.view, player, self.clock(), period_s=r.period_s, tau=r.tau, start=start)

    def _seat_rating(self, seat: rules.Seat) -> Rating:
        if seat.kind == "ai":
            return self._rating(seat.id, start=self.starts.get(seat.level or 0, 1500.0))
        return self._rating(seat.id)

    def _rating_of(self, seat: rules.Seat) -> float | None:
        return self._seat_rating(seat).rating

    def _hello(self, client: Client, hello: protocol.Hello) -> None:
        if client.player is not None:
            raise _Refused("not_allowed", f"this connection is already player {client.player}")
        if hello.token is not None:
            player = tokens.verify(self.secret, hello.token)
            if player is None:
                raise _Refused("bad_token", "the token is not one this server signed; hello without it "
                                            "to play as a new player")
        else:
            player = tokens.new_player_id()
        client.player = player
        client.name = hello.name or self.view.name(player) or f"guest-{player[2:8]}"
        self.sessions.setdefault(player, set()).add(client)
        mine = self._tables_of(player)
        self._send([client], protocol.Welcome(
            v=protocol.PROTOCOL_VERSIONS[-1], player=player, token=tokens.sign(self.secret, player),
            name=client.name,
            rating=views.rating_view(self._rating(player), self.config.ratings.provisional_rd),
            games=[t.room.game_id for t in mine]))
        now = self.clock()
        for table in mine:
            self._send([client], views.start_view(table.room, table.seat_of(player), self._rating_of, now))
            self._presence(table, now)

    # -- seeking -----------------------------------------------------------------------------

    async def _seek(self, client: Client, seek: protocol.Seek) -> None:
        assert client.player is not None
        human = rules.Seat(id=client.player, name=client.name, kind="human")
        seat = seek.seat if seek.seat is not None else random.randrange(2)
        if seek.opponent == "ai":
            if seek.level is None:
                raise _Refused("missing_field", "seek: an AI opponent needs a level (1-8)")
            ai = self._ai_seat(seek.level)
            await self._open(seek.game, (human, ai) if seat == 0 else (ai, human), rated=True)
            return
        seek_id = secrets.token_hex(6)
        now = self.clock()
        rating = self._rating(client.player).rating
        entry = pools.Seek(seek_id=seek_id, player=client.player, game=seek.game, rating=rating,
                           since=now, seat=seek.seat)
        self.pool = pools.add(self.pool, entry)
        width = pools.rating_range(entry, now, self.config.pools)
        self._send(self.sessions.get(client.player, {client}), protocol.Seeking(
            seek=seek_id, game=seek.game, range=[round(rating - width, 1), round(rating + width, 1)]))
        await self._pair_now()

    def _ai_seat(self, level: int) -> rules.Seat:
        return rules.Seat(id=ai_player(level), name=f"AI level {level}", kind="ai", level=level)

    def _cancel(self, client: Client, cancel: protocol.Cancel) -> None:
        found = self.pool.find(cancel.seek)
        if found is None or found.player != client.player:
            raise _Refused("no_such_seek", f"no seek {cancel.seek} of yours is waiting")
        self.pool = pools.remove(self.pool, {cancel.seek})
        self._send(self.sessions.get(found.player, {client}), protocol.Cancelled(seek=cancel.seek))

    async def _pair_now(self) -> None:
        ticked = pools.tick(self.pool, self.clock(), self.config.pools)
        self.pool = ticked.pool
        for pairing in ticked.pairings:
            a, b = pairing.first, pairing.second
            seats = [self._human_seat(a.player), self._human_seat(b.player)]
            either = a.seat is None and b.seat is None
            first_is_a = a.seat == 0 or b.seat == 1 or (either and random.random() < 0.5)
            ordered = (seats[0], seats[1]) if first_is_a else (seats[1], seats[0])
            try:
                await self._open(a.game, ordered, rated=True)
            except JetzeroError as exc:
                log.warning("matchmaking: pairing %s/%s not started: %s", a.player, b.player, exc)
        if ticked.offers:
            ladder = {n: self._seat_rating(self._ai_seat(n)).rating for n in self.levels}
            for seek in ticked.offers:
                level = pools.nearest_level(seek.rating, ladder)
                offer = protocol.OfferAi(seek=seek.seek_id, level=level)
                self._send(self.sessions.get(seek.player, set()), offer)

    def _human_seat(self, player: str) -> rules.Seat:
        clients = self.sessions.get(player)
        name = next(iter(clients)).name if clients else (self.view.name(player) or player)
        return rules.Seat(id=player, name=name, kind="human")

    async def _pairing(self) -> None:
        while True:
            await asyncio.sleep(self.config.pools.tick_s)
            try:
                await self._pair_now()
            except Exception:  # noqa: BLE001 - the pool keeps running
                log.exception("matchmaking: pairing failed")

    async def _exhibition(self, client: Client, exhibition: protocol.Exhibition) -> None:
        levels = exhibition.levels or [max(self.levels)] * 2
        seats = [self._ai_seat(level) for level in levels]
        for i, model in enumerate(exhibition.models or ()):
            if (problem := self.ai.model_problem(exhibition.game, model)) is not None:
                raise _Refused("bad_field", f"exhibition.models[{i}]: {problem}")
            seats[i] = rules.Seat(id=model, name=f"{model} (level {levels[i]})", kind="ai", level=levels[i],
                                  model=model)
        table = await self._open(exhibition.game, (seats[0], seats[1]), rated=False, exhibition=True)
        table.watchers.add(client)
        self._send([client], views.start_view(table.room, None, self._rating_of, self.clock()))

    async def _open(self, game: str, seats: tuple[rules.Seat, rules.Seat], *, rated: bool,
                    exhibition: bool = False) -> Table:
        game_id = secrets.token_hex(8)
        clock = self.config.time_control(game)
        room = rules.new_room(game_id, game, seats, rated=rated, clock=clock, now=self.clock())
        started = P2pGameStarted.new(self.run, id=derived_id(game_id, "p2p.game_started"), game_id=game_id,
                                     game=game, seats=views.event_seats(room), rated=rated,
                                     exhibition=exhibition, clock_initial_ms=clock.initial_ms if clock else 0,
                                     clock_increment_ms=clock.increment_ms if clock else 0)
        await self._append(started)
        self.metrics.game_started("exhibition" if exhibition else
                                  "vs_ai" if any(s.kind == "ai" for s in seats) else "vs_human")
        table = self.tables[game_id] = Table(room)
        now = self.clock()
        for i, player in table.humans():
            self._send(self.sessions.get(player, set()), views.start_view(room, i, self._rating_of, now))
        self._presence(table, now)
        self._schedule_ai(table)
        self._start_timer(table)
        return table

    async def _append(self, event: Event) -> None:
        await self.appends.append(event)
        self.view = self._projection.apply(self.view, event)

    # -- playing -----------------------------------------------------------------------------

    def _watch(self, client: Client, watch: protocol.Watch) -> None:
        table = self._table(watch.game_id)
        table.watchers.add(client)
        seat = table.seat_of(client.player) if client.player else None
        self._send([client], views.start_view(table.room, seat, self._rating_of, self.clock()))

    def _table(self, game_id: str) -> Table:
        table = self.tables.get(game_id)
        if table is None and game_id in self.finished:
            raise _Refused("game_over", f"game {game_id} is over ({self.finished[game_id].reason})")
        if table is None:
            raise _Refused("no_such_game", f"no live game {game_id} (finished or never started)")
        return table

    async def _act(self, client: Client, message: Any) -> None:
        table = self._table(message.game_id)
        assert client.player is not None
        seat = table.seat_of(client.player)
        if seat is None:
            raise _Refused("not_in_game", f"you do not play in game {message.game_id}")
        async with table.lock:
            room, now = table.room, self.clock()
            if isinstance(message, protocol.Move):
                after = rules.play(room, seat, message.move, message.version, now)
            elif isinstance(message, protocol.Resign):
                after = rules.resign(room, seat, now)
            elif isinstance(message, protocol.DrawOffer):
                after = rules.offer_draw(room, seat, now)
            elif isinstance(message, protocol.DrawAccept):
                after = rules.accept_draw(room, seat, now)
            else:
                after = rules.claim(room, seat, now)
            if (flagged := rules.flag(room, now)) is not None and not isinstance(after, rules.Refusal):
                after = flagged  # time ran out before this change: the game is lost on time
            if isinstance(after, rules.Refusal):
                self._error(client, after.code, after.message, str(type(message).__struct_config__.tag))
                if after.code == "stale_version":
                    self._send([client], views.state_view(room, now))
                return
            await self._commit(table, after, seat)

    async def _commit(self, table: Table, after: rules.Room, seat: int, think_ms: float = 0.0,
                      model_id: str = "") -> None:
        """Append what changed from ``table.room`` to ``after``, then apply and announce it."""
        before = table.room
        if len(after.moves) > len(before.moves):
            ply = len(before.moves)
            await self._append(P2pMovePlayed.new(
                self.run, id=derived_id(before.game_id, "p2p.move_played", ply), game_id=before.game_id,
                ply=ply, move=after.moves[-1], seat=seat, think_ms=think_ms, model_id=model_id,
                clocks=list(after.clocks or ())))
            self.moves_played += 1
            self.metrics.move_played(before.seats[seat].kind)
        ratings: list[protocol.RatingView | None] = [None, None]
        if after.status == "over" and before.status != "over":
            result = "draw" if after.result == "draw" else str(after.result)
            changes = None
            if after.rated:
                r = self.config.ratings
                changes = rating_changes(self.view, views.event_seats(after), result, self.clock(),
                                         period_s=r.period_s, tau=r.tau, starts=self.starts)
                ratings = [views.rating_view(Rating(c.rating, c.rd, c.volatility), r.provisional_rd)
                           for c in changes]
            await self._append(P2pGameFinished.new(
                self.run, id=derived_id(before.game_id, "p2p.game_finished"), game_id=before.game_id,
                result=result, reason=after.reason, plies=len(after.moves),
                ratings=list(changes) if changes else [None, None]))
            self.metrics.game_finished(after.reason or "")
        table.room = after
        table.changed.set()
        audience = self._audience(table)
        self._send(audience, views.state_view(after, self.clock()))
        if after.status == "over":
            self._send(audience, protocol.Over(game_id=after.game_id, result=after.result,
                                               reason=after.reason, ratings=ratings))
            self.tables.pop(after.game_id, None)
            self.finished[after.game_id] = after
            if len(self.finished) > FINISHED_KEPT:
                self.finished.pop(next(iter(self.finished)))
        else:
            self._schedule_ai(table)

    # -- presence and abandonment ------------------------------------------------------------

    def _presence(self, table: Table, now: float) -> None:
        """Start or stop the abandonment timer of the game's absent human."""
        room = table.room
        if room.status == "over":
            return
        humans = table.humans()
        absent = [i for i, player in humans if not self.sessions.get(player)]
        deserted = len(humans) == 2 and len(absent) == 2
        table.deserted_since = (table.deserted_since or now) if deserted else None
        if len(absent) == 1:
            seat = absent[0]
            deadline = room.abandon_deadline if room.abandoned == seat else now + self.settings.abandon_s
            after = rules.set_absent(room, seat, deadline)
        elif not absent:
            after = rules.set_absent(room, None, None)
        else:
            return  # nobody here to claim anything
        if after is not room:
            table.room = after
            self._send(self._audience(table), views.state_view(after, now))

    async def _broom(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.broom_every_s)
            now = self.clock()
            for client in list(self.clients):
                if client.player is None and now - client.connected > s.hello_timeout_s:
                    await client.ws.close(CLOSE_POLICY, "no hello")
                elif now - client.last_seen > s.idle_s:
                    await client.ws.close(CLOSE_GOING_AWAY, "idle")
            for table in list(self.tables.values()):
                await self._expire(table, now)

    async def _expire(self, table: Table, now: float) -> None:
        """The AI claims a game whose human left it longer than ``abandon_s`` ago; a game both
        humans left ``deserted_s`` ago ends unrated."""
        room = table.room
        if table.deserted_since is not None and now - table.deserted_since >= self.settings.deserted_s:
            async with table.lock:
                if table.room is room:
                    ended = rules.finish(msgspec.structs.replace(room, rated=False), "draw", "deserted", now)
                    try:
                        await self._commit(table, ended, 0)
                    except JetzeroError as exc:
                        log.warning("matchmaking: ending deserted %s failed: %s", room.game_id, exc)
            return
        if room.abandoned is None or room.abandon_deadline is None or now < room.abandon_deadline:
            return
        if room.seats[1 - room.abandoned].kind != "ai":
            return
        async with table.lock:
            if table.room is room:
                try:
                    ended = rules.finish(room, 1 - room.abandoned, "abandoned", now)
                    await self._commit(table, ended, room.abandoned)
                except JetzeroError as exc:
                    log.warning("matchmaking: abandoning %s failed: %s", room.game_id, exc)

    # -- clocks ------------------------------------------------------------------------------

    def _start_timer(self, table: Table) -> None:
        if table.room.clocks is None:
            return
        task = asyncio.create_task(self._flag_timer(table), name=f"clock-{table.room.game_id}")
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _flag_timer(self, table: Table) -> None:
        """Ends the game ``timeout`` when the seat to move runs out; looks again at each change."""
        while table.room.status == "playing":
            table.changed.clear()
            deadline = rules.flag_deadline(table.room)
            if deadline is None:
                return
            wait = deadline - self.clock()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(table.changed.wait(), timeout=min(wait, 60.0))
                continue
            async with table.lock:
                room = table.room
                flagged = rules.flag(room, self.clock())
                if flagged is None:
                    continue
                try:
                    await self._commit(table, flagged, rules.to_move(room) or 0)
                except JetzeroError as exc:
                    log.warning("matchmaking: the flag of %s not recorded: %s", room.game_id, exc)
                    await asyncio.sleep(1.0)

    # -- the AI ------------------------------------------------------------------------------

    def _schedule_ai(self, table: Table) -> None:
        to_move = rules.to_move(table.room)
        if to_move is None or table.room.seats[to_move].kind != "ai":
            return
        if table.ai_task is not None and not table.ai_task.done():
            return
        task = table.ai_task = asyncio.create_task(self._ai_turn(table), name=f"ai-{table.room.game_id}")
        self._ai_tasks.add(task)
        task.add_done_callback(self._ai_tasks.discard)

    async def _ai_turn(self, table: Table) -> None:
        for attempt in range(5):
            room = table.room
            to_move = rules.to_move(room)
            if to_move is None or room.seats[to_move].kind != "ai":
                return
            level = room.seats[to_move].level or 1
            try:
                answer = await self.ai.choose_move(room.game, list(room.moves), level, game_id=room.game_id,
                                                   model_id=room.seats[to_move].model,
                                                   budget_ms=rules.move_budget_ms(room, self.clock()))
            except Exception as exc:  # noqa: BLE001 - the AI failing must not take the server down
                log.warning("matchmaking: AI level %d could not move in %s: %s", level, room.game_id, exc)
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            self.metrics.ai_move(level, float(getattr(answer, "think_ms", 0.0)) / 1000.0)
            async with table.lock:
                now_room = table.room
                if now_room.status == "over" or len(now_room.moves) != len(room.moves):
                    return
                after = rules.play(now_room, to_move, int(answer.move), now=self.clock())
                if isinstance(after, rules.Refusal):
                    log.warning("matchmaking: AI move %s in %s: %s", answer.move, room.game_id, after.message)
                    continue
                table.ai_task = None  # the next AI turn (an exhibition) is a new task
                try:
                    await self._commit(table, after, to_move, float(getattr(answer, "think_ms", 0.0)),
                                       str(getattr(answer, "model_id", "")))
                except JetzeroError as exc:
                    log.warning("matchmaking: AI move in %s not recorded: %s", room.game_id, exc)
                return
