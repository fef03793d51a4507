"""How a pairs folder is built: its file names and the validated build settings (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from weightgen.config import Config
from weightgen.errors import WeightgenError
from weightgen.pairs.editors import REGISTRY
from weightgen.pairs.editors.config import BankConfig

FORMAT = "weightgen-pairs"
VERSION = 2  # 2: train canvases larger than the image size, cropped per batch (gan.data)
MANIFEST = "manifest.json"
PAIRS_FILE = "pairs.safetensors"
RUNTIME_OPTIONS = ("batch_size", "device")  # editor options that do not change the pairs


@dataclass
class PairsConfig(Config):
    out: str  # dataset folder
    editor: str = "bank"  # weightgen.pairs.editors.REGISTRY key
    image_size: int = 64  # pixels per side of the images the GAN sees
    canvas_size: int | None = None  # side of the edited train canvases, cropped afresh per batch; None = 2 x image_size
    n_train: int = 32  # train canvases per concept (crops of train photos, edited once)
    n_test: int = 16  # test pairs per concept (crops of test photos, fixed)
    seed: int = 0  # photo split, crops and the editor's randomness
    sources: str | None = None  # folder of photos; None = the bundled photos
    test_fraction: float = 0.25  # share of photos held out
    overwrite: bool = False  # rebuild a folder made with other settings instead of refusing
    editor_options: dict = field(default_factory=dict)  # passed to the editor's constructor

    def __post_init__(self):
        if self.editor not in REGISTRY:
            raise WeightgenError(f"unknown editor {self.editor!r}; choose one of {sorted(REGISTRY)}")
        if not 8 <= self.image_size <= 4096:
            raise WeightgenError(f"image_size must be in [8, 4096], got {self.image_size}")
        if self.canvas_size is None:
            self.canvas_size = min(2 * self.image_size, 4096)
        if not self.image_size <= self.canvas_size <= 4096:
            raise WeightgenError(f"canvas_size must be in [image_size={self.image_size}, 4096], got {self.canvas_size}")
        if self.n_train < 1 or self.n_test < 1:
            raise WeightgenError(f"n_train and n_test must be >= 1, got {self.n_train} and {self.n_test}")
        if self.editor == "bank":
            BankConfig.from_dict(self.editor_options)  # unknown or bad options fail here, before any work
        elif "style_image" in self.editor_options:
            raise WeightgenError(f"a style image needs the bank editor, not {self.editor!r}")

    def settings(self) -> dict:
        """What must match for a folder to be resumed (anything else changes the data)."""
        return {
            "image_size": self.image_size,
            "canvas_size": self.canvas_size,
            "editor": self.editor,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "sources_origin": "bundled" if self.sources is None else str(Path(self.sources).resolve()),
            "test_fraction": self.test_fraction,
            "editor_options": self._editor_settings(),
        }

    def _editor_settings(self) -> dict:
        """The bank's are complete (defaults included, the style image by content): a folder built
        before a default changed is refused, not silently extended with different-looking pairs."""
        if self.editor == "bank":
            return BankConfig.from_dict(self.editor_options).settings()
        return {k: v for k, v in self.editor_options.items() if k not in RUNTIME_OPTIONS}


