"""Promotion: which candidate is evaluated, match play in WORK units, the referee, the
promoter (promote, reject, roll back), and the manager behind ``model_promotion_manager.py``
and ``jetzero models``: models in and out, judging a candidate, the daemon, history, rollback."""

__all__ = [
    "config", "daemon", "eval_worker", "evaluator", "evaluator_service", "history", "judge",
    "manager", "match_play", "models", "players_cache", "promoter", "promoter_service", "referee",
]
