"""Reactors and workers, one subpackage per surface.

- ``runtime``: what every surface runs in: the handler shell and the service shell.
- ``loop``: the unified loop: its config, supervisor and processes, selfplay, sync, trainer,
  controller, health, metrics, status.
- ``promotion``: evaluation, match play, referee, promoter and the promotion manager.

Imports between surfaces point one way: ``promotion → loop → runtime`` (the cluster,
matchmaking and pipeline surfaces sit above ``promotion``). ``tests/unit/test_layers.py``
keeps it so.
"""

__all__ = ["runtime", "loop", "promotion"]
