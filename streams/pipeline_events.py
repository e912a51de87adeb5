"""Events of the CI pipeline surface (``handlers/pipeline``) on the ``EVENTS`` stream.

A validation of a pull request is one ``pipeline.validation_requested`` (what is compared:
PR, base ref and commit, candidate and baseline models, the gates and settings) and one
``pipeline.validation_completed`` (the verdict, the exit code, and every gate with its
figures), both on the pipeline aggregate and correlated by ``validation_id``. New fields get
defaults; types never change.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams import names
from streams.envelope import Event


class GateOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One gate of a validation: ``status`` passed | failed | error | skipped, ``message`` the
    readable reason, ``figures`` every number behind it."""

    gate: str
    status: str
    message: str = ""
    figures: dict[str, float] = {}
    seconds: float = 0.0


class _Pipeline(Event, frozen=True, kw_only=True):
    validation_id: str
    pr: int = 0

    def aggregate(self) -> str:
        return names.AGG_PIPELINE


class ValidationRequested(_Pipeline, frozen=True, kw_only=True, tag="pipeline.validation_requested"):
    base_ref: str = ""
    base_commit: str = ""
    head_commit: str = ""
    candidate_model: str = ""
    candidate_digest: str = ""
    baseline_model: str = ""
    baseline_digest: str = ""
    gates: list[str] = []
    settings: dict[str, Any] = {}  # the pipeline config in force, whole
    host: str = ""


class ValidationCompleted(_Pipeline, frozen=True, kw_only=True, tag="pipeline.validation_completed"):
    verdict: str  # passed | failed | error
    exit_code: int
    reason: str = ""
    gates: list[GateOutcome] = []
    seconds: float = 0.0
    base_commit: str = ""
    head_commit: str = ""


PipelineEvent = ValidationRequested | ValidationCompleted
