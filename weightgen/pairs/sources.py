"""Source photos for the pairs: bundled real photos (offline) or a user folder, cropped and split.

The split is by photo, never by crop: crops of one photo share its content, so a photo on both
sides would leak test content into training and flatter every held-out number downstream.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import skimage.data
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from weightgen.errors import WeightgenError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return load_sample_image(f"{name}.jpg")

    return load


# Real photographs that ship inside the scikit-image and scikit-learn wheels (no download).
# Left out: synthetic images, near-duplicates (skimage 'cat' is 'chelsea'; only the left view of
# the stereo pair), flat grey ones (moon, clock) and the photos scikit-image fetches from the
# network (brain, eagle, lily, ...).
BUNDLED_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "skimage:astronaut": _skimage("astronaut"),
    "skimage:chelsea": _skimage("chelsea"),
    "skimage:coffee": _skimage("coffee"),
    "skimage:rocket": _skimage("rocket"),
    "skimage:hubble_deep_field": _skimage("hubble_deep_field"),
    "skimage:immunohistochemistry": _skimage("immunohistochemistry"),
    "skimage:retina": _skimage("retina"),
    "skimage:motorcycle": _skimage("stereo_motorcycle"),
    "skimage:camera": _skimage("camera"),
    "skimage:coins": _skimage("coins"),
    "sklearn:china": _sklearn("china"),
    "sklearn:flower": _sklearn("flower"),
}


@dataclass
class SourceConfig:
    image_size: int = 64  # crops are resized to image_size x image_size (the canvas size, when given)
    n_train: int = 32  # crops from the train photos
    n_test: int = 16  # crops from the test photos
    seed: int = 0  # photo split and crop positions
    folder: str | None = None  # a folder of photos instead of the bundled ones
    test_fraction: float = 0.25  # share of photos (not crops) held out for test
    min_crop: float = 0.35  # smallest crop side, as a fraction of the photo's shorter side
    canvas_size: int | None = None  # crop at this larger size (the pairs' train canvases); None = image_size

    def __post_init__(self):
        if not 8 <= self.image_size <= 4096:
            raise WeightgenError(f"image_size must be in [8, 4096], got {self.image_size}")
        if self.canvas_size is not None and not self.image_size <= self.canvas_size <= 4096:
            raise WeightgenError(f"canvas_size must be in [image_size={self.image_size}, 4096], got {self.canvas_size}")
        if self.n_train < 1 or self.n_test < 1:
            raise WeightgenError(f"n_train and n_test must be >= 1, got {self.n_train} and {self.n_test}")
        if not 0 < self.test_fraction < 1:
            raise WeightgenError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0 < self.min_crop <= 1:
            raise WeightgenError(f"min_crop must be in (0, 1], got {self.min_crop}")


@dataclass
class PhotoSet:
    photos: dict[str, np.ndarray]  # name -> (H, W, 3) uint8 RGB, in a stable order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


@dataclass
class SourceSplit:
    train: torch.Tensor  # (n_train, 3, S, S) uint8, S the canvas size
    test: torch.Tensor  # (n_test, 3, S, S) uint8
    train_photos: list[str]
    test_photos: list[str]
    train_crop_photos: list[str]  # the photo each train crop came from
    test_crop_photos: list[str]
    skipped: list[tuple[str, str]]
    origin: str  # "bundled" or the folder path

    def describe(self) -> dict:
        return {
            "origin": self.origin,
            "train": self.train_photos,
            "test": self.test_photos,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
        }


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Any 2D/3D image array -> (H, W, 3) uint8 RGB (grey repeated, alpha composited on white)."""
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = img.astype(np.float64)
        hi = 1.0 if img.max() <= 1.0 else (255.0 if img.max() <= 255 else float(img.max()))
        img = np.clip(img / hi * 255, 0, 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"not an image array: shape {img.shape}")
    if img.shape[2] in (2, 4):  # grey+alpha or RGBA: composite over white
        alpha = img[..., -1:].astype(np.float32) / 255
        color = img[..., :-1].astype(np.float32)
        img = (color * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
        elif im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        return to_rgb(np.asarray(im))


def load_photos(folder: str | Path | None = None, min_size: int = 64) -> PhotoSet:
    """The bundled photos, or every image file under `folder` (recursively, sorted by path).

    Unreadable images and images whose shorter side is below `min_size` are skipped with a
    warning and listed in `PhotoSet.skipped`; grayscale and RGBA images are converted to RGB.
    """
    if folder is None:
        return PhotoSet(photos={name: to_rgb(load()) for name, load in BUNDLED_PHOTOS.items()})
    root = Path(folder)
    if not root.is_dir():
        raise WeightgenError(f"sources folder not found: {folder}")
    photos, skipped = {}, []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        name = path.relative_to(root).as_posix()
        try:
            img = _read_image(path)
        except Exception as e:  # PIL raises many types for broken files; all mean "skip it"
            skipped.append((name, f"unreadable: {type(e).__name__}: {e}"[:200]))
            continue
        if min(img.shape[:2]) < min_size:
            skipped.append((name, f"too small: {img.shape[1]}x{img.shape[0]} < {min_size}"))
            continue
        photos[name] = img
    for name, reason in skipped:
        warnings.warn(f"skipped source image {name}: {reason}", stacklevel=2)
    return PhotoSet(photos=photos, skipped=skipped)


def split_photos(names: list[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of photo names: at least one photo on each side."""
    if len(names) < 2:
        raise WeightgenError(f"need at least 2 usable source photos for a train/test split, found {len(names)}")
    order = sorted(names)
    random.Random(seed).shuffle(order)
    n_test = min(len(order) - 1, max(1, round(len(order) * test_fraction)))
    return sorted(order[n_test:]), sorted(order[:n_test])


def random_crops(
    photos: list[np.ndarray], names: list[str], n: int, size: int, rng: np.random.Generator, min_crop: float
) -> tuple[torch.Tensor, list[str]]:
    """n square crops (random side and position, random horizontal flip) resized to size x size.

    Photos take turns (crop i comes from photo i mod len), so every photo is used evenly.
    """
    out, origin = np.empty((n, size, size, 3), dtype=np.uint8), []
    pil = {}
    for i in range(n):
        j = i % len(photos)
        img = photos[j]
        h, w = img.shape[:2]
        short = min(h, w)
        side = int(round(short * rng.uniform(min_crop, 1.0)))
        side = max(min(side, short), min(size, short))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        if j not in pil:
            pil[j] = Image.fromarray(img)
        crop = pil[j].resize((size, size), Image.Resampling.BILINEAR, box=(x, y, x + side, y + side), reducing_gap=3.0)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(crop)
        origin.append(names[j])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), origin


def build_sources(config: SourceConfig, photo_set: PhotoSet | None = None) -> SourceSplit:
    """Load (or take) the photos, split them by photo, crop each side; deterministic in the seed."""
    photo_set = photo_set or load_photos(config.folder, min_size=config.image_size)
    names = list(photo_set.photos)
    train_names, test_names = split_photos(names, config.test_fraction, config.seed)
    rng = np.random.default_rng(config.seed)
    size = config.canvas_size or config.image_size
    train, train_origin = random_crops(
        [photo_set.photos[n] for n in train_names], train_names, config.n_train, size, rng, config.min_crop
    )
    test, test_origin = random_crops(
        [photo_set.photos[n] for n in test_names], test_names, config.n_test, size, rng, config.min_crop
    )
    return SourceSplit(
        train=train,
        test=test,
        train_photos=train_names,
        test_photos=test_names,
        train_crop_photos=train_origin,
        test_crop_photos=test_origin,
        skipped=photo_set.skipped,
        origin="bundled" if config.folder is None else str(config.folder),
    )
