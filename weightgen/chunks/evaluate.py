"""Judging LoRA weights by the GAN they make: test-pair quality of in-memory adapters on one base.

The generator's validation, the held-out comparison of inits and the benchmark all ask the same
question of many adapters: how good are the images? One base is wrapped with the LoRA once and
each adapter's tensors are swapped in, so a check costs a forward pass over the test pairs, not
a model build.

    ev = AdapterEvaluator.from_zoo("runs/zoo")                # base + pairs named by the zoo manifest
    ev.evaluate("van gogh style", state_dict)                 # {"l1", "psnr", "ssim"}
    ev.evaluate("van gogh style", None)                       # the base alone (a zero-init LoRA)

The generator's validation hook and guidance pick built on it live in weightgen.generator.validation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import set_peft_model_state_dict

from gan.base import load_base
from gan.data import ConceptPairs, PairedData
from gan.lora import lora_from_state_dict
from gan.metrics import evaluate_pairs
from weightgen.chunks.adapters import read_adapter
from weightgen.chunks.dataset import zoo_checkpoints
from weightgen.errors import WeightgenError


class AdapterEvaluator:
    """Base generator + one LoRA slot + the pairs folder; `evaluate(concept, state_dict)` -> metrics."""

    def __init__(self, base_dir: str | Path, pairs_dir: str | Path, adapter_config: dict, device: str = "cpu"):
        self.base_dir, self.pairs_dir, self.device = Path(base_dir), Path(pairs_dir), device
        generator, _ = load_base(base_dir)
        self.model = lora_from_state_dict(generator, adapter_config, None, is_trainable=False).to(device).eval()
        self.adapter_config = adapter_config
        self._pairs: dict[str, ConceptPairs] = {}

    @classmethod
    def from_zoo(cls, zoo_dir: str | Path, pairs_dir: str | Path | None = None, base_dir: str | Path | None = None,
                 device: str = "cpu") -> AdapterEvaluator:
        """Base, pairs and adapter config as the zoo manifest records them (overridable when moved)."""
        try:
            checkpoints, manifest = zoo_checkpoints(zoo_dir, "train")
        except WeightgenError:  # a zoo of held-out oracles only: any checkpoint gives the adapter config
            checkpoints, manifest = zoo_checkpoints(zoo_dir, "heldout")
        _, config = read_adapter(Path(zoo_dir) / checkpoints[0].path)
        return cls(base_dir or manifest["base"], pairs_dir or manifest["pairs"], config, device)

    def pairs(self, concept: str) -> ConceptPairs:
        """The concept's pairs (by text or id), loaded once."""
        if concept not in self._pairs:
            self._pairs[concept] = PairedData.load(self.pairs_dir, [concept]).concepts[0]
        return self._pairs[concept]

    def _load(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Swap these LoRA weights into the shared model (not thread-safe)."""
        result = set_peft_model_state_dict(self.model, state_dict)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise WeightgenError(f"LoRA weights do not fit the base {self.base_dir}: missing {missing[:2]}, "
                                 f"unexpected {list(result.unexpected_keys)[:2]}")

    def evaluate(self, concept: str, state_dict: dict[str, torch.Tensor] | None) -> dict[str, float]:
        """L1 / PSNR / SSIM on the concept's test pairs with these LoRA weights (None: the base alone)."""
        pairs = self.pairs(concept)
        if state_dict is None:
            with self.model.disable_adapter():
                return evaluate_pairs(self.model, pairs.test_source, pairs.test_target, device=self.device)
        self._load(state_dict)
        return evaluate_pairs(self.model, pairs.test_source, pairs.test_target, device=self.device)
