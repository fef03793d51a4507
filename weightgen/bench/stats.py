"""Steps-to-target with censoring, paired ratios, bootstrap intervals, rank correlation and the gap recovered.

A run that never reaches a target within its budget is *censored*: all we know is that it needs
more than the steps it ran. Dropping such runs would flatter the slow methods, and counting them
as "budget" would understate the gap, so every summary here carries an interval [lo, hi] for the
true value: a median of intervals is the interval of the medians of the lower and upper ends (the
median is monotone in every element). A summary is exact when lo == hi.

The bootstrap resamples concepts (with replacement, a seeded numpy generator) and takes the
median of each resample's lower ends and of its upper ends; the 95% interval runs from the 2.5th
percentile of the first to the 97.5th of the second, so censoring widens it and never hides in
it ("lower" / "higher" percentiles, no interpolation towards an infinite bound).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

INF = math.inf
Interval = tuple[float, float]  # (lo, hi): the true value lies in [lo, hi]; hi = inf for a lower bound only
Outcome = Literal["fewer", "tie", "more", "both-censored", "unknown"]
Unit = Literal["steps", "seconds"]
BOOTSTRAP = 2000  # resamples per interval
LEVEL = 0.95
SECONDS_FLOOR = 0.01  # a denominator that took no time at all counts as this long (a lower bound on the ratio)


@dataclass(frozen=True)
class Hit:
    """When a run first reached a target, or None when it did not within its budget (censored)."""

    steps: int | None  # step of the first evaluation at or below the target (0: the init already is)
    seconds: float | None  # init seconds + training seconds at that evaluation
    budget_steps: int  # the last evaluated step: a censored run needs more steps than this
    budget_seconds: float  # init + training seconds at the last evaluation

    @property
    def reached(self) -> bool:
        return self.steps is not None

    def value(self, unit: Unit = "steps") -> float | None:
        return self.steps if unit == "steps" else self.seconds

    def budget(self, unit: Unit = "steps") -> float:
        return self.budget_steps if unit == "steps" else self.budget_seconds

    def interval(self, unit: Unit = "steps") -> Interval:
        return (self.value(unit), self.value(unit)) if self.reached else (self.budget(unit), INF)

    def steps_interval(self) -> Interval:
        return self.interval("steps")

    def seconds_interval(self) -> Interval:
        return self.interval("seconds")

    def to_dict(self) -> dict:
        return {"steps": self.steps, "seconds": self.seconds, "budget_steps": self.budget_steps,
                "budget_seconds": self.budget_seconds, "reached": self.reached}

    @classmethod
    def from_dict(cls, d: dict) -> Hit:
        return cls(d["steps"], d["seconds"], d["budget_steps"], d["budget_seconds"])


def first_hit(history: Sequence[dict], target: float, init_seconds: float = 0.0, metric: str = "l1") -> Hit:
    """The first history record (step 0 included) whose `metric` is <= `target` (distances: lower is better).

    Steps are resolved to the evaluation schedule: a run that gets there between two evaluations
    is counted at the later one, for every method alike.
    """
    if not history:
        raise ValueError("empty training history")
    last = history[-1]
    budget_s = round(init_seconds + last["seconds"], 3)
    for rec in history:
        if rec["metrics"][metric] <= target:
            return Hit(rec["step"], round(init_seconds + rec["seconds"], 3), last["step"], budget_s)
    return Hit(None, None, last["step"], budget_s)


def median_interval(intervals: Sequence[Interval]) -> Interval:
    """Bounds on the median of values known only up to intervals."""
    if not intervals:
        raise ValueError("no values to take the median of")
    return (statistics.median(lo for lo, _ in intervals), statistics.median(hi for _, hi in intervals))


def ratio_interval(num: Hit, den: Hit, unit: Unit = "steps") -> Interval:
    """Bounds on value(num) / value(den): how many times more steps (or seconds) `num` needs than `den`.

    A den that reaches the target at no cost (step 0) has no finite ratio; it is counted as one
    step (SECONDS_FLOOR seconds), which keeps the bound a true lower bound (the real ratio is larger).
    """
    floor = 1 if unit == "steps" else SECONDS_FLOOR
    n, d = num.value(unit), den.value(unit)
    if num.reached and den.reached:
        if d == 0:
            return (1.0, 1.0) if n == 0 else (n / floor, INF)
        r = n / d
        return (r, r)
    if den.reached:  # num needs more than its budget
        return (num.budget(unit) / max(d, floor), INF)
    if num.reached:  # den needs more than its budget
        return (0.0, n / max(den.budget(unit), floor))
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


# -- bootstrap -----------------------------------------------------------------------------------------------------

def bootstrap_medians(values: np.ndarray, n_boot: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(n_boot, ...) medians over resampled rows of `values` (n, ...): rows are concepts, drawn with replacement."""
    values = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    return np.median(values[idx], axis=1)


def bootstrap_interval(intervals: Sequence[Interval], n_boot: int = BOOTSTRAP, seed: int = 0,
                       level: float = LEVEL) -> Interval:
    """A `level` bootstrap interval for the median of values known up to intervals (censoring: hi = inf)."""
    if not intervals:
        raise ValueError("no values to bootstrap")
    lo = bootstrap_medians(np.array([a for a, _ in intervals]), n_boot, seed)
    hi = bootstrap_medians(np.array([b for _, b in intervals]), n_boot, seed)  # same resamples: same seed
    tail = 100 * (1 - level) / 2
    return (float(np.percentile(lo, tail, method="lower")), float(np.percentile(hi, 100 - tail, method="higher")))


def median_band(values: np.ndarray, n_boot: int = 500, seed: int = 0,
                level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of `values` (concepts, points): the median over concepts and its bootstrap interval (lo, hi)."""
    medians = bootstrap_medians(values, n_boot, seed)  # (n_boot, points)
    tail = 100 * (1 - level) / 2
    return (np.median(values, axis=0), np.percentile(medians, tail, axis=0, method="lower"),
            np.percentile(medians, 100 - tail, axis=0, method="higher"))


def summarize_intervals(intervals: Sequence[Interval], seed: int = 0, digits: int = 1, lower: str = ">=") -> dict:
    """The median (an interval under censoring), its bootstrap 95% interval, and both as text."""
    median = median_interval(intervals)
    ci = bootstrap_interval(intervals, seed=seed)
    return {"n": len(intervals), "median": list(median), "ci95": list(ci),
            "text": format_interval(median, digits, lower=lower), "ci95_text": format_ci(ci, digits)}


# -- other statistics ------------------------------------------------------------------------------------------------

def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties given their mean rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None with fewer than 3 points or a constant series (no ranking to compare)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"spearman needs series of one length, got {len(x)} and {len(y)}")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])


def gap_recovered(base: float, init: float, oracle: float) -> float | None:
    """(d(base) - d(init)) / (d(base) - d(oracle)): 0 = the base's quality, 1 = the oracle's; None when the
    oracle is no better than the base (there is no gap to recover)."""
    gap = base - oracle
    return None if not gap > 0 else (base - init) / gap


# -- text -----------------------------------------------------------------------------------------------------------

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


def format_ci(ci: Interval, digits: int = 1) -> str:
    """'[3.1, 8.4]', '[3.1, inf]' (censoring leaves the top open)."""
    lo, hi = ci
    return f"[{lo:.{digits}f}, {'inf' if hi == INF else f'{hi:.{digits}f}'}]"
