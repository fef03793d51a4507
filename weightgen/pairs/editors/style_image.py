"""A painting given as a concept's style (`--style-image`): read, checked and normalised, without torch.

The CLI reads it before any heavy work so a bad file fails in a second with one line, and the
bank editor reads it again to predict its style. Conversions (grayscale, transparency, a huge
file) are made, not refused: each leaves a note the editor turns into a warning line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from weightgen.digests import sha256_file
from weightgen.errors import WeightgenError

MIN_SIDE = 32  # the style predictor sees a 256 px centre crop; below 32 px there is no texture to see
MAX_SIDE = 1024  # larger paintings are downscaled on reading (the predictor would shrink them anyway)
GRAY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


@dataclass(frozen=True)
class StyleImage:
    path: str
    sha256: str  # of the file's bytes: what the pairs manifest records
    pixels: np.ndarray  # (H, W, 3) uint8 RGB, longer side <= MAX_SIDE
    notes: tuple[str, ...]  # the conversions made, one sentence each

    @property
    def name(self) -> str:
        return Path(self.path).name


def load_style_image(path: str | Path) -> StyleImage:
    """Read a painting as RGB, or raise WeightgenError saying what is wrong with the file."""
    path = Path(path)
    if path.is_dir():
        raise WeightgenError(f"style image is a folder, not an image: {path}")
    if not path.is_file():
        raise WeightgenError(f"style image not found: {path}")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():  # PIL warns about big images; they are downscaled below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            size = img.size
            img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode a huge file at a fraction of its size
            img = ImageOps.exif_transpose(img)
            img.load()
    except Image.DecompressionBombError as e:
        raise WeightgenError(f"style image {path} is too large to decode safely ({e}); "
                             f"downscale it below {MAX_SIDE * 8} px a side") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise WeightgenError(f"cannot read style image {path} (not an image file PIL can open: "
                             f"{type(e).__name__}: {e})") from None
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise WeightgenError(f"style image {path} is {w}x{h} px; both sides need at least {MIN_SIDE} px")
    img = _to_rgb(img, notes)
    if max(img.size) > MAX_SIDE:
        scale = MAX_SIDE / max(img.size)
        small = (max(MIN_SIDE, round(img.width * scale)), max(MIN_SIDE, round(img.height * scale)))
        notes.append(f"is {w}x{h} px; downscaled to {small[0]}x{small[1]}")
        img = img.resize(small, Image.LANCZOS)
    return StyleImage(str(path), sha256_file(path), np.asarray(img, dtype=np.uint8).copy(), tuple(notes))


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode == "RGB":
            return img
        mode = "P with transparency"
    if img.mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        gray = " and is grayscale" if mode in ("LA", "La") else ""
        notes.append(f"has transparency ({mode}){gray}; composited on white and converted to RGB")
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in GRAY_MODES:
        arr = np.asarray(img).astype(np.float64)
        if mode == "1":
            arr = arr * 255.0
        elif arr.max() > 255:  # 16-bit or float: stretch to 8 bits rather than clip to white
            arr = arr / arr.max() * 255.0
        notes.append(f"is grayscale ({mode}); converted to RGB, so its style has no colour")
        return Image.fromarray(arr.clip(0, 255).round().astype(np.uint8), "L").convert("RGB")
    notes.append(f"is {mode}; converted to RGB")
    return img.convert("RGB")
