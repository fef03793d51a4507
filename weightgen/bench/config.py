"""What the bench compares (the method registry) and how (one validated config for every run).

Light on purpose: no torch here, so the CLI can list the methods in `--help` without loading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from weightgen.errors import WeightgenError
from weightgen.finetune.config import INIT_KINDS

# The bench folder: <out>/bench_config.json, <out>/runs/<method>/<concept_id>.json and the report files.
CONFIG_FILE = "bench_config.json"
CONFIG_FORMAT = "weightgen-bench-config"
RUN_FORMAT = "weightgen-bench-run"
RUNS_DIR = "runs"
REPORT_FILES = ("bench.json", "bench.md", "curves_steps.png", "curves_seconds.png", "step0.png")  # report.py writes


@dataclass(frozen=True)
class Method:
    """One way to start a concept's fine-tune. `init` is a weightgen.finetune.starts kind; None is pix2pix from scratch."""

    description: str
    init: str | None

    @property
    def needs_generator(self) -> bool:
        # The zoo baselines need the generator too: their reference blocks use its chunk layout, so
        # nearest-noise draws the same noise whichever methods a run asks for.
        return self.init not in (None, "zero")


METHODS: dict[str, Method] = {
    "scratch": Method("pix2pix from scratch: a fresh generator + discriminator of the base's architecture, "
                      "all weights trained (no base, no LoRA), at pix2pix's own learning rate", None),
    "zero": Method("zero-init LoRA on the base (E2GAN-style): the base's own output at step 0", "zero"),
    "mean": Method(INIT_KINDS["mean"], "mean"),
    "nearest": Method(INIT_KINDS["nearest"], "nearest"),
    "nearest-noise": Method(INIT_KINDS["nearest-noise"], "nearest-noise"),
    "generated": Method(INIT_KINDS["generated"], "generated"),
    "generated-ddim": Method(INIT_KINDS["generated-ddim"], "generated-ddim"),
}


def parse_shard(shard: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n: this process runs concepts i, i+n, i+2n, ..."""
    try:
        i, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise WeightgenError(f"shard should look like i/n (e.g. 0/2), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise WeightgenError(f"shard {shard!r} needs n >= 1 and 0 <= i < n")
    return i, n


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise WeightgenError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class BenchConfig:
    """One bench: every method gets the same pairs, steps, evaluations, batch size and seed."""

    zoo: str  # zoo folder: held-out concepts, their oracle LoRAs, the base and the pairs
    out: str  # bench folder: runs/<concept_id>/<method>.json, bench.json, bench.md, plots
    generator: str | None = None  # weight generator folder; None = the shipped default
    concepts: list[str] | None = None  # held-out concept ids or texts; None = every held-out concept of the zoo
    limit: int | None = None  # take only the first N of those concepts
    methods: tuple[str, ...] = tuple(METHODS)  # keys of METHODS
    steps: int = 200  # training steps per run (one D + one G update each): the budget
    eval_every: int = 10  # test evaluation every N steps: the resolution of steps-to-target
    seconds: float | None = None  # optional wall-clock budget per run (training time, evaluation excluded)
    lr: float = 1e-3  # LoRA learning rate (LoRA fine-tunes like a higher rate than full training)
    lr_d: float = 2e-4  # discriminator learning rate, every method
    scratch_lr: float = 2e-4  # generator learning rate from scratch: pix2pix's
    batch_size: int = 8
    seed: int = 0  # batch order, scratch weights, generated noise, nearest-noise
    ddim_steps: int = 10  # denoising steps of generated-ddim
    threads: int = 1  # torch CPU threads in this process (seconds depend on it, so it is part of the recipe)
    shard: str = "0/1"  # "i/n": run concepts i, i+n, ... so n processes split the work
    cpu: bool = False  # train on the CPU even when a GPU is present
    overwrite: bool = False  # discard the results already in `out` and start over
    noise_scale: float = 0.5  # nearest-noise: std in units of the zoo's between-concept spread

    def __post_init__(self) -> None:
        _check(isinstance(self.zoo, str) and bool(self.zoo), f"`zoo` should be a folder, got {self.zoo!r}")
        _check(isinstance(self.out, str) and bool(self.out), f"`out` should be a folder, got {self.out!r}")
        if isinstance(self.methods, str):
            self.methods = tuple(m.strip() for m in self.methods.split(",") if m.strip())
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in METHODS]
        _check(not unknown, f"unknown bench method(s) {unknown}; choose from {', '.join(METHODS)}")
        _check(len(self.methods) > 0, "no bench methods given")
        _check(len(set(self.methods)) == len(self.methods), f"bench methods repeat: {list(self.methods)}")
        self.methods = tuple(m for m in METHODS if m in self.methods)  # registry order, always
        for name in ("steps", "eval_every", "batch_size", "ddim_steps", "threads"):
            value = getattr(self, name)
            _check(_is_int(value) and value > 0, f"`{name}` should be a positive integer, got {value!r}")
        _check(self.ddim_steps >= 2, f"`ddim_steps` should be >= 2 (1 step is 'generated'), got {self.ddim_steps!r}")
        _check(self.limit is None or (_is_int(self.limit) and self.limit > 0),
               f"`limit` should be a positive integer or None, got {self.limit!r}")
        if self.seconds == 0:
            self.seconds = None
        _check(self.seconds is None or (isinstance(self.seconds, (int, float)) and self.seconds > 0),
               f"`seconds` should be positive (or None for no time budget), got {self.seconds!r}")
        for name in ("lr", "lr_d", "scratch_lr"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and value > 0, f"`{name}` should be positive, got {value!r}")
        _check(_is_int(self.seed), f"`seed` should be an integer, got {self.seed!r}")
        _check(isinstance(self.noise_scale, (int, float)) and self.noise_scale >= 0,
               f"`noise_scale` should be >= 0, got {self.noise_scale!r}")
        parse_shard(self.shard)
        if self.concepts is not None:
            self.concepts = list(self.concepts)
            _check(len(self.concepts) > 0, "`concepts` is empty (None means every held-out concept)")

    @property
    def shard_index(self) -> tuple[int, int]:
        return parse_shard(self.shard)

    def recipe(self) -> dict:
        """The settings results depend on: runs made under different recipes are not comparable."""
        return {k: v for k, v in asdict(self).items()
                if k in ("steps", "eval_every", "seconds", "lr", "lr_d", "scratch_lr", "batch_size", "seed",
                         "ddim_steps", "threads", "cpu", "noise_scale")}
