"""Editors turn source photos into a concept's target images, behind one interface.

`REGISTRY` maps the names the CLI offers to factories; the factories import their module on call
so that listing the choices (`weightgen pairs --help`) never imports torch or diffusers.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from weightgen.errors import WeightgenError


class Editor(Protocol):
    """Edit a batch of source images towards a concept.

    `edit(sources, concept, seed)`: sources are (N, 3, H, W) RGB, uint8 or float in [0, 1] (torch or
    numpy); returns targets of the same shape and kind. The same (sources, concept, seed) always
    gives the same bytes; `seed=None` means the editor's own default seed.
    """

    name: str

    def edit(self, sources: Any, concept: str, seed: int | None = None) -> Any: ...

    def describe(self) -> dict:
        """JSON-able settings the dataset manifest records next to the editor's name."""
        ...


def _procedural(**options) -> Editor:
    from weightgen.pairs.editors.procedural import ProceduralEditor

    return ProceduralEditor(**options)


def _instruct_pix2pix(**options) -> Editor:
    from weightgen.pairs.editors.instruct_pix2pix import InstructPix2PixEditor

    return InstructPix2PixEditor(**options)


REGISTRY: dict[str, Callable[..., Editor]] = {
    "procedural": _procedural,
    "instruct-pix2pix": _instruct_pix2pix,
}


def load_editor(name: str, **options) -> Editor:
    """Build the editor registered under `name` (options go to its constructor)."""
    if name not in REGISTRY:
        raise WeightgenError(f"unknown editor {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name](**options)


def to_float_images(sources: Any):
    """(N, 3, H, W) uint8 or float images -> (float32 tensor in [0, 1], was_uint8)."""
    import torch

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
    import torch

    x = x.clamp(0, 1)
    return (x * 255).round().to(torch.uint8) if as_uint8 else x
