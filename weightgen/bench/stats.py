"""Steps-to-target with censoring, and the medians and comparisons built on it.

A run that never reaches the oracle's quality within its budget is *censored*: all we know is
that it needs more than the steps it ran. Dropping such runs would flatter the slow methods, and
counting them as "budget" would understate the gap, so every summary here carries an interval
[lo, hi] for the true value: a median of intervals is the interval of the medians of the lower
and upper ends (the median is monotone in every element). A summary is exact when lo == hi.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

INF = math.inf
Interval = tuple[float, float]  # (lo, hi): the true value lies in [lo, hi]; hi = inf for a lower bound only
Outcome = Literal["fewer", "tie", "more", "both-censored", "unknown"]


@dataclass(frozen=True)
class Hit:
    """When a run first reached the target, or None when it did not within its budget (censored)."""

    steps: int | None  # step of the first evaluation with test L1 <= target (0: the init already does)
    seconds: float | None  # init seconds + training seconds at that evaluation
    budget_steps: int  # the last evaluated step: a censored run needs more steps than this
    budget_seconds: float  # init + training seconds at the last evaluation

    @property
    def reached(self) -> bool:
        return self.steps is not None

    def steps_interval(self) -> Interval:
        return (self.steps, self.steps) if self.reached else (self.budget_steps, INF)

    def seconds_interval(self) -> Interval:
        return (self.seconds, self.seconds) if self.reached else (self.budget_seconds, INF)

    def to_dict(self) -> dict:
        return {"steps": self.steps, "seconds": self.seconds, "budget_steps": self.budget_steps,
                "budget_seconds": self.budget_seconds, "reached": self.reached}

    @classmethod
    def from_dict(cls, d: dict) -> Hit:
        return cls(d["steps"], d["seconds"], d["budget_steps"], d["budget_seconds"])


def first_hit(history: Sequence[dict], target_l1: float, init_seconds: float = 0.0) -> Hit:
    """The first history record (step 0 included) whose test L1 is <= `target_l1`.

    Steps are resolved to the evaluation interval: a run that gets there between two evaluations
    is counted at the later one, for every method alike.
    """
    if not history:
        raise ValueError("empty training history")
    last = history[-1]
    budget_s = round(init_seconds + last["seconds"], 3)
    for rec in history:
        if rec["metrics"]["l1"] <= target_l1:
            return Hit(rec["step"], round(init_seconds + rec["seconds"], 3), last["step"], budget_s)
    return Hit(None, None, last["step"], budget_s)


def median_interval(intervals: Sequence[Interval]) -> Interval:
    """Bounds on the median of values known only up to intervals."""
    if not intervals:
        raise ValueError("no values to take the median of")
    return (statistics.median(lo for lo, _ in intervals), statistics.median(hi for _, hi in intervals))


def ratio_interval(num: Hit, den: Hit) -> Interval:
    """Bounds on steps(num) / steps(den): how many times more steps `num` needs than `den`.

    A den that reaches the target at step 0 has no finite ratio; it is counted as if it took one
    step, which keeps the bound a true lower bound (the real ratio is larger).
    """
    if num.reached and den.reached:
        if den.steps == 0:
            return (1.0, 1.0) if num.steps == 0 else (float(num.steps), INF)
        r = num.steps / den.steps
        return (r, r)
    if den.reached:  # num needs more than its budget
        return (num.budget_steps / max(den.steps, 1), INF)
    if num.reached:  # den needs more than its budget
        return (0.0, num.steps / max(den.budget_steps, 1))
    return (0.0, INF)


def compare_steps(a: Hit, b: Hit) -> Outcome:
    """Does `a` need fewer steps than `b`? Censoring decides only when the budgets allow it."""
    if a.reached and b.reached:
        return "fewer" if a.steps < b.steps else "tie" if a.steps == b.steps else "more"
    if a.reached:  # b needs > b.budget_steps
        return "fewer" if a.steps <= b.budget_steps else "unknown"
    if b.reached:  # a needs > a.budget_steps
        return "more" if b.steps <= a.budget_steps else "unknown"
    return "both-censored"


def format_interval(iv: Interval, digits: int = 0, lower: str = ">") -> str:
    """'12', '>200' (censored: a lower bound), '100-150' (bounded both ways), '?' (unbounded)."""
    lo, hi = iv

    def f(x: float) -> str:
        return f"{x:.{digits}f}"

    if lo == hi:
        return f(lo)
    if hi == INF:
        return f"{lower}{f(lo)}" if lo > 0 else "?"
    if lo == 0:
        return f"<={f(hi)}"
    return f"{f(lo)}-{f(hi)}"
