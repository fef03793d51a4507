"""What the weight generator is and how it trains: sizes, the noise process's settings, the recipe.

No torch here, so the CLI offers `--model-size`, `--prediction-type` and `--mixed-precision` and
their defaults without loading it. Stored in the generator's state file and generator.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from weightgen.config import Config
from weightgen.errors import WeightgenError

# Named sizes (DiT's `DiT_models` habit): the CLI offers these keys as `--model-size`.
# "small" (the class defaults) is the CPU default: all ~200 blocks of a concept in < 0.1 s and 64
# concepts in < 3 s on 2 CPU cores (scripts/bench_init.py). "base" is closer to the paper (full
# resolution, attention in the two deeper stages) and wants a GPU.
MODEL_SIZES: dict[str, dict] = {
    "tiny": dict(channels=(16, 32, 32), num_heads=2, patch_size=8, norm_groups=4, attention_stages=(False, True, True)),
    "small": dict(channels=(32, 48, 64), num_heads=4, patch_size=8, norm_groups=8, attention_stages=(False, False, True)),
    "base": dict(channels=(64, 128, 256), num_heads=8, patch_size=2, layers_per_stage=2, norm_groups=16,
                 attention_stages=(False, True, True)),
}

PredictionType = Literal["epsilon", "sample", "v_prediction"]
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample", "v_prediction")
BETA_SCHEDULES: tuple[str, ...] = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass
class DiffusionConfig(Config):
    """The forward process and its reading. Defaults follow p-diff: linear betas 1e-4..0.02, T=1000."""

    num_train_timesteps: int = 1000  # T
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"  # one of BETA_SCHEDULES (diffusers names)
    prediction_type: str = "sample"  # one of PREDICTION_TYPES; what the network's output means
    input_noise: float = 0.0  # p-diff's augmentation: std of noise added to clean blocks in training (1e-3 there)
    default_t_start: int = -1  # timestep single-step generation starts from; -1 means T - 1

    def __post_init__(self) -> None:
        if not isinstance(self.num_train_timesteps, int) or self.num_train_timesteps < 2:
            raise WeightgenError(f"num_train_timesteps must be an integer >= 2, got {self.num_train_timesteps!r}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise WeightgenError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start!r}, {self.beta_end!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise WeightgenError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise WeightgenError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if not self.input_noise >= 0:
            raise WeightgenError(f"input_noise must be >= 0, got {self.input_noise!r}")
        if not -1 <= self.default_t_start < self.num_train_timesteps:
            raise WeightgenError(
                f"default_t_start must be -1 or in [0, {self.num_train_timesteps}), got {self.default_t_start!r}"
            )

    @property
    def t_start(self) -> int:
        return self.num_train_timesteps - 1 if self.default_t_start < 0 else self.default_t_start



MIXED_PRECISION: tuple[str, ...] = ("no", "fp16", "bf16")
# Fields a resumed run may change; anything else (model size, encoder, noise process) must match.
# (text_encoder_path may move: the encoder's identity is checked by its fingerprint instead.)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "validate_every", "log_every",
                     "text_encoder_path", "cpu", "mixed_precision")



@dataclass
class GeneratorTrainConfig(Config):
    """How to train the generator; stored in its state file and in generator.json."""

    steps: int = 20_000  # optimizer steps in total (a resumed run continues up to this)
    batch_size: int = 256  # blocks per process per step
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200  # linear warmup, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999  # the saved generator uses these averaged weights
    mixed_precision: str = "no"  # one of MIXED_PRECISION; bf16/fp16 autocast where the device has it
    model_size: str = "small"  # key of MODEL_SIZES
    text_encoder: str = "minilm"  # key of weightgen.text_encoders.TEXT_ENCODERS
    text_encoder_path: str | None = None  # local weights for encoders that need them
    checkpoint_every: int = 1000  # steps between checkpoints (and generator folder refreshes)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    validate_every: int = 0  # steps between validation callbacks; 0: only at the end
    text_dropout: float = 0.0  # chance a concept's text is replaced by the empty prompt (classifier-free guidance)
    val_concepts: int = 0  # training concepts kept out of training, to validate on and to pick the guidance scale
    log_every: int = 25
    seed: int = 0
    cpu: bool = False  # force the CPU even when an accelerator is present
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def __post_init__(self) -> None:
        if isinstance(self.diffusion, dict):
            self.diffusion = DiffusionConfig.from_dict(self.diffusion)
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WeightgenError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "validate_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise WeightgenError(f"{name} must be a non-negative integer, got {value!r}")
        if not 0 <= self.text_dropout < 1:
            raise WeightgenError(f"text_dropout must be in [0, 1), got {self.text_dropout!r}")
        if isinstance(self.val_concepts, bool) or not isinstance(self.val_concepts, int) or self.val_concepts < 0:
            raise WeightgenError(f"val_concepts must be a non-negative integer, got {self.val_concepts!r}")
        if not self.lr > 0:
            raise WeightgenError(f"lr must be positive, got {self.lr!r}")
        if not 0 <= self.ema_decay < 1:
            raise WeightgenError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise WeightgenError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise WeightgenError(f"weight_decay and grad_clip must be >= 0, got {self.weight_decay!r}, {self.grad_clip!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise WeightgenError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.model_size not in MODEL_SIZES:
            raise WeightgenError(f"model_size must be one of {sorted(MODEL_SIZES)}, got {self.model_size!r}")


    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


