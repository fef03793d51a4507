"""Before/after image grids: one row per test pair, one labelled column per image set (source | target | base | lora)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from gan.errors import GanError
from gan.io import atomic_path

HEADER = 14  # pixels of label text above each column


def write_grid(path: str | Path, columns: dict[str, torch.Tensor], max_rows: int = 8, scale: int = 2,
               pad: int = 2) -> Path:
    """Write a PNG grid atomically; every column is uint8 (N, 3, H, W) with the same N, H, W."""
    if not columns:
        raise GanError("no image columns to draw")
    shapes = {name: tuple(t.shape) for name, t in columns.items()}
    first = next(iter(columns.values()))
    if any(t.dtype != torch.uint8 or t.dim() != 4 or t.shape[1] != 3 or t.shape != first.shape
           for t in columns.values()):
        raise GanError(f"grid columns must be uint8 (N, 3, H, W) of one shape, got {shapes}")
    n = min(len(first), max_rows)
    h, w = first.shape[2] * scale, first.shape[3] * scale
    canvas = Image.new("RGB", (len(columns) * (w + pad) + pad, HEADER + n * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (name, images) in enumerate(columns.items()):
        x = pad + c * (w + pad)
        draw.text((x + 2, 1), name[: max(1, w // 6)], fill="black")
        for r in range(n):
            tile = Image.fromarray(images[r].permute(1, 2, 0).contiguous().numpy()).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (x, HEADER + pad + r * (h + pad)))
    path = Path(path)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path
