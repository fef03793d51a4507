"""When a LoRA run saves its checkpoints and stops: after a fixed number of steps, or at measured convergence.

Both schedules keep K checkpoints spread evenly over the last `window` fraction of the run
(`late_steps`; p-diff's recipe: samples of a converged LoRA, not of its warm-up).

- `FixedSchedule`: the run is `max_steps` long, its checkpoints are known from the start.
- `ConvergenceSchedule`: every `every` steps the caller scores fixed crops of the concept's train
  canvases (`observe`); once `Plateau` says the L1 stopped improving at step s (at the earliest
  `min_steps`), the run's length becomes T = s / (1 - window), so its last `window` fraction starts
  at the converged step, and the K checkpoints are spread over s .. T. A run that never converges
  is cut at the fixed schedule's first checkpoint step, which makes it the fixed schedule exactly.

Pure Python (no torch), so configs can validate schedules without importing torch.
"""

from __future__ import annotations

import math

from gan.config import ConvergenceConfig
from gan.errors import GanError


def late_steps(total: int, k: int, window: float) -> tuple[int, ...]:
    """K steps spread evenly over the last `window` fraction of `total` steps, the last one at `total`."""
    if k == 1:
        return (total,)
    start = total * (1.0 - window)
    steps = tuple(sorted({round(start + (total - start) * i / (k - 1)) for i in range(k)}))
    if len(steps) < k or steps[0] < 1:
        raise GanError(f"cannot place k={k} distinct checkpoints in the last {window:.0%} of {total} steps "
                       f"(got {list(steps)}); raise the steps or `checkpoint_window`, or lower k")
    return steps


def run_length(converged_step: int, window: float) -> int:
    """The length of a run whose last `window` fraction starts at `converged_step`."""
    return converged_step if window >= 1.0 else max(converged_step, round(converged_step / (1.0 - window)))


class Plateau:
    """Lower is better; converged once `patience` checks in a row beat the best by less than `min_delta` of it."""

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.bad = math.inf, 0

    def update(self, value: float) -> bool:
        if value < self.best * (1.0 - self.min_delta):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


class FixedSchedule:
    """Exactly `max_steps` steps, checkpoints at `checkpoint_steps`."""

    converged_step: int | None = None

    def __init__(self, max_steps: int, checkpoint_steps: tuple[int, ...]):
        self.end, self.checkpoint_steps = max_steps, tuple(checkpoint_steps)
        self.checks: list[tuple[int, float]] = []

    def needs_check(self, step: int) -> bool:
        return False

    def observe(self, step: int, value: float) -> None:
        raise GanError("a fixed schedule takes no convergence checks")


class ConvergenceSchedule:
    """Until converged: a check every `rule.every` steps; then a known end and K late checkpoints."""

    def __init__(self, rule: ConvergenceConfig, max_steps: int, k: int, window: float):
        self.rule, self.k, self.window = rule, k, window
        # Not converged by the fixed schedule's first checkpoint step: from there on it is the fixed schedule.
        self.cap = max(1, round(max_steps * (1.0 - window)))
        self.plateau = Plateau(rule.patience, rule.min_delta)
        self.end: int | None = None  # known once converged
        self.checkpoint_steps: tuple[int, ...] = ()
        self.converged_step: int | None = None
        self.checks: list[tuple[int, float]] = []  # (step, validation L1)
        self.max_steps = max_steps
        late_steps(run_length(min(rule.min_steps, max_steps), window), k, window)  # the earliest end must fit K

    def needs_check(self, step: int) -> bool:
        return self.end is None and (step % self.rule.every == 0 or step >= self.cap)

    def observe(self, step: int, value: float) -> None:
        """Record the validation L1 at `step`; decides the end when it has plateaued (or at the cap)."""
        if self.end is not None:
            raise GanError(f"the run already converged at step {self.converged_step}")
        self.checks.append((step, value))
        flat = self.plateau.update(value)
        if step >= self.cap:
            self._converge(step, self.max_steps)
        elif flat and step >= self.rule.min_steps:
            self._converge(step, min(self.max_steps, run_length(step, self.window)))

    def _converge(self, step: int, end: int) -> None:
        self.converged_step, self.end = step, end
        self.checkpoint_steps = late_steps(end, self.k, self.window)
