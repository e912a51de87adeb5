"""Matchmaking: a WebSocket server where humans play the trained AIs and each other — protocol,
games rebuilt from their events, pools, difficulty levels, Glicko-2 ratings, the browser page."""

__all__ = ["ai", "ai_worker", "calibrate", "config", "games", "http_files", "levels", "pools", "protocol",
           "search_worker", "server", "service", "tokens", "views"]  # each module adds its name here
