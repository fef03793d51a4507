"""What a fine-tune is asked to do: the init kinds it can start from and its validated config.

No torch here, so the CLI builds `weightgen finetune --help` (choices and defaults) from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from prompts.identity import concept_id, normalize_concept
from weightgen.errors import WeightgenError
from weightgen.pairs.editors import REGISTRY

# The starts a fine-tune can take (weightgen.finetune.starts computes their weights), by name.
INIT_KINDS: dict[str, str] = {
    "generated": "the weight generator, single-step denoising (the product)",
    "generated-ddim": "the weight generator, DDIM sampling with several steps",
    "zero": "peft's fresh LoRA (zero B), i.e. the base's own output (E2GAN-style)",
    "mean": "the mean of the zoo's training LoRAs",
    "nearest": "the last checkpoint of the nearest training concept by text embedding",
    "nearest-noise": "nearest, plus Gaussian noise scaled to the zoo's between-concept spread",
}

SUMMARY_FORMAT = "weightgen-finetune"
ADAPTER_INIT = "adapter"  # summary["init_kind"] when the LoRA starts from an adapter folder
GENERATED_KINDS = ("generated", "generated-ddim")
REFERENCE_KINDS = ("mean", "nearest", "nearest-noise")  # from the zoo reference the generator shipped with
OUTPUT_FILES = ("adapter", "history.json", "summary.json", "curve.png", "grid.png")


@dataclass
class FinetuneConfig:
    """One concept's fine-tune; every path defaults to the shipped artifacts."""

    concept: str  # the new concept, e.g. "van gogh style"
    seconds: float = 60.0  # training budget in seconds (evaluation excluded): the product's promise
    init: str = "generated"  # a weightgen.finetune.starts.INIT_KINDS key, or a peft adapter folder to continue from
    out: str | None = None  # working folder; None = runs/finetune/<concept_id>
    # base GAN folder (gan.base layout) the LoRA sits on; None = the base the init was made for: a generator
    # folder's own base/ for the generated, mean and nearest kinds (weightgen.finetune.job.resolve_base), else
    # the shipped base
    base: str | None = None
    generator: str | None = None  # weight generator folder for the generated kinds; None = the shipped one
    reference: str | None = None  # zoo reference folder for mean / nearest*; None = the shipped one
    zoo: str | None = None  # or a zoo folder, reduced to a reference on the fly (instead of `reference`)
    pairs: str | None = None  # an existing pairs folder holding the concept; None = build <out>/pairs
    editor: str = "bank"  # weightgen.pairs.editors.REGISTRY key that turns photos into targets
    style_image: str | None = None  # bank: a painting whose style is the concept (joins editor_options)
    n_train: int = 32  # train canvases to build (edited once; fresh crops of them feed every batch)
    n_test: int = 16  # test pairs to build (the metric the best adapter is chosen by)
    photos: str | None = None  # folder of source photos for the pairs; None = the bundled photos
    max_steps: int = 100_000  # step cap; the time budget normally ends the run first
    eval_every: int = 10  # evaluate on the test pairs every N steps (the best adapter is kept at each)
    lr: float = 1e-3  # LoRA learning rate: a fine-tune from a good init likes a high rate
    lr_d: float = 2e-4  # discriminator learning rate (pix2pix's)
    batch_size: int = 8
    seed: int = 0  # pairs, init noise (generated, nearest-noise) and batches
    threads: int = 2  # torch CPU threads while training; more only spin on a small shared CPU
    ddim_steps: int = 10  # generated-ddim: denoising steps
    noise_scale: float = 0.5  # nearest-noise: noise std relative to the zoo's between-concept spread
    overwrite: bool = False  # replace a finished fine-tune in `out` (its pairs are reused)
    editor_options: dict = field(default_factory=dict)  # passed to the editor's constructor

    def __post_init__(self) -> None:
        if not isinstance(self.concept, str) or not self.concept.strip():
            raise WeightgenError(f"concept must not be empty, got {self.concept!r}")
        self.concept = normalize_concept(self.concept)
        if not isinstance(self.seconds, (int, float)) or not self.seconds > 0:
            raise WeightgenError(f"the time budget must be > 0 seconds, got {self.seconds!r}")
        if self.init not in INIT_KINDS:
            path = Path(self.init)
            if not path.is_dir():
                what = "adapter folder not found" if os.sep in self.init or path.exists() else "unknown init"
                raise WeightgenError(f"{what}: {self.init!r}; choose one of {', '.join(INIT_KINDS)} "
                                     "or a peft adapter folder")
        if self.reference is not None and self.zoo is not None:
            raise WeightgenError(f"give a zoo reference or a zoo, not both: {self.reference!r} and {self.zoo!r}")
        if self.editor not in REGISTRY:
            raise WeightgenError(f"unknown editor {self.editor!r}; choose one of {', '.join(REGISTRY)}")
        if self.style_image is not None:
            self._add_style_image()
        for name in ("n_train", "n_test", "max_steps", "batch_size", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WeightgenError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise WeightgenError(f"eval_every must be >= 1 (the best adapter is kept at evaluations), "
                                 f"got {self.eval_every!r}")
        if not isinstance(self.ddim_steps, int) or self.ddim_steps < 2:
            raise WeightgenError(f"ddim_steps must be >= 2 (1 step is `generated`), got {self.ddim_steps!r}")
        if not self.noise_scale >= 0:
            raise WeightgenError(f"noise_scale must be >= 0, got {self.noise_scale!r}")
        for name in ("lr", "lr_d"):
            if not getattr(self, name) > 0:
                raise WeightgenError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.out is None:
            self.out = str(Path("runs") / "finetune" / concept_id(self.concept))

    def _add_style_image(self) -> None:
        """The pairs build reads the editor's settings from editor_options: the painting goes there."""
        if self.editor != "bank":
            raise WeightgenError(f"a style image needs the bank editor, not {self.editor!r}")
        if not Path(self.style_image).is_file():
            raise WeightgenError(f"style image not found: {self.style_image}")
        given = self.editor_options.get("style_image", self.style_image)
        if given != self.style_image:
            raise WeightgenError(f"two style images: {self.style_image!r} and editor_options' {given!r}")
        self.editor_options = {**self.editor_options, "style_image": self.style_image}

    @property
    def init_kind(self) -> str:
        """The INIT_KINDS key, or "adapter" for an adapter folder."""
        return self.init if self.init in INIT_KINDS else ADAPTER_INIT
