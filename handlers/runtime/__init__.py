"""What every surface runs in: the handler shell (consume, decide, append, ack) and the
service shell (connect, follow the loop status, stop on signal)."""

__all__ = ["shell", "service"]
