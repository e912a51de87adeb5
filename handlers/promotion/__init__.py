"""Promotion: which candidate is evaluated, match play in WORK units, the referee, the
promoter (promote, reject, roll back) and the manager behind ``model_promotion_manager.py``."""

__all__ = [
    "config", "eval_worker", "evaluator", "evaluator_service", "manager", "match_play",
    "players_cache", "promoter", "promoter_service", "referee",
]
