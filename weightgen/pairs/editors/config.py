"""The editors' settings, without torch: the CLI reads their defaults, the pairs manifest records them."""

from __future__ import annotations

from dataclasses import dataclass

from weightgen.config import Config
from weightgen.errors import WeightgenError

DEFAULT_MODEL = "timbrooks/instruct-pix2pix"


@dataclass
class InstructPix2PixConfig(Config):
    model: str = DEFAULT_MODEL  # local pipeline folder or hub id (hub: only from the local cache offline)
    steps: int = 20  # denoising steps
    guidance_scale: float = 7.5  # text guidance: how strongly to follow the instruction
    image_guidance_scale: float = 1.5  # image guidance: how closely to keep the source photo
    prompt_template: str = "make it {concept}"  # InstructPix2Pix expects an instruction
    work_size: int = 256  # the pipeline runs at work_size^2 (sources upsampled), output resized back
    batch_size: int = 8  # images per pipeline call
    device: str = "auto"  # "auto" = cuda if available, else cpu
    seed: int = 0  # used when edit() gets no seed

    def __post_init__(self):
        if self.steps < 1:
            raise WeightgenError(f"steps must be >= 1, got {self.steps}")
        if self.work_size < 8 or self.work_size % 8:
            raise WeightgenError(f"work_size must be a positive multiple of 8, got {self.work_size}")
        if self.batch_size < 1:
            raise WeightgenError(f"batch_size must be >= 1, got {self.batch_size}")
        if "{concept}" not in self.prompt_template:
            raise WeightgenError(f"prompt_template must contain '{{concept}}', got {self.prompt_template!r}")
        if self.guidance_scale < 0 or self.image_guidance_scale < 0:
            raise WeightgenError(
                f"guidance scales must be >= 0, got {self.guidance_scale} and {self.image_guidance_scale}"
            )
