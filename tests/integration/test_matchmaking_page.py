"""The play page in a real headless Chromium against the real matchmaking server and nats-server.

Debian's ``/usr/bin/chromium`` driven by Selenium through ``/usr/bin/chromedriver`` (both paths
given, so Selenium Manager downloads nothing). Absent: the tests skip, saying why, except under
CI (``CI`` set), where the browser is installed and its absence is a failure. One browser for
the module; each test gets its own nats-server and its own ``jetzero p2p serve`` process.
Results are checked against the server's record of the game: its events in the log.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.games import get_game
from streams import names
from streams.config import NatsSettings
from streams.connection import connect
from streams.matchmaking_events import P2pGameFinished, P2pGameStarted, P2pMovePlayed
from streams.store import EventStore
from tests.loop_configs import write_tiny_loop

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
RUN = "page"
WAIT_S = 30.0


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return None
    return f"no headless browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"


@pytest.fixture(scope="module")
def browser():
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI installs it, so this is a broken CI image")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


class Server:
    """``jetzero p2p serve`` (the command a user runs) for run ``RUN`` on the test's nats-server,
    on a port of its choosing (``--port 0``, read from its ready line)."""

    READY = re.compile(r"matchmaking on http://[^:/]+:(\d+)/")

    def __init__(self, nats: NatsSettings, tmp: Path):
        self.config, _ = write_tiny_loop(nats, tmp, run=RUN)
        self.out = tmp / "p2p-serve.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def __enter__(self) -> Server:
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.cli", "p2p", "serve", "--config", str(self.config),
                 "--host", "127.0.0.1", "--port", "0"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            if found := self.READY.search(self.output()):
                self.port = int(found.group(1))
                return self
            time.sleep(0.1)  # polling the ready line, with a deadline
        self.__exit__()
        raise AssertionError(f"jetzero p2p serve did not start:\n{self.output()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(nats_settings, tmp_path) -> Iterator[Server]:
    with Server(nats_settings, tmp_path) as running:
        yield running


class Cable:
    """A TCP forwarder on a free loopback port to ``port``; ``cut()`` drops every connection
    through it (the browser sees its socket die, as when a network goes away), new ones pass."""

    def __init__(self, port: int):
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                return
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> int:
        """Drop every connection open now; how many sockets were dropped."""
        with self.lock:
            dropped, self.open = self.open, []
        for s in dropped:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(dropped)

    def close(self) -> None:
        self.listener.close()
        self.cut()


# -- the log ------------------------------------------------------------------------------------


async def _game_events(nats: NatsSettings, game_id: str) -> list:
    log = await connect(nats, name="page-test-reader", long_lived=False)
    try:
        store = EventStore(log)
        subjects = names.aggregate_filter(names.EVENTS, RUN, names.p2p_game_aggregate(game_id))
        return [stored.event async for stored in store.read(subject_filter=subjects)]
    finally:
        await log.close()


def game_record(nats: NatsSettings, game_id: str) -> tuple[P2pGameStarted, list[int], P2pGameFinished | None]:
    """The server's record of one game: its start, its moves in order, its end (if any)."""
    events = asyncio.run(_game_events(nats, game_id))
    started = [e for e in events if isinstance(e, P2pGameStarted)]
    moves = sorted((e for e in events if isinstance(e, P2pMovePlayed)), key=lambda e: e.ply)
    finished = [e for e in events if isinstance(e, P2pGameFinished)]
    assert len(started) == 1, f"game {game_id}: {len(started)} p2p.game_started events"
    assert [m.ply for m in moves] == list(range(len(moves))), f"game {game_id}: plies out of order"
    return started[0], [m.move for m in moves], (finished[0] if finished else None)


# -- driving the page ---------------------------------------------------------------------------


def wait(driver, condition, what: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        status = driver.find_element("id", "status").text
        error = driver.find_element("id", "error").text
        raise AssertionError(f"timed out waiting for {what} (status: {status!r}, error: {error!r})") from None


def attr(driver, css: str, name: str) -> str:
    return driver.find_element("css selector", css).get_attribute(name) or ""


def page_moves(driver) -> list[int]:
    text = attr(driver, "#move-list", "data-moves")
    return [int(m) for m in text.split(",")] if text else []


def open_page(driver, port: int) -> None:
    driver.get(f"http://127.0.0.1:{port}/")
    driver.execute_script("localStorage.clear()")  # a new player in every test
    driver.refresh()
    wait(driver, lambda d: attr(d, "#status", "data-state") == "open", "the page to connect")


def start_ai_game(driver, game: str, level: int, seat: int | None = None) -> str:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "game")).select_by_value(game)
    Select(driver.find_element("id", "seat")).select_by_value("" if seat is None else str(seat))
    Select(driver.find_element("id", "level")).select_by_value(str(level))
    previous = attr(driver, "#game-view", "data-game-id")
    driver.find_element("id", "seek-ai").click()
    wait(driver, lambda d: attr(d, "#game-view", "data-game-id") not in ("", previous), "the game to start")
    return attr(driver, "#game-view", "data-game-id")


def my_turn_or_over(driver) -> bool:
    board = driver.find_element("id", "board")
    return board.get_attribute("data-status") == "over" or "my-turn" in (board.get_attribute("class") or "")


def play_one(driver, game: str, rng: random.Random) -> None:
    """Click one highlighted move (checking the highlight is exactly the rules' legal moves) and
    wait until the server's answer is drawn: the opponent's reply, or the end."""
    wait(driver, my_turn_or_over, "our turn")
    moves = page_moves(driver)
    rules = get_game(game).from_moves(moves)
    highlighted = sorted(int(e.get_attribute("data-move"))
                         for e in driver.find_elements("css selector", "#board .legal[data-move]"))
    assert highlighted == sorted(rules.legal_moves()), f"after {moves}: highlighted {highlighted}"
    version = int(attr(driver, "#board", "data-version"))
    move = rng.choice(highlighted)
    driver.find_element("css selector", f'#board .legal[data-move="{move}"]').click()
    wait(driver, lambda d: int(attr(d, "#board", "data-version")) > version and my_turn_or_over(d),
         f"the answer to move {move}")
    assert page_moves(driver)[len(moves)] == move


def play_to_the_end(driver, game: str, rng: random.Random) -> None:
    while attr(driver, "#board", "data-status") != "over":
        play_one(driver, game, rng)
    wait(driver, lambda d: d.find_element("id", "result").is_displayed(), "the result")


def check_against_the_log(driver, nats: NatsSettings, game_id: str, game: str) -> P2pGameFinished:
    started, moves, finished = game_record(nats, game_id)
    assert finished is not None, f"game {game_id} shows a result, but the log has no p2p.game_finished"
    assert started.game == game
    assert page_moves(driver) == moves
    seat = int(attr(driver, "#game-view", "data-seat"))
    assert started.seats[seat].kind == "human" and started.seats[1 - seat].level == 1
    result = driver.find_element("id", "result")
    assert result.get_attribute("data-result") == finished.result
    assert result.get_attribute("data-reason") == finished.reason
    won = "You won" if finished.result == str(seat) else "You lost"
    expected = "Draw" if finished.result == "draw" else won
    assert result.text.startswith(expected), f"{result.text!r}, the log says {finished.result}"
    change = finished.ratings[seat]
    assert change is not None
    wait(driver, lambda d: abs(float(attr(d, "#rating", "data-rating") or "nan") - change.rating) < 0.006,
         f"the rating of the log, {change.rating} (sent to 2 decimals)")
    assert driver.find_element("id", "rating").text.startswith(str(round(change.rating)))
    return finished


# -- the tests ----------------------------------------------------------------------------------


def test_a_game_against_the_lowest_level_played_by_clicks_to_the_end(browser, server, nats_settings):
    open_page(browser, server.port)
    game_id = start_ai_game(browser, "connect4", level=1)
    play_to_the_end(browser, "connect4", random.Random(14))
    check_against_the_log(browser, nats_settings, game_id, "connect4")


def test_a_dropped_connection_resumes_the_game_with_the_same_moves(browser, server, nats_settings):
    cable = Cable(server.port)
    try:
        open_page(browser, cable.port)
        # Moving first, nobody can have four in a row before our fourth move: the game is on
        # through the drop and the reload below.
        game_id = start_ai_game(browser, "connect4", level=1, seat=0)
        rng = random.Random(7)
        for _ in range(2):
            play_one(browser, "connect4", rng)
        before = page_moves(browser)
        sessions = int(attr(browser, "#status", "data-sessions"))
        assert cable.cut() > 0
        wait(browser, lambda d: int(attr(d, "#status", "data-sessions") or 0) > sessions
             and attr(d, "#status", "data-state") == "open", "the page to reconnect")
        assert attr(browser, "#game-view", "data-game-id") == game_id
        wait(browser, lambda d: page_moves(d) == before and my_turn_or_over(d), "the game resumed")
        _, logged, _ = game_record(nats_settings, game_id)
        assert logged == before
        play_one(browser, "connect4", rng)  # the new connection plays as the same player
        # A reload keeps nothing but the token: the game comes back from the server's state.
        before = page_moves(browser)
        assert len(before) == 6
        browser.refresh()
        wait(browser, lambda d: attr(d, "#status", "data-state") == "open", "the reloaded page")
        wait(browser, lambda d: attr(d, "#game-view", "data-game-id") == game_id, "the game after a reload")
        assert page_moves(browser) == before == game_record(nats_settings, game_id)[1]
        assert attr(browser, "#game-view", "data-seat") == "0"
        play_to_the_end(browser, "connect4", rng)
        check_against_the_log(browser, nats_settings, game_id, "connect4")
    finally:
        cable.close()
