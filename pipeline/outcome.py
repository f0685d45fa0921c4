"""What running a run comes to, and the error a plan that cannot start raises: shared by the executors
(runner.py runs a plan in this process, ray_executor.py as Ray tasks), so neither imports the other."""
from __future__ import annotations

from dataclasses import dataclass

from core.config import ConfigError


class PlanError(ConfigError):
    """The plan cannot start (data or models missing). Nothing has been written. main.py: one line, exit 2."""


HELD = "held"  # another process holds the run


@dataclass
class Outcome:
    run_id: str
    status: str  # complete | failed | held (by another process, which runs it)
    seconds: float
    error: str | None = None
    skipped: bool = False
    note: str | None = None  # why it was skipped
