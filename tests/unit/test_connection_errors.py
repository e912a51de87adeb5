"""The client's error log names the error even when nats-py's exception has no message."""

from __future__ import annotations

import asyncio
import logging

from streams.connection import _error_cb, _error_text


def test_an_error_without_a_message_is_named_by_its_class(caplog):
    assert _error_text(ConnectionRefusedError()) == "ConnectionRefusedError"
    assert _error_text(OSError("connect failed")) == "OSError: connect failed"
    with caplog.at_level(logging.WARNING, logger="streams.connection"):
        asyncio.run(_error_cb(TimeoutError()))
    assert [r.getMessage() for r in caplog.records] == ["nats: TimeoutError"]
