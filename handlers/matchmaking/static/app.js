// The play page: one WebSocket to /ws on this page's own host (protocol v1,
// docs/matchmaking-protocol.md). The server owns every game; this page only draws the states it
// is sent and asks for moves. The token lives in localStorage, so a reload or a dropped
// connection comes back as the same player and resumes its games from the server's state.
"use strict";

const PROTOCOL = 1;
const TOKEN_KEY = "jetzero.token";
const SEATS_KEY = "jetzero.seats";           // game_id → our seat, for games resumed by state only
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 10000;
const PING_EVERY_MS = 20000;
const LIVE_EVERY_MS = 10000;                // the live games list is asked for again this often
const GAME_NAMES = { connect4: "Connect Four", tictactoe: "Tic-tac-toe" };
const REASONS = {
  win: "", draw: "board full", resign: "by resignation", agreement: "by agreement",
  abandoned: "opponent left", timeout: "on time", deserted: "both players left (unrated)",
};

const $ = (id) => document.getElementById(id);

const page = {
  ws: null,
  attempt: 0,            // reconnect attempts since the last welcome
  welcomes: 0,           // sessions opened since the page loaded (#status data-sessions)
  timer: null,           // pending reconnect
  pinger: null,
  lister: null,
  player: null,
  rating: null,
  seek: null,            // id of our seek in the human pool
  offer: null,           // level offered instead of a human
  game: null,            // {id, game, seat, players, state}
  clockTimer: null,
  clockBase: null,       // {at, clocks, toMove} when the last state arrived
};

// ---------------------------------------------------------------- connection

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function setStatus(state, text) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = text;
}

function connect() {
  page.timer = null;
  setStatus("connecting", page.attempt ? `reconnecting (try ${page.attempt + 1})…` : "connecting…");
  const ws = new WebSocket(socketUrl());
  page.ws = ws;
  ws.onopen = () => {
    const hello = { type: "hello", v: PROTOCOL };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) hello.token = token;
    send(hello);
  };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { showError(`unreadable frame from the server: ${e}`); return; }
    receive(msg);
  };
  ws.onclose = (ev) => {
    if (page.ws !== ws) return;
    page.ws = null;
    clearInterval(page.pinger);
    clearInterval(page.lister);
    scheduleReconnect(ev.code);
  };
  ws.onerror = () => {};   // onclose follows and schedules the retry
}

function scheduleReconnect(code) {
  if (page.timer) return;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** page.attempt);
  const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
  page.attempt += 1;
  setStatus("reconnecting", `disconnected (${code}); retrying in ${(delay / 1000).toFixed(1)} s`);
  renderControls();
  page.timer = setTimeout(connect, delay);
}

function send(msg) {
  if (!page.ws || page.ws.readyState !== WebSocket.OPEN) {
    showError("not connected; retrying");
    return false;
  }
  page.ws.send(JSON.stringify(msg));
  return true;
}

// ---------------------------------------------------------------- messages

function receive(msg) {
  switch (msg.type) {
    case "welcome": return onWelcome(msg);
    case "seeking": return onSeeking(msg);
    case "cancelled": page.seek = null; page.offer = null; return renderControls();
    case "offer_ai": page.offer = msg.level; page.seek = msg.seek; return renderControls();
    case "start": return onStart(msg);
    case "state": return onState(msg);
    case "over": return onOver(msg);
    case "games": return renderLiveGames(msg.games || []);
    case "error": return onError(msg);
    case "pong":
      if (typeof msg.t === "number") $("latency").textContent = `· ${Math.round(performance.now() - msg.t)} ms`;
      return;
    default: return;     // a newer server's message: ignored
  }
}

function onWelcome(msg) {
  page.attempt = 0;
  page.player = msg.player;
  localStorage.setItem(TOKEN_KEY, msg.token);
  $("player-name").textContent = msg.name || msg.player;
  setRating(msg.rating);
  setStatus("open", "connected");
  page.welcomes += 1;
  $("status").dataset.sessions = String(page.welcomes);
  clearInterval(page.pinger);
  page.pinger = setInterval(() => send({ type: "ping", t: performance.now() }), PING_EVERY_MS);
  clearInterval(page.lister);
  page.lister = setInterval(() => send({ type: "games" }), LIVE_EVERY_MS);
  hideError();
  renderControls();
  send({ type: "games" });
  // The server sends the state of each game we play; a game we watched before is watched again.
  if (page.game && page.game.seat === null && !(msg.games || []).includes(page.game.id)) {
    send({ type: "watch", game_id: page.game.id });
  }
}

function onSeeking(msg) {
  page.seek = msg.seek;
  const range = msg.range ? ` (rating ${Math.round(msg.range[0])}–${Math.round(msg.range[1])})` : "";
  $("seeking-text").textContent = `Looking for a ${GAME_NAMES[msg.game] || msg.game} opponent${range}…`;
  renderControls();
}

function onStart(msg) {
  page.seek = null;
  page.offer = null;
  page.game = { id: msg.game_id, game: msg.game, seat: msg.seat, players: msg.players || null, state: null };
  if (msg.seat !== null && msg.seat !== undefined) rememberSeat(msg.game_id, msg.seat);
  $("result").hidden = true;
  renderControls();
  onState(msg.state);
  send({ type: "games" });
}

function onState(state) {
  if (!state) return;
  if (!page.game || page.game.id !== state.game_id) {
    // A game resumed after a reconnect, or one we watch: the seat is ours if we remembered it.
    const seat = seatOf(state.game_id);
    page.game = { id: state.game_id, game: state.game, seat, players: playersFromList(state.game_id), state: null };
    renderControls();
  }
  const old = page.game.state;
  if (old && old.version > state.version) return;     // an older state arriving late
  page.game.state = state;
  page.game.game = state.game;
  renderGame();
}

function onOver(msg) {
  if (!page.game || page.game.id !== msg.game_id) return;
  const seat = page.game.seat;
  if (seat !== null && seat !== undefined && msg.ratings && msg.ratings[seat]) setRating(msg.ratings[seat]);
  if (page.game.state) {
    page.game.state = { ...page.game.state, status: "over", result: msg.result, reason: msg.reason };
  }
  renderGame();
  send({ type: "games" });
}

function onError(msg) {
  if (msg.state) onState(msg.state);
  if (msg.code === "bad_token") {
    // A token this server does not accept (a new secret): start afresh as a new player.
    localStorage.removeItem(TOKEN_KEY);
    send({ type: "hello", v: PROTOCOL });
  }
  showError(`${msg.message || msg.code}`, msg.code);
  if (page.game) $("board").classList.remove("waiting");
}

// ---------------------------------------------------------------- actions

function seekAi(level) {
  const seat = $("seat").value === "" ? null : Number($("seat").value);
  send({ type: "seek", game: $("game").value, opponent: "ai", level, seat });
}

function play(move) {
  const g = page.game;
  if (!g || !g.state || !myTurn() || !g.state.legal.includes(move)) return;
  if (send({ type: "move", game_id: g.id, move, version: g.state.version })) {
    $("board").classList.add("waiting");
  }
}

function wire() {
  for (const id of ["level-a", "level-b"]) {
    for (let level = 1; level <= 8; level += 1) {
      const option = document.createElement("option");
      option.value = String(level);
      option.textContent = `level ${level}`;
      $(id).appendChild(option);
    }
  }
  $("level-b").value = "8";
  $("seek-ai").onclick = () => seekAi(Number($("level").value));
  $("seek-human").onclick = () => {
    const seat = $("seat").value === "" ? null : Number($("seat").value);
    send({ type: "seek", game: $("game").value, opponent: "human", seat });
  };
  $("cancel-seek").onclick = () => { if (page.seek) send({ type: "cancel", seek: page.seek }); };
  $("accept-offer").onclick = () => {
    const level = page.offer;
    if (page.seek) send({ type: "cancel", seek: page.seek });
    seekAi(level);
  };
  $("exhibition").onclick = () => send({
    type: "exhibition", game: $("game").value, levels: [Number($("level-a").value), Number($("level-b").value)],
  });
  $("refresh-games").onclick = () => send({ type: "games" });
  $("resign").onclick = () => { if (page.game) send({ type: "resign", game_id: page.game.id }); };
  $("draw-offer").onclick = () => { if (page.game) send({ type: "draw_offer", game_id: page.game.id }); };
  $("draw-accept").onclick = () => { if (page.game) send({ type: "draw_accept", game_id: page.game.id }); };
  $("claim").onclick = () => { if (page.game) send({ type: "claim", game_id: page.game.id }); };
  $("board").addEventListener("click", (ev) => {
    const target = ev.target.closest("[data-move]");
    if (target) play(Number(target.dataset.move));
  });
  $("live-games").addEventListener("click", (ev) => {
    const target = ev.target.closest("[data-watch]");
    if (!target) return;
    page.game = null;
    send({ type: "watch", game_id: target.dataset.watch });
  });
  window.addEventListener("online", () => {
    if (page.timer) { clearTimeout(page.timer); page.timer = null; connect(); }
  });
  renderControls();
  connect();
}

// ---------------------------------------------------------------- seats and players

function seats() {
  try { return JSON.parse(localStorage.getItem(SEATS_KEY) || "{}"); } catch (e) { return {}; }
}

function rememberSeat(gameId, seat) {
  const all = seats();
  all[gameId] = seat;
  const ids = Object.keys(all);
  for (const old of ids.slice(0, Math.max(0, ids.length - 20))) delete all[old];
  localStorage.setItem(SEATS_KEY, JSON.stringify(all));
}

function seatOf(gameId) {
  const seat = seats()[gameId];
  return seat === 0 || seat === 1 ? seat : null;
}

const liveGames = new Map();

function playersFromList(gameId) {
  const entry = liveGames.get(gameId);
  return entry ? entry.players : null;
}

function playerLabel(p) {
  if (!p) return "—";
  if (p.kind === "ai") return `AI level ${p.level}`;
  const rating = typeof p.rating === "number" ? ` (${Math.round(p.rating)})` : "";
  return `${p.name || p.id}${rating}`;
}

// ---------------------------------------------------------------- drawing

function setRating(r) {
  page.rating = r || null;
  const el = $("rating");
  if (!r) { el.textContent = "—"; return; }
  el.textContent = r.provisional ? `${Math.round(r.rating)}?` : `${Math.round(r.rating)} ± ${Math.round(2 * r.rd)}`;
  el.dataset.rating = String(r.rating);
  el.title = `Glicko-2 rating ${r.rating.toFixed(1)}, RD ${r.rd.toFixed(1)}, volatility ${r.volatility.toFixed(4)}`
    + (r.provisional ? " (provisional)" : "");
}

function showError(text, code) {
  const el = $("error");
  el.textContent = text;
  el.dataset.code = code || "";
  el.hidden = false;
}

function hideError() { $("error").hidden = true; }

function myTurn() {
  const g = page.game;
  return !!(g && g.state && g.state.status === "playing" && g.seat !== null && g.seat !== undefined
    && g.state.to_move === g.seat);
}

function renderControls() {
  const open = !!(page.ws && page.ws.readyState === WebSocket.OPEN && page.player);
  const playing = !!(page.game && page.game.seat !== null && page.game.seat !== undefined
    && page.game.state && page.game.state.status === "playing");
  for (const id of ["seek-ai", "seek-human", "exhibition", "refresh-games"]) $(id).disabled = !open || !!page.seek;
  $("seeking").hidden = !page.seek;
  $("offer").hidden = page.offer === null || page.offer === undefined;
  if (!$("offer").hidden) $("offer-text").textContent = `No human yet. Play AI level ${page.offer} instead?`;
  $("resign").disabled = !open || !playing;
  $("draw-offer").disabled = !open || !playing;
}

function renderGame() {
  const g = page.game;
  const s = g.state;
  const view = $("game-view");
  view.dataset.gameId = g.id;
  view.dataset.seat = g.seat === null || g.seat === undefined ? "" : String(g.seat);
  view.classList.toggle("spectating", g.seat === null || g.seat === undefined);
  if (!s) return;
  const board = $("board");
  board.dataset.game = s.game;
  board.dataset.status = s.status;
  board.dataset.version = String(s.version);
  board.dataset.toMove = String(s.to_move);
  board.classList.remove("waiting");
  board.classList.toggle("my-turn", myTurn());
  board.classList.toggle("me-second", g.seat === 1);
  if (s.game === "tictactoe") drawTicTacToe(board, s); else drawConnect4(board, s);
  renderPlayers(g, s);
  renderMoves(s);
  renderResult(g, s);
  renderClocks(s);
  const abandoned = s.abandoned !== null && s.abandoned !== undefined && s.status === "playing";
  $("abandoned").hidden = !abandoned;
  if (abandoned) {
    const mine = s.abandoned === g.seat;
    $("abandoned-text").textContent = mine ? "Your abandonment timer is running." : "Your opponent left; their timer is running.";
    $("claim").hidden = mine || g.seat === null || g.seat === undefined;
  }
  const offered = s.draw_offer !== null && s.draw_offer !== undefined && s.status === "playing";
  $("draw-accept").hidden = !(offered && g.seat !== null && g.seat !== undefined && s.draw_offer !== g.seat);
  renderControls();
}

function lastMove(s) {
  return s.moves && s.moves.length ? s.moves[s.moves.length - 1] : null;
}

function drawConnect4(board, s) {
  const rows = s.board.length;
  const cols = rows ? s.board[0].length : 0;
  board.className = board.className.replace(/\bttt\b/, "").trim();
  board.classList.add("c4");
  board.replaceChildren();
  const legal = new Set(myTurn() ? s.legal : []);
  const last = lastMove(s);
  for (let c = 0; c < cols; c += 1) {
    const col = document.createElement("div");
    col.className = "column";
    col.dataset.move = String(c);
    col.setAttribute("role", "button");
    col.setAttribute("aria-label", `column ${c + 1}`);
    if (legal.has(c)) col.classList.add("legal");
    let top = true;
    let landing = -1;
    for (let r = 0; r < rows; r += 1) if (s.board[r][c] === 0) landing = r;
    for (let r = 0; r < rows; r += 1) {
      const cell = document.createElement("div");
      const v = s.board[r][c];
      cell.className = `cell s${v}`;
      cell.dataset.row = String(r);
      cell.dataset.col = String(c);
      if (v && top && c === last) cell.classList.add("last");
      if (r === landing && legal.has(c)) cell.classList.add("drop");
      if (v) top = false;
      col.appendChild(cell);
    }
    board.appendChild(col);
  }
}

function drawTicTacToe(board, s) {
  board.className = board.className.replace(/\bc4\b/, "").trim();
  board.classList.add("ttt");
  board.replaceChildren();
  const legal = new Set(myTurn() ? s.legal : []);
  const last = lastMove(s);
  const cols = s.board.length ? s.board[0].length : 3;
  s.board.forEach((row, r) => row.forEach((v, c) => {
    const move = r * cols + c;
    const cell = document.createElement("div");
    cell.className = `cell s${v}`;
    cell.dataset.move = String(move);
    cell.setAttribute("role", "button");
    cell.textContent = v === 1 ? "×" : v === 2 ? "○" : "";
    if (legal.has(move)) cell.classList.add("legal");
    if (move === last) cell.classList.add("last");
    board.appendChild(cell);
  }));
}

function moveLabel(game, move) {
  if (game === "tictactoe") return `${"abc"[move % 3]}${3 - Math.floor(move / 3)}`;
  return String(move + 1);
}

function renderMoves(s) {
  const list = $("move-list");
  list.dataset.moves = (s.moves || []).join(",");
  list.classList.toggle("ttt", s.game === "tictactoe");
  list.replaceChildren();
  const moves = s.moves || [];
  for (let i = 0; i < moves.length; i += 2) {
    const li = document.createElement("li");
    const first = document.createElement("span");
    first.className = "ply s1";
    first.dataset.ply = String(i);
    first.textContent = moveLabel(s.game, moves[i]);
    li.appendChild(first);
    if (i + 1 < moves.length) {
      const second = document.createElement("span");
      second.className = "ply s2";
      second.dataset.ply = String(i + 1);
      second.textContent = moveLabel(s.game, moves[i + 1]);
      li.appendChild(second);
    }
    list.appendChild(li);
  }
  list.scrollTop = list.scrollHeight;
}

function renderPlayers(g, s) {
  for (const seat of [0, 1]) {
    const el = $(`player-${seat}`);
    const p = g.players ? g.players[seat] : null;
    let label = playerLabel(p);
    if (seat === g.seat) label = `${p ? playerLabel(p) : "you"} · you`;
    el.querySelector(".name").textContent = label;
    const stone = el.querySelector(".stone");
    stone.classList.toggle("mark", s.game === "tictactoe");
    stone.textContent = s.game === "tictactoe" ? (seat === 0 ? "×" : "○") : "";
    el.classList.toggle("to-move", s.status === "playing" && s.to_move === seat);
  }
  const turn = $("turn");
  const name = GAME_NAMES[s.game] || s.game;
  if (s.status === "over") turn.textContent = `${name}: game over`;
  else if (g.seat === null || g.seat === undefined) turn.textContent = `${name}: watching, ${s.to_move === 0 ? "first" : "second"} player to move`;
  else if (myTurn()) turn.textContent = `${name}: your move`;
  else {
    const opp = g.players ? g.players[1 - g.seat] : null;
    turn.textContent = `${name}: ${opp && opp.kind === "ai" ? "the AI is thinking…" : "waiting for your opponent…"}`;
  }
}

function renderResult(g, s) {
  const el = $("result");
  if (s.status !== "over") { el.hidden = true; el.dataset.result = ""; el.dataset.reason = ""; return; }
  const result = s.result === null || s.result === undefined ? "" : String(s.result);
  el.dataset.result = result;
  el.dataset.reason = s.reason || "";
  let why = s.reason in REASONS ? REASONS[s.reason] : (s.reason || "");
  if (s.reason === "win") why = s.game === "tictactoe" ? "three in a row" : "four in a row";
  let text;
  if (result === "draw") text = "Draw";
  else if (g.seat !== null && g.seat !== undefined) text = Number(result) === g.seat ? "You won" : "You lost";
  else text = `${Number(result) === 0 ? "First" : "Second"} player won`;
  el.textContent = why ? `${text} · ${why}` : text;
  el.className = result === "draw" ? "draw" : (g.seat !== null && g.seat !== undefined
    ? (Number(result) === g.seat ? "won" : "lost") : "");
  el.hidden = false;
}

function renderClocks(s) {
  clearInterval(page.clockTimer);
  const has = Array.isArray(s.clocks);
  for (const seat of [0, 1]) $(`clock-${seat}`).hidden = !has;
  if (!has) return;
  page.clockBase = { at: performance.now(), clocks: s.clocks.slice(), toMove: s.to_move, playing: s.status === "playing" };
  const tick = () => {
    const b = page.clockBase;
    for (const seat of [0, 1]) {
      let ms = b.clocks[seat];
      if (b.playing && seat === b.toMove) ms = Math.max(0, ms - (performance.now() - b.at));
      const el = $(`clock-${seat}`);
      el.textContent = formatClock(ms);
      el.dataset.ms = String(Math.round(ms));
      el.classList.toggle("running", b.playing && seat === b.toMove);
      el.classList.toggle("low", ms < 10000);
    }
  };
  tick();
  if (page.clockBase.playing) page.clockTimer = setInterval(tick, 200);
}

function formatClock(ms) {
  const total = Math.ceil(ms / 1000);
  const m = Math.floor(total / 60);
  const sec = String(total % 60).padStart(2, "0");
  return ms < 10000 ? `${m}:${sec}.${Math.floor((ms % 1000) / 100)}` : `${m}:${sec}`;
}

function renderLiveGames(games) {
  liveGames.clear();
  const list = $("live-games");
  list.replaceChildren();
  for (const entry of games) {
    liveGames.set(entry.game_id, entry);
    const li = document.createElement("li");
    const players = (entry.players || []).map(playerLabel).join(" vs ");
    const text = document.createElement("span");
    text.textContent = `${GAME_NAMES[entry.game] || entry.game}: ${players} · ${Array.isArray(entry.moves) ? entry.moves.length : (entry.moves ?? 0)} moves`;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Watch";
    button.dataset.watch = entry.game_id;
    li.append(text, button);
    list.appendChild(li);
  }
  if (!games.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "none";
    list.appendChild(li);
  }
  if (page.game && !page.game.players && liveGames.has(page.game.id)) {
    page.game.players = liveGames.get(page.game.id).players;
    if (page.game.state) renderGame();
  }
}

document.addEventListener("DOMContentLoaded", wire);
