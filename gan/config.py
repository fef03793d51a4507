"""Typed, validated configs for every GAN component.

Each dataclass checks itself in `__post_init__` and echoes the bad value, so a wrong number fails
where it is written (a CLI flag, a JSON file) rather than as a shape error deep in a forward pass.
Defaults fit a 2-core CPU at 64x64; every size scales up for a GPU at 256x256.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, get_type_hints

from gan.errors import GanError

MIXED_PRECISION = ("no", "fp16", "bf16")
UPSAMPLE_MODES = ("nearest", "bilinear")
GAN_MODES = ("bce", "lsgan")  # keys of gan.losses.GAN_LOSSES


class Config:
    """The base of every config dataclass, gan's and weightgen's: a strict dict round trip and checks.

    Checkpoints store their config as JSON, so `from_dict` refuses unknown keys (naming the known
    ones) and rebuilds nested config fields from their dicts. Checks raise `error`, the package's
    own error type (weightgen.config.Config sets WeightgenError), with a message echoing the value.
    """

    error: ClassVar[type[Exception]] = GanError

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise cls.error(f"{cls.__name__} should be a table of settings, got {data!r}")
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise cls.error(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
        hints = get_type_hints(cls)
        values = {}
        for name, value in data.items():
            kind = hints.get(name)
            nested = isinstance(kind, type) and issubclass(kind, Config) and isinstance(value, dict)
            values[name] = kind.from_dict(value) if nested else value
        return cls(**values)

    @classmethod
    def check(cls, ok: bool, message: str) -> None:
        if not ok:
            raise cls.error(message)

    @classmethod
    def check_int(cls, name: str, value: Any, minimum: int = 1) -> None:
        """An int (bool refused) >= minimum; the message says 'positive' or 'non-negative' for 1 and 0."""
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        cls.check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
                  f"`{name}` should be {what}, got {value!r}")

    @classmethod
    def check_choice(cls, name: str, value: Any, choices) -> None:
        cls.check(value in choices, f"`{name}` should be one of {tuple(choices)}, got {value!r}")


@dataclass
class GeneratorConfig(Config):
    """E2GAN-style generator: stem conv, strided downsampling, ResNet blocks, one transformer block."""

    in_channels: int = 3  # RGB source image
    out_channels: int = 3  # RGB edited image
    base_channels: int = 32  # width after the stem; doubles at each downsampling (32 -> 128 at 16x16)
    n_downsample: int = 2  # strided convs; images must be divisible by 2**n_downsample
    n_res_blocks: int = 3  # E2GAN's choice: 3 ResNet blocks + 1 transformer block
    attention_heads: int = 4  # self-attention heads at the bottleneck
    mlp_ratio: int = 2  # transformer MLP width = mlp_ratio * bottleneck channels
    upsample_mode: Literal["nearest", "bilinear"] = "nearest"  # resize + conv; no ConvTranspose2d (peft can't LoRA it)
    image_size: int = 64  # the training resolution; validated against n_downsample
    # U-Net skips: each down stage's output is concatenated into its mirrored up stage's conv, the stem's
    # features into the head. Off by default, so every existing checkpoint keeps its architecture.
    skips: bool = False
    # Residual output: the network predicts a change to the source, output = clamp(source + delta, -1, 1)
    # (gradient passed straight through the clamp); the head starts at zero, so G starts as the identity.
    residual: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "base_channels", "n_downsample", "attention_heads",
                     "mlp_ratio", "image_size"):
            self.check_int(name, getattr(self, name))
        for name in ("skips", "residual"):
            self.check(isinstance(getattr(self, name), bool),
                       f"`{name}` should be true or false, got {getattr(self, name)!r}")
        self.check(not self.residual or self.in_channels == self.out_channels,
                   f"`residual` needs in_channels == out_channels (output = source + change), got "
                   f"{self.in_channels} -> {self.out_channels}")
        self.check(isinstance(self.n_res_blocks, int) and self.n_res_blocks >= 0,
               f"`n_res_blocks` should be a non-negative integer, got {self.n_res_blocks!r}")
        self.check(self.upsample_mode in UPSAMPLE_MODES,
               f"`upsample_mode` should be one of {UPSAMPLE_MODES}, got {self.upsample_mode!r}")
        factor = 2**self.n_downsample
        self.check(self.image_size % factor == 0,
               f"`image_size` {self.image_size} is not divisible by 2**n_downsample = {factor}")
        self.check(self.bottleneck_channels % self.attention_heads == 0,
               f"bottleneck channels {self.bottleneck_channels} (base_channels * 2**n_downsample) are not "
               f"divisible by `attention_heads` = {self.attention_heads}")

    @property
    def bottleneck_channels(self) -> int:
        return self.base_channels * 2**self.n_downsample


@dataclass
class DiscriminatorConfig(Config):
    """PatchGAN (pix2pix): judges overlapping patches of (source, image) pairs."""

    source_channels: int = 3
    image_channels: int = 3
    base_channels: int = 32  # pix2pix uses 64; 32 keeps the CPU step fast
    n_layers: int = 3  # strided layers; 3 gives a 70x70 receptive field (it sees most of a 64x64 image)
    # Spectral norm on every conv, instance norm dropped (SN-PatchGAN): bounds D's Lipschitz constant so it
    # cannot sharpen its decisions without limit and starve G of gradient. Off: pix2pix's D, old checkpoints.
    spectral_norm: bool = False

    def __post_init__(self) -> None:
        for name in ("source_channels", "image_channels", "base_channels", "n_layers"):
            self.check_int(name, getattr(self, name))
        self.check(isinstance(self.spectral_norm, bool),
                   f"`spectral_norm` should be true or false, got {self.spectral_norm!r}")


# The generator's Conv2d / Linear layers between the 7x7 stem and head (gan.generator names them so):
# down.{i}.conv, up.{i}.conv, res.{i}.conv1/conv2, attn.to_q/k/v/out, attn.mlp.0/2.
DEFAULT_LORA_TARGETS = ("conv", "conv1", "conv2", "to_q", "to_k", "to_v", "to_out", "mlp.0", "mlp.2")
# The ResNet blocks' 3x3 convs hold ~75% of the generator and their LoRA A (C_in * 9 * r) dominates the
# adapter; half the rank there keeps the default LoRA near 2.8% of G (E2GAN: ~1%, searched ranks).
RES_CONVS = r"res\.\d+\.conv[12]"


def default_rank_pattern(rank: int) -> dict[str, int]:
    return {RES_CONVS: max(1, rank // 2)}


@dataclass
class LoraSettings(Config):
    """LoRA on the generator's Conv2d + Linear layers, through peft.

    `target_modules` are peft name patterns (a module matches when its name equals the pattern or
    ends with "." + pattern). `rank_pattern` maps a regex over module names to a rank, overriding
    `rank` there (peft's LoraConfig.rank_pattern). `init_seed` is the same for every concept so all
    adapters start from one point and live in one aligned weight space.
    """

    rank: int = 4
    alpha: float = 4.0  # scale = alpha / rank; alpha == rank keeps the update scale 1 at any rank
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    rank_pattern: dict[str, int] = field(default_factory=lambda: default_rank_pattern(4))
    init_seed: int = 0

    def __post_init__(self) -> None:
        self.check_int("rank", self.rank)
        self.check(isinstance(self.alpha, (int, float)) and self.alpha > 0, f"`alpha` should be positive, got {self.alpha!r}")
        self.check(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
               f"`dropout` should be in [0, 1), got {self.dropout!r}")
        self.target_modules = tuple(self.target_modules)
        self.check(len(self.target_modules) > 0 and all(isinstance(t, str) and t for t in self.target_modules),
               f"`target_modules` should be a non-empty list of module name patterns, got {self.target_modules!r}")
        self.check(isinstance(self.rank_pattern, dict), f"`rank_pattern` should be a dict, got {self.rank_pattern!r}")
        for pattern, r in self.rank_pattern.items():
            self.check_int(f"rank_pattern[{pattern!r}]", r)
        self.check(isinstance(self.init_seed, int), f"`init_seed` should be an integer, got {self.init_seed!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass
class GanTrainConfig(Config):
    """The pix2pix training recipe (cGAN + lambda * L1) and its stopping rules."""

    batch_size: int = 8
    lr: float = 2e-4  # pix2pix default for full training; LoRA fine-tunes like a higher rate (see train-lora)
    lr_d: float | None = None  # discriminator learning rate; None = same as lr
    betas: tuple[float, float] = (0.5, 0.999)  # pix2pix's Adam betas
    lambda_l1: float = 100.0  # weight of the L1 term (pix2pix, E2GAN)
    gan_mode: Literal["bce", "lsgan"] = "bce"
    # One-sided label smoothing: D's target for real pairs is 1 - label_smoothing (fakes stay 0, G's target 1);
    # a D that wins easily then keeps a loss floor instead of growing ever more certain.
    label_smoothing: float = 0.0
    max_steps: int = 1000
    max_seconds: float | None = None  # wall-clock budget for training (evaluation excluded); None/0 = none
    eval_every: int = 100  # evaluate on test pairs every N steps (0 = only at start and end)
    seed: int = 0
    flip: bool = True  # random horizontal flips of (source, target) together
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cpu: bool = False  # force CPU even when an accelerator is present
    checkpoint_steps: tuple[int, ...] = ()  # steps after which to save a checkpoint

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_steps"):
            self.check_int(name, getattr(self, name))
        self.check(isinstance(self.lr, (int, float)) and self.lr > 0, f"`lr` should be positive, got {self.lr!r}")
        self.check(self.lr_d is None or (isinstance(self.lr_d, (int, float)) and self.lr_d > 0),
               f"`lr_d` should be positive or None, got {self.lr_d!r}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
               f"`betas` should be two numbers in [0, 1), got {self.betas!r}")
        self.check(self.lambda_l1 >= 0, f"`lambda_l1` should be >= 0, got {self.lambda_l1!r}")
        self.check(self.gan_mode in GAN_MODES, f"`gan_mode` should be one of {GAN_MODES}, got {self.gan_mode!r}")
        self.check(isinstance(self.label_smoothing, (int, float)) and not isinstance(self.label_smoothing, bool)
                   and 0.0 <= self.label_smoothing < 0.5,
                   f"`label_smoothing` should be in [0, 0.5), got {self.label_smoothing!r}")
        if self.max_seconds == 0:
            self.max_seconds = None
        self.check(self.max_seconds is None or self.max_seconds > 0,
               f"`max_seconds` should be positive (or 0/None for no budget), got {self.max_seconds!r}")
        self.check(isinstance(self.eval_every, int) and self.eval_every >= 0,
               f"`eval_every` should be a non-negative integer, got {self.eval_every!r}")
        self.check(self.mixed_precision in MIXED_PRECISION,
               f"`mixed_precision` should be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        self.checkpoint_steps = tuple(sorted(set(self.checkpoint_steps)))
        self.check(all(isinstance(s, int) and s > 0 for s in self.checkpoint_steps),
               f"`checkpoint_steps` should be positive step numbers, got {self.checkpoint_steps!r}")


@dataclass
class BaseTrainConfig(Config):
    """Everything `train_base` needs: the two networks and the recipe (stored in the base folder)."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    train: GanTrainConfig = field(default_factory=GanTrainConfig)



@dataclass
class ConvergenceConfig(Config):
    """When a LoRA has converged: its L1 on fixed crops of its own train canvases stopped improving.

    The crops come from the train canvases, never the test pairs, so stopping leaks nothing about
    the test set; they are fixed (seeded windows, no flips), so two checks score the same pixels and
    differ only by training. See gan.convergence for the schedule built on it.
    """

    # Defaults measured on 8 training concepts (docs/zoo_speed.md): the zoo recipe's LoRAs still improve
    # slowly at 400 steps, and this rule stops them at ~260 steps on average, keeping ~94% of the gain.
    every: int = 25  # steps between two checks
    patience: int = 2  # checks in a row without an improvement -> converged
    min_delta: float = 0.02  # an improvement is a drop of at least this fraction of the best L1 so far
    min_steps: int = 100  # never converged before this step
    val_crops: int = 16  # crops scored at each check (cycling through the canvases)

    def __post_init__(self) -> None:
        for name in ("every", "patience", "min_steps", "val_crops"):
            self.check_int(name, getattr(self, name))
        self.check(isinstance(self.min_delta, (int, float)) and not isinstance(self.min_delta, bool)
                   and 0.0 <= self.min_delta < 1.0, f"`min_delta` should be in [0, 1), got {self.min_delta!r}")
