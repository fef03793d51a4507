"""Image batches as every editor takes and returns them: (N, 3, H, W) uint8 or float in [0, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from weightgen.errors import WeightgenError


def to_float_images(sources: Any):
    """(N, 3, H, W) uint8 or float images -> (float32 tensor in [0, 1], was_uint8)."""
    if isinstance(sources, np.ndarray):
        sources = torch.from_numpy(np.ascontiguousarray(sources))
    if not isinstance(sources, torch.Tensor):
        raise WeightgenError(f"sources must be a tensor or array of shape (N, 3, H, W), got {type(sources).__name__}")
    if sources.ndim != 4 or sources.shape[1] != 3:
        raise WeightgenError(f"sources must have shape (N, 3, H, W), got {tuple(sources.shape)}")
    if sources.dtype == torch.uint8:
        return sources.float() / 255.0, True
    if not sources.is_floating_point():
        raise WeightgenError(f"sources must be uint8 or float, got {sources.dtype}")
    return sources.float().clamp(0, 1), False


def from_float_images(x, as_uint8: bool):
    """Inverse of `to_float_images`: round to uint8 when the input was uint8."""
    x = x.clamp(0, 1)
    return (x * 255).round().to(torch.uint8) if as_uint8 else x
