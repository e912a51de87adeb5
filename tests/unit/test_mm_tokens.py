"""Player tokens: signed by the server's secret; forged, altered or foreign tokens refused."""

from __future__ import annotations

import os
import stat

from handlers.matchmaking import tokens


def test_a_signed_token_names_its_player():
    player = tokens.new_player_id()
    assert tokens.verify(b"k", tokens.sign(b"k", player)) == player


def test_forged_altered_and_foreign_tokens_are_refused():
    alice, bob = tokens.new_player_id(), tokens.new_player_id()
    good = tokens.sign(b"secret", alice)
    mac = good.split(".", 1)[1]
    assert tokens.verify(b"secret", f"{bob}.{mac}") is None  # alice's signature on bob's id
    assert tokens.verify(b"other", good) is None  # another server's token
    assert tokens.verify(b"secret", good[:-1] + ("A" if good[-1] != "A" else "B")) is None
    for junk in ("", ".", "h-x", alice, f"{alice}.", "not-a-player.abc", "h-0123456789abcdef.\u00e9"):
        assert tokens.verify(b"secret", junk) is None


def test_secret_precedence_and_generated_file(tmp_path, monkeypatch):
    data = tmp_path / "data" / "nats"
    monkeypatch.delenv(tokens.SECRET_ENV, raising=False)
    assert tokens.secret("from-config", data) == b"from-config"
    monkeypatch.setenv(tokens.SECRET_ENV, "from-env")
    assert tokens.secret("from-config", data) == b"from-env"
    monkeypatch.delenv(tokens.SECRET_ENV)
    generated = tokens.secret(None, data)
    path = tokens.secret_path(data)
    assert path == tmp_path / "data" / "p2p_secret" and len(generated) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert tokens.secret(None, data) == generated  # kept, so tokens outlive a restart
