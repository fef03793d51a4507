"""Typed, validated configs of the zoo stage: the base model (`BaseConfig`) and the LoRA zoo (`ZooConfig`).

The defaults are the recorded default zoo (scripts/build_zoo.sh): 64x64 procedural pairs, the gan
package's default LoRA, and a per-concept recipe that fits 80 concepts in under 2 hours on a
2-core CPU with 2 ranks. This module imports no torch, so the CLI can build its choices from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gan.config import (
    BaseTrainConfig,
    ConvergenceConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from gan.convergence import late_steps, run_length
from gan.errors import GanError
from weightgen.config import Config
from weightgen.errors import WeightgenError

SPLITS = ("train", "heldout")  # the zoo manifest's "split" values
# Per-concept LoRA recipe of the default zoo. 400 steps at ~0.3 s (1 thread, batch 8, 64x64) is ~2 min
# of training per concept: 80 concepts / 2 ranks x ~150 s (with evaluation and saving) is ~1.7 h.
DEFAULT_ZOO_STEPS = 400
DEFAULT_BASE_STEPS = 1000


def default_zoo_train() -> GanTrainConfig:
    """`weightgen train-lora`'s recipe: the LoRA starts at zero, so it takes a high rate; D keeps pix2pix's."""
    return GanTrainConfig(batch_size=8, lr=1e-3, lr_d=2e-4, max_steps=DEFAULT_ZOO_STEPS, eval_every=50, seed=0)


def default_base_train() -> BaseTrainConfig:
    """The base recipe: a spectral-norm PatchGAN (D and G stay balanced). Not the residual generator:
    its own output is better, but LoRAs on it learn far less (docs/base_ablation.md)."""
    return BaseTrainConfig(GeneratorConfig(image_size=64), DiscriminatorConfig(spectral_norm=True),
                           train=GanTrainConfig(batch_size=8, lr=2e-4, max_steps=DEFAULT_BASE_STEPS, eval_every=250))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise WeightgenError(message)


def _check_threads(threads: Any) -> None:
    _check(threads is None or (isinstance(threads, int) and not isinstance(threads, bool) and threads > 0),
           f"`threads` should be a positive integer or None (torch's default), got {threads!r}")


def checkpoint_steps(max_steps: int, k: int, window: float) -> tuple[int, ...]:
    """K steps spread evenly over the last `window` fraction of training, the last one at `max_steps`.

    Late steps only: the zoo wants K samples of a converged LoRA (p-diff's recipe), not its warm-up.
    The rule is gan.convergence.late_steps, which a convergence schedule also places its K by.
    """
    try:
        return late_steps(max_steps, k, window)
    except GanError as e:
        raise WeightgenError(str(e)) from None


@dataclass
class ZooConfig:
    """One LoRA per concept on a frozen base, K late checkpoints each; see weightgen.zoo.build."""

    out: str  # zoo folder (manifest.json, plan.json, <concept_id>/ckpt-<k>/ peft adapters)
    base: str  # base folder written by `weightgen zoo base` / `weightgen train-base`
    pairs: str  # pair-dataset folder; missing concepts are built into it with `pairs_settings`
    lora: LoraSettings = field(default_factory=LoraSettings)  # one init seed for all: one aligned weight space
    train: GanTrainConfig = field(default_factory=default_zoo_train)  # per-concept recipe (checkpoint_steps are set here)
    k: int = 5  # checkpoints kept per concept
    checkpoint_window: float = 0.25  # the K checkpoints are spread over this last fraction of the steps
    splits: tuple[str, ...] = SPLITS  # which splits of the plan to build ("heldout": the benchmark's oracle)
    build_pairs: bool = True  # build missing pairs on the fly; False: a missing concept is an error
    pairs_settings: dict = field(default_factory=dict)  # PairsConfig fields (editor, image_size, ...) for missing pairs
    threads: int | None = 1  # torch threads per rank on CPU (None: torch's default); 1: fastest when ranks share cores
    barrier_timeout: float = 24 * 3600.0  # seconds a rank waits for the others (the slowest shard) before failing
    overwrite: bool = False  # start over when the folder holds a zoo built with other settings
    # Concepts trained together in one batched pass (gan.multi_trainer: one shared base forward, per-concept
    # LoRA deltas and discriminators); a concept trains as it would alone. 1: one at a time (gan.trainer).
    concepts_per_pass: int = 1
    # Stop each concept once its L1 on fixed crops of its own train canvases plateaus, then keep K checkpoints
    # over the last `checkpoint_window` of that run (gan.convergence); at most `train.max_steps`. None: exactly
    # `train.max_steps` steps.
    convergence: ConvergenceConfig | None = None

    def __post_init__(self) -> None:
        for name in ("out", "base", "pairs"):
            _check(isinstance(getattr(self, name), str) and getattr(self, name),
                   f"`{name}` should be a folder path, got {getattr(self, name)!r}")
        _check(isinstance(self.lora, LoraSettings), f"`lora` should be a LoraSettings, got {type(self.lora).__name__}")
        _check(isinstance(self.train, GanTrainConfig), f"`train` should be a GanTrainConfig, got {type(self.train).__name__}")
        _check(isinstance(self.k, int) and not isinstance(self.k, bool) and self.k > 0,
               f"`k` should be a positive integer, got {self.k!r}")
        _check(isinstance(self.checkpoint_window, (int, float)) and 0.0 < self.checkpoint_window <= 1.0,
               f"`checkpoint_window` should be in (0, 1], got {self.checkpoint_window!r}")
        _check(self.train.max_seconds is None,
               f"the zoo trains every concept for exactly `max_steps`; a time budget (max_seconds="
               f"{self.train.max_seconds!r}) would skip checkpoints")
        self.splits = tuple(self.splits)
        bad = [s for s in self.splits if s not in SPLITS]
        _check(bool(self.splits) and not bad, f"`splits` should be a non-empty subset of {SPLITS}, got {self.splits!r}")
        _check(isinstance(self.pairs_settings, dict), f"`pairs_settings` should be a dict, got {self.pairs_settings!r}")
        _check(self.barrier_timeout > 0, f"`barrier_timeout` should be positive seconds, got {self.barrier_timeout!r}")
        _check_threads(self.threads)
        _check(isinstance(self.concepts_per_pass, int) and not isinstance(self.concepts_per_pass, bool)
               and self.concepts_per_pass > 0,
               f"`concepts_per_pass` should be a positive integer, got {self.concepts_per_pass!r}")
        _check(self.convergence is None or isinstance(self.convergence, ConvergenceConfig),
               f"`convergence` should be a ConvergenceConfig or None, got {type(self.convergence).__name__}")
        _check(not self.batched or self.train.mixed_precision != "fp16",
               "the batched zoo path (concepts_per_pass > 1 or a convergence rule) supports mixed_precision "
               f"'no' or 'bf16', got {self.train.mixed_precision!r}")
        # Validated now, not after an hour of training: K distinct late steps must exist.
        self.train = replace(self.train, checkpoint_steps=checkpoint_steps(self.train.max_steps, self.k,
                                                                           self.checkpoint_window))
        if self.convergence is not None:  # the shortest run convergence allows must hold K too
            checkpoint_steps(run_length(min(self.convergence.min_steps, self.train.max_steps), self.checkpoint_window),
                             self.k, self.checkpoint_window)

    @property
    def batched(self) -> bool:
        """Trained by gan.multi_trainer (several concepts per pass, or stopped at convergence), not gan.trainer."""
        return self.concepts_per_pass > 1 or self.convergence is not None

    def settings(self) -> dict:
        """What must match for a zoo folder to be resumed: anything here changes the adapters."""
        train = {k: v for k, v in self.train.to_dict().items() if k not in ("cpu", "eval_every")}
        settings = {"lora": self.lora.to_dict(), "train": train, "k": self.k,
                    "checkpoint_window": self.checkpoint_window}
        # Only when set, so a zoo built before the option existed still resumes. concepts_per_pass is not
        # here: a concept's adapters are the same in a pass of one or of many (up to float rounding).
        if self.convergence is not None:
            settings["convergence"] = self.convergence.to_dict()
        return settings


@dataclass
class BaseConfig:
    """The base GAN, trained from scratch on a few representative training concepts (E2GAN)."""

    out: str  # base folder to write (gan.base layout)
    pairs: str  # pair-dataset folder; the chosen concepts' pairs are built into it when missing
    n_concepts: int = 8  # representative concepts, one per k-means cluster of the text embeddings
    model: BaseTrainConfig = field(default_factory=default_base_train)
    pairs_settings: dict = field(default_factory=dict)  # PairsConfig fields for missing pairs
    build_pairs: bool = True
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("out", "pairs"):
            _check(isinstance(getattr(self, name), str) and getattr(self, name),
                   f"`{name}` should be a folder path, got {getattr(self, name)!r}")
        _check(isinstance(self.n_concepts, int) and not isinstance(self.n_concepts, bool) and self.n_concepts > 0,
               f"`n_concepts` should be a positive integer, got {self.n_concepts!r}")
        _check(isinstance(self.model, BaseTrainConfig),
               f"`model` should be a BaseTrainConfig, got {type(self.model).__name__}")
        _check(isinstance(self.pairs_settings, dict), f"`pairs_settings` should be a dict, got {self.pairs_settings!r}")
        _check_threads(self.threads)


# `weightgen demo`: the GAN half alone, with the base and zoo recipes above under wall-clock budgets.
@dataclass
class DemoConfig(Config):
    out: str = "runs/demo"  # working folder: pairs/, base/, lora/, summary.json
    concept: str = "van gogh style"  # the new concept the LoRA learns (held out of the prompt set's train split)
    n_base_concepts: int = 4  # representative train concepts (k-means over text embeddings) for the base
    base_seconds: float = 180.0  # wall-clock budget for the base GAN
    lora_seconds: float = 120.0  # wall-clock budget for the LoRA
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.concept, str) or not self.concept.strip():
            raise WeightgenError(f"concept must not be empty, got {self.concept!r}")
        if self.n_base_concepts < 1:
            raise WeightgenError(f"n_base_concepts must be >= 1, got {self.n_base_concepts}")
        if self.base_seconds <= 0 or self.lora_seconds <= 0:
            raise WeightgenError(
                f"time budgets must be > 0 s, got base {self.base_seconds} and lora {self.lora_seconds}")
