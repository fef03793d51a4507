"""What the bench compares (the method and target registries) and how (one validated config for every run).

Light on purpose: no torch here, so the CLI can list the methods in `--help` without loading it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from weightgen.errors import WeightgenError
from weightgen.finetune.config import INIT_KINDS
from weightgen.pairs.editors import REGISTRY as EDITORS

# The bench folder: <out>/bench_config.json, <out>/runs/<concept_id>/<method>.json, the report files, and for
# concepts of a --concepts-file their pairs (<out>/pairs/<concept_id>/) and reference fine-tunes (<out>/references/).
CONFIG_FILE = "bench_config.json"
CONFIG_FORMAT = "weightgen-bench-config"
RUN_FORMAT = "weightgen-bench-run"
RUN_VERSION = 2  # 2: dense schedule, validation-chosen oracle, four targets, per-method budgets
RUNS_DIR = "runs"
PAIRS_DIR = "pairs"
REFERENCES_DIR = "references"
REPORT_FILES = ("bench.json", "bench.md", "curves_steps.png", "curves_seconds.png", "step0.png",
                "tracking.png")  # report.py writes
PRODUCT = "generated"  # the method every other one is compared with; it runs first, and its hits set the budgets


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


@dataclass(frozen=True)
class Target:
    """A quality a run is timed to: the oracle's own (kind "oracle") or `gain_fraction` of its gain over the base."""

    metric: Literal["l1", "style"]  # a test distance, lower is better: L1, or gan.perceptual's style distance
    kind: Literal["oracle", "gain"]

    def value(self, base: float, oracle: float, gain_fraction: float) -> float:
        """d(base) - f (d(base) - d(oracle)), f = 1 for the oracle's quality itself."""
        if self.kind == "oracle":
            return oracle
        elif self.kind == "gain":
            return base - gain_fraction * (base - oracle)
        raise ValueError(f"unknown target kind {self.kind!r}")


TARGETS: dict[str, Target] = {
    "oracle-l1": Target("l1", "oracle"),
    "gain-l1": Target("l1", "gain"),
    "oracle-style": Target("style", "oracle"),
    "gain-style": Target("style", "gain"),
}
PRIMARY_TARGET = "oracle-l1"  # the target of the paper table and the claims: the oracle's test L1
TARGET_METRICS = ("l1", "style")


def parse_shard(shard: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n: this process runs concepts i, i+n, i+2n, ..."""
    try:
        i, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise WeightgenError(f"shard should look like i/n (e.g. 0/2), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise WeightgenError(f"shard {shard!r} needs n >= 1 and 0 <= i < n")
    return i, n


def parse_schedule(spec: str) -> tuple[tuple[int, int | None], ...]:
    """"1:50,2:100,10" -> ((1, 50), (2, 100), (10, None)): every step up to 50, every 2nd up to 100, then every 10th.

    Each part is EVERY:UNTIL; the last is EVERY alone (it runs to the end of any run), and a plain
    "10" is an evaluation every 10 steps throughout.
    """
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    bad = WeightgenError(f"eval_schedule should look like 1:50,2:100,10 (every:until, ..., every), got {spec!r}")
    if not parts:
        raise bad
    out: list[tuple[int, int | None]] = []
    last_until = 0
    for i, part in enumerate(parts):
        fields = part.split(":")
        try:
            numbers = [int(f) for f in fields]
        except ValueError:
            raise bad from None
        if len(numbers) != (1 if i == len(parts) - 1 else 2) or numbers[0] < 1:
            raise bad
        until = numbers[1] if len(numbers) == 2 else None
        if until is not None and until <= last_until:
            raise WeightgenError(f"eval_schedule {spec!r}: the 'until' steps should increase, got {until} after "
                                 f"{last_until}")
        out.append((numbers[0], until))
        last_until = until or last_until
    return tuple(out)


def schedule_steps(schedule: tuple[tuple[int, int | None], ...], until: int) -> list[int]:
    """The evaluated steps in 1..until under a parsed schedule (step 0 and the run's end are always evaluated too)."""
    steps, start = [], 0
    for every, end in schedule:
        stop = until if end is None else min(end, until)
        steps += range(start + every, stop + 1, every)
        if end is None or end >= until:
            break
        start = end
    return steps


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise WeightgenError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class BenchConfig:
    """One bench: every method gets the same pairs, evaluations, batch size, seed and common budget `steps`."""

    zoo: str  # zoo folder: held-out concepts, their oracle LoRAs, the base and the pairs
    out: str  # bench folder: runs/<concept_id>/<method>.json, bench.json, bench.md, plots
    generator: str | None = None  # weight generator folder; None = the shipped default
    concepts: list[str] | None = None  # held-out concept ids or texts; None = every held-out concept of the zoo
    limit: int | None = None  # take only the first N of those concepts
    methods: tuple[str, ...] = tuple(METHODS)  # keys of METHODS
    # the common budget: every run trains this many steps (one D + one G update each), and its final quality is
    # measured here; runs go past it only to time a target (see the multiples)
    steps: int = 200
    # when to evaluate: EVERY:UNTIL parts, then EVERY. Dense where the curves separate (the first 50 steps), so
    # steps-to-target is exact there; each evaluation scores L1/PSNR/SSIM and the style distance
    eval_schedule: str = "1:50,2:100,10"
    # the dense evaluations score this many of a concept's test pairs (the first N: a fixed small batch, for
    # speed); None = all of them. The report checks the small batch tracks the full set (rank correlation)
    eval_pairs: int | None = 8
    full_every: int = 10  # with eval_pairs: also score the full test set every N steps (+ step 0, `steps`, the end)
    # a baseline trains on past `steps` until it reaches each target or passes this multiple of the generated
    # init's steps to that target (censored there: its ratio is then a lower bound >= the multiple)
    scratch_multiple: float = 15.0  # pix2pix from scratch (the paper: 15x)
    lora_multiple: float = 6.0  # every LoRA baseline: zero-init (the paper: 4.6x), mean, nearest, ..., ddim
    max_steps: int = 3000  # no run trains past this, whatever a multiple asks (its targets are censored there)
    seconds: float | None = None  # optional wall-clock budget per run (training time, evaluation excluded)
    gain_fraction: float = 0.9  # the second target: this fraction of the oracle's gain over the base
    # the oracle's checkpoint is chosen on this many fixed crops of its train canvases (a validation set; the
    # test pairs never choose it): gan.data.paired_crops, seeded, no flips
    val_crops: int = 16
    lr: float = 1e-3  # LoRA learning rate (LoRA fine-tunes like a higher rate than full training)
    lr_d: float = 2e-4  # discriminator learning rate, every method
    scratch_lr: float = 2e-4  # generator learning rate from scratch: pix2pix's
    batch_size: int = 8
    seed: int = 0  # batch order, scratch weights, generated noise, nearest-noise, validation crops, bootstrap
    ddim_steps: int = 10  # denoising steps of generated-ddim
    threads: int = 1  # torch CPU threads in this process (seconds depend on it, so it is part of the recipe)
    shard: str = "0/1"  # "i/n": run concepts i, i+n, ... so n processes split the work
    cpu: bool = False  # train on the CPU even when a GPU is present
    overwrite: bool = False  # discard the results already in `out` and start over
    noise_scale: float = 0.5  # nearest-noise: std in units of the zoo's between-concept spread
    # concepts outside the zoo (a text file, one per line, or JSON; weightgen.pairs.build.read_concepts_file),
    # benched instead of the zoo's held-out ones; their target is a reference fine-tune the bench makes and caches
    concepts_file: str | None = None
    concepts_pairs: str | None = None  # a pairs folder holding those concepts; None = build <out>/pairs/<id>/
    editor: str = "bank"  # the editor that builds those pairs (weightgen.pairs.editors.REGISTRY key)
    # the reference fine-tune: a zero-init LoRA, the zoo's own recipe and K checkpoints, this many steps;
    # None = the zoo's step count, so its target means what a zoo oracle's does
    reference_steps: int | None = None

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
        for name in ("steps", "full_every", "max_steps", "val_crops", "batch_size", "ddim_steps", "threads"):
            value = getattr(self, name)
            _check(_is_int(value) and value > 0, f"`{name}` should be a positive integer, got {value!r}")
        _check(self.max_steps >= self.steps, f"`max_steps` should be >= `steps` ({self.steps}), got {self.max_steps!r}")
        parse_schedule(self.eval_schedule)
        _check(self.ddim_steps >= 2, f"`ddim_steps` should be >= 2 (1 step is 'generated'), got {self.ddim_steps!r}")
        for name in ("limit", "eval_pairs", "reference_steps"):
            value = getattr(self, name)
            _check(value is None or (_is_int(value) and value > 0),
                   f"`{name}` should be a positive integer or None, got {value!r}")
        if self.seconds == 0:
            self.seconds = None
        _check(self.seconds is None or (_is_number(self.seconds) and self.seconds > 0),
               f"`seconds` should be positive (or None for no time budget), got {self.seconds!r}")
        for name in ("lr", "lr_d", "scratch_lr"):
            value = getattr(self, name)
            _check(_is_number(value) and value > 0, f"`{name}` should be positive, got {value!r}")
        for name in ("scratch_multiple", "lora_multiple"):
            value = getattr(self, name)
            _check(_is_number(value) and value >= 1, f"`{name}` should be a number >= 1, got {value!r}")
        _check(_is_number(self.gain_fraction) and 0 < self.gain_fraction < 1,
               f"`gain_fraction` should be in (0, 1) (1 is the oracle target itself), got {self.gain_fraction!r}")
        _check(_is_int(self.seed), f"`seed` should be an integer, got {self.seed!r}")
        _check(_is_number(self.noise_scale) and self.noise_scale >= 0,
               f"`noise_scale` should be >= 0, got {self.noise_scale!r}")
        _check(self.editor in EDITORS, f"unknown editor {self.editor!r}; choose one of {', '.join(EDITORS)}")
        _check(self.concepts_pairs is None or self.concepts_file is not None,
               "`concepts_pairs` holds the pairs of a --concepts-file; give the concepts file too")
        parse_shard(self.shard)
        if self.concepts is not None:
            self.concepts = list(self.concepts)
            _check(len(self.concepts) > 0, "`concepts` is empty (None means every held-out concept)")

    @property
    def shard_index(self) -> tuple[int, int]:
        return parse_shard(self.shard)

    @property
    def schedule(self) -> tuple[tuple[int, int | None], ...]:
        return parse_schedule(self.eval_schedule)

    def multiple(self, method: str) -> float | None:
        """How far past the generated init's steps-to-target this method may train (None: the product itself)."""
        if method == PRODUCT:
            return None
        return self.scratch_multiple if METHODS[method].init is None else self.lora_multiple

    def recipe(self) -> dict:
        """The settings results depend on: runs made under different recipes are not comparable."""
        return {k: v for k, v in asdict(self).items()
                if k in ("steps", "eval_schedule", "eval_pairs", "full_every", "scratch_multiple", "lora_multiple",
                         "max_steps", "seconds", "gain_fraction", "val_crops", "lr", "lr_d", "scratch_lr",
                         "batch_size", "seed", "ddim_steps", "threads", "cpu", "noise_scale", "reference_steps")}
