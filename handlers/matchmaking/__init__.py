"""Matchmaking: a WebSocket server where humans play the trained AIs and each other — protocol,
games rebuilt from their events, pools, difficulty levels, Glicko-2 ratings, the browser page."""

__all__ = []  # type: ignore[var-annotated]  # each module adds its name here
