"""Paired images for pix2pix training, read from the pair-dataset folder that weightgen.pairs writes.

Folder format (agreed between stages):
  <root>/manifest.json   {"format": "weightgen-pairs", "version": 2, "image_size": 64, "canvas_size": 128,
                          "concepts": {"<concept_id>": {"text": ..., "n_train": .., "n_test": ..}}}
  <root>/<concept_id>/pairs.safetensors  uint8 (N, 3, H, W): train_source, train_target, test_source, test_target

Version 2 stores the train split as edited canvases larger than the model's image size; every batch
draws fresh random crops of them (side between the image size and the canvas, resized to the image
size, flipped), so a fine-tune never cycles through a fixed set of crops. The test split is fixed
crops at the image size, so every evaluation scores the same pixels. Version 1 (train images at the
image size, sampled whole) still loads.

The whole set stays in memory as uint8 (32 canvases of 128x128 RGB are 1.6 MB), and batches are cut
from it directly: a DataLoader's worker processes would cost more than the step on a small CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from gan.errors import GanError
from gan.io import load_tensors, read_json

PAIRS_FORMAT = "weightgen-pairs"
PAIRS_FILE = "pairs.safetensors"
SPLIT_KEYS = ("train_source", "train_target", "test_source", "test_target")
PAIRS_VERSIONS = (1, 2)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the generator's tanh range)."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return images.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def _normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


@dataclass
class ConceptPairs:
    """One concept's pairs; tensors are uint8 (N, 3, H, W)."""

    id: str
    text: str
    train_source: torch.Tensor
    train_target: torch.Tensor
    test_source: torch.Tensor
    test_target: torch.Tensor


def read_manifest(root: str | Path) -> dict:
    root = Path(root)
    if not root.is_dir():
        raise GanError(f"pairs folder not found: {root}")
    manifest = read_json(root / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != PAIRS_FORMAT:
        raise GanError(f"{root / 'manifest.json'} is not a {PAIRS_FORMAT} manifest "
                             f"(format={manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") not in PAIRS_VERSIONS:
        raise GanError(f"unsupported pairs manifest version {manifest.get('version')!r} in {root} "
                       f"(expected one of {PAIRS_VERSIONS})")
    if not isinstance(manifest.get("concepts"), dict):
        raise GanError(f"{root / 'manifest.json'} has no 'concepts' table")
    return manifest


def resolve_concept(manifest: dict, concept: str, root: str | Path = "") -> str:
    """Concept id for `concept`, given either as an id or as its text (case and spacing ignored)."""
    concepts = manifest["concepts"]
    if concept in concepts:
        return concept
    wanted = _normalize_text(concept)
    for cid, entry in concepts.items():
        if _normalize_text(str(entry.get("text", ""))) == wanted:
            return cid
    known = ", ".join(sorted(concepts)[:8]) + (" ..." if len(concepts) > 8 else "")
    raise GanError(f"concept {concept!r} is not in the pairs folder {root} (has {len(concepts)}: {known})")


def load_concept(root: str | Path, concept: str, manifest: dict | None = None) -> ConceptPairs:
    """Read one concept's pairs file and check it (keys, dtype, shapes) before anything trains on it."""
    root = Path(root)
    manifest = manifest if manifest is not None else read_manifest(root)
    cid = resolve_concept(manifest, concept, root)
    path = root / cid / PAIRS_FILE
    tensors = load_tensors(path)
    missing = [k for k in SPLIT_KEYS if k not in tensors]
    if missing:
        raise GanError(f"pairs file {path} lacks tensors {missing}")
    for key in SPLIT_KEYS:
        t = tensors[key]
        if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[1] != 3:
            raise GanError(f"{path}: {key} should be uint8 (N, 3, H, W), got {t.dtype} {tuple(t.shape)}")
    for split in ("train", "test"):
        s, t = tensors[f"{split}_source"], tensors[f"{split}_target"]
        if s.shape != t.shape or len(s) == 0:
            raise GanError(f"{path}: {split} source/target shapes differ or are empty: "
                                 f"{tuple(s.shape)} vs {tuple(t.shape)}")
    train_hw, test_hw = tensors["train_source"].shape[2:], tensors["test_source"].shape[2:]
    if train_hw[0] < test_hw[0] or train_hw[1] < test_hw[1]:
        raise GanError(f"{path}: train canvases ({train_hw[0]}x{train_hw[1]}) are smaller than the test images "
                       f"({test_hw[0]}x{test_hw[1]})")
    return ConceptPairs(cid, str(manifest["concepts"][cid].get("text", cid)),
                        *(tensors[k] for k in SPLIT_KEYS))


class PairedData:
    """The train/test pairs of one or several concepts, in memory as uint8, concatenated."""

    def __init__(self, concepts: Sequence[ConceptPairs]):
        if not concepts:
            raise GanError("no concepts given to train on")
        for split in ("train", "test"):
            sizes = {tuple(getattr(c, f"{split}_source").shape[1:]) for c in concepts}
            if len(sizes) > 1:
                raise GanError(f"concepts have different {split} image sizes: {sorted(sizes)}")
        self.concepts = list(concepts)
        cat = lambda key: torch.cat([getattr(c, key) for c in self.concepts])  # noqa: E731
        self.train_source, self.train_target = cat("train_source"), cat("train_target")
        self.test_source, self.test_target = cat("test_source"), cat("test_target")

    @classmethod
    def load(cls, root: str | Path, concepts: Sequence[str] | None = None) -> "PairedData":
        """Concepts by id or text; None = every concept in the manifest."""
        manifest = read_manifest(root)
        names = list(manifest["concepts"]) if concepts is None else list(concepts)
        if not names:
            raise GanError(f"the pairs folder {root} holds no finished concepts")
        return cls([load_concept(root, name, manifest) for name in names])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """What the model sees: the test images' shape (train canvases may be larger)."""
        return tuple(self.test_source.shape[1:])  # type: ignore[return-value]

    @property
    def n_train(self) -> int:
        return len(self.train_source)

    @property
    def n_test(self) -> int:
        return len(self.test_source)

    def sampler(self, batch_size: int, seed: int, flip: bool = True, device: str | torch.device = "cpu") -> "PairSampler":
        return PairSampler(self.train_source, self.train_target, batch_size, seed, flip, device,
                           size=self.image_shape[1:])

    def fixed_train_crops(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` fixed crops of the train canvases (cycling through them), at the test images' size, no flips;
        float [-1, 1]. The same crops for the same seed: a validation set that never touches the test pairs."""
        return fixed_crops(self.train_source, self.train_target, n, self.image_shape[1:], seed)

    def test_batches(self, batch_size: int, device: str | torch.device = "cpu",
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Test pairs in order, float [-1, 1], no augmentation."""
        for i in range(0, self.n_test, batch_size):
            yield (to_float(self.test_source[i:i + batch_size].to(device)),
                   to_float(self.test_target[i:i + batch_size].to(device)))


def fixed_crops(source: torch.Tensor, target: torch.Tensor, n: int, size: tuple[int, int],
                seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` seeded crops of uint8 canvases (cycling through them), resized to `size`, no flips; float [-1, 1]."""
    idx = torch.arange(n) % len(source)
    return paired_crops(to_float(source[idx]), to_float(target[idx]), tuple(size), torch.Generator().manual_seed(seed),
                        flip=False)


def paired_crops(source: torch.Tensor, target: torch.Tensor, size: tuple[int, int], generator: torch.Generator,
                 flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One random square crop per (source, target) pair, the same window and flip on both, resized to `size`.

    The crop side is uniform between the output size and the canvas (never upsampled), its position
    uniform; antialiased bilinear resizing keeps a 2x-downscaled canvas free of aliasing. Float in,
    float out; deterministic in `generator`.
    """
    n, _, h, w = source.shape  # (N, 3, H, W) canvases
    out_h, out_w = size
    if (h, w) == (out_h, out_w):
        src, tgt = source, target
    else:
        hi = min(h * out_w // out_h, w)  # widest window of the output's aspect that fits
        sides = torch.randint(out_w, hi + 1, (n,), generator=generator).tolist()
        fy, fx = torch.rand(n, generator=generator).tolist(), torch.rand(n, generator=generator).tolist()
        both = torch.cat([source, target], dim=1)  # (N, 6, H, W): one resize serves the pair
        crops = []
        for i, side_w in enumerate(sides):
            side_h = side_w * out_h // out_w
            y, x = int(fy[i] * (h - side_h + 1)), int(fx[i] * (w - side_w + 1))
            window = both[i:i + 1, :, y:y + side_h, x:x + side_w]
            crops.append(window if (side_h, side_w) == (out_h, out_w) else
                         F.interpolate(window, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False))
        both = torch.cat(crops)  # (N, 6, out_h, out_w)
        src, tgt = both[:, :3], both[:, 3:]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(src.device).view(-1, 1, 1, 1)
        src, tgt = torch.where(mask, src.flip(-1), src), torch.where(mask, tgt.flip(-1), tgt)
    return src, tgt


class PairSampler:
    """Endless shuffled batches of (source, target) in [-1, 1]: fresh random crops of the train canvases.

    Each epoch is a fresh permutation of the canvases from a seeded generator, and each drawn canvas
    gets a new crop window and flip, so a run is reproducible but never repeats a batch; give each
    process its own seed (seed + process index) under multi-process training.
    """

    def __init__(self, source: torch.Tensor, target: torch.Tensor, batch_size: int, seed: int, flip: bool = True,
                 device: str | torch.device = "cpu", size: tuple[int, int] | None = None):
        self.source, self.target = source.to(device), target.to(device)
        self.batch_size, self.flip, self.device = batch_size, flip, device
        self.size = tuple(size) if size is not None else tuple(source.shape[2:])
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)

    def _next_indices(self) -> torch.Tensor:
        # Refill with whole permutations so every canvas is seen once per epoch, even when batch > N.
        while len(self._order) < self.batch_size:
            self._order = torch.cat([self._order, torch.randperm(len(self.source), generator=self.generator)])
        idx, self._order = self._order[: self.batch_size], self._order[self.batch_size:]
        return idx

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Where the endless stream stands (RNG and the rest of the epoch): a resume continues it exactly."""
        return {"rng": self.generator.get_state(), "order": self._order.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["rng"])
        self._order = state["order"].to(torch.long)

    def __iter__(self) -> "PairSampler":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self._next_indices().to(self.source.device)
        src, tgt = to_float(self.source[idx]), to_float(self.target[idx])  # (B, 3, H, W) canvases
        return paired_crops(src, tgt, self.size, self.generator, self.flip)  # (B, 3, h, w) each
