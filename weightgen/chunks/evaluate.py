"""Judging LoRA weights by the GAN they make: test-pair quality of in-memory adapters on one base.

The generator's validation, the held-out comparison of inits and the benchmark all ask the same
question of many adapters: how good are the images? One base is wrapped with the LoRA once and
each adapter's tensors are swapped in, so a check costs a forward pass over the test pairs, not
a model build.

    ev = AdapterEvaluator.from_zoo("runs/zoo")                # base + pairs named by the zoo manifest
    ev.evaluate("van gogh style", state_dict)                 # {"l1", "psnr", "ssim"}
    ev.evaluate("van gogh style", None)                       # the base alone (a zero-init LoRA)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from weightgen.errors import WeightgenError

if TYPE_CHECKING:
    import torch

    from gan.data import ConceptPairs


class AdapterEvaluator:
    """Base generator + one LoRA slot + the pairs folder; `evaluate(concept, state_dict)` -> metrics."""

    def __init__(self, base_dir: str | Path, pairs_dir: str | Path, adapter_config: dict, device: str = "cpu"):
        from gan.base import load_base
        from gan.lora import lora_from_state_dict

        self.base_dir, self.pairs_dir, self.device = Path(base_dir), Path(pairs_dir), device
        generator, _ = load_base(base_dir)
        self.model = lora_from_state_dict(generator, adapter_config, None, is_trainable=False).to(device).eval()
        self.adapter_config = adapter_config
        self._pairs: dict[str, ConceptPairs] = {}

    @classmethod
    def from_zoo(cls, zoo_dir: str | Path, pairs_dir: str | Path | None = None, base_dir: str | Path | None = None,
                 device: str = "cpu") -> AdapterEvaluator:
        """Base, pairs and adapter config as the zoo manifest records them (overridable when moved)."""
        from weightgen.chunks import read_adapter, zoo_checkpoints

        checkpoints, manifest = zoo_checkpoints(zoo_dir, "train")
        _, config = read_adapter(Path(zoo_dir) / checkpoints[0].path)
        return cls(base_dir or manifest["base"], pairs_dir or manifest["pairs"], config, device)

    def pairs(self, concept: str) -> ConceptPairs:
        """The concept's pairs (by text or id), loaded once."""
        from gan.data import PairedData

        if concept not in self._pairs:
            self._pairs[concept] = PairedData.load(self.pairs_dir, [concept]).concepts[0]
        return self._pairs[concept]

    def _load(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Swap these LoRA weights into the shared model (not thread-safe)."""
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state_dict)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise WeightgenError(f"LoRA weights do not fit the base {self.base_dir}: missing {missing[:2]}, "
                                 f"unexpected {list(result.unexpected_keys)[:2]}")

    def evaluate(self, concept: str, state_dict: dict[str, torch.Tensor] | None) -> dict[str, float]:
        """L1 / PSNR / SSIM on the concept's test pairs with these LoRA weights (None: the base alone)."""
        from gan.metrics import evaluate_pairs

        pairs = self.pairs(concept)
        if state_dict is None:
            with self.model.disable_adapter():
                return evaluate_pairs(self.model, pairs.test_source, pairs.test_target, device=self.device)
        self._load(state_dict)
        return evaluate_pairs(self.model, pairs.test_source, pairs.test_target, device=self.device)


def validation_fn(evaluator: AdapterEvaluator, concepts: list[str]):
    """A `weightgen train` validation callback: generate the concepts' adapters, report mean test quality.

    Reports the base's L1 next to the generated one, so a log line says whether the generator's
    weights help at all.
    """
    import statistics

    base = {c: evaluator.evaluate(c, None)["l1"] for c in concepts}

    def validate(step: int, generate) -> dict[str, float]:
        state_dicts = generate(concepts)
        metrics = [evaluator.evaluate(c, sd) for c, sd in zip(concepts, state_dicts)]
        l1, psnr = [m["l1"] for m in metrics], [m["psnr"] for m in metrics]
        return {"val_l1": statistics.mean(l1), "val_psnr": statistics.mean(psnr),
                "base_l1": statistics.mean(base.values()),
                "better_than_base": sum(a < base[c] for c, a in zip(concepts, l1)) / len(concepts)}

    return validate


def chunks_validation(chunks_dir: str | Path, zoo: str | Path | None = None, n_concepts: int = 8,
                      val_concepts: int = 0, seed: int = 0):
    """The validation callback of a generator trained on these chunks (a no-op off the main process).

    The diffusion loss says little about the GAN a generated LoRA makes, so training reports the
    test-pair L1/PSNR of generated weights, next to the base's, on the training concepts the run
    keeps out (`val_concepts`, as weightgen.generator.training picks them), or else on the zoo's held-out
    concepts (watched, never tuned on). `zoo` defaults to the one the chunks were cut from.
    """
    import json

    from accelerate import PartialState

    from weightgen.chunks import read_chunks_metadata, zoo_checkpoints
    from weightgen.generator.training import validation_concepts

    if n_concepts < 1:
        raise WeightgenError(f"validation needs at least 1 concept, got {n_concepts}")
    meta = read_chunks_metadata(chunks_dir)
    zoo = Path(zoo if zoo is not None else meta.get("zoo", ""))
    if not (zoo / "manifest.json").is_file():
        raise WeightgenError(f"cannot validate: zoo manifest not found at {zoo}")
    if val_concepts:
        texts = validation_concepts(json.loads(meta["concepts"]), val_concepts, seed)
    else:
        held, _ = zoo_checkpoints(zoo, "heldout")
        texts = list(dict.fromkeys(ck.text for ck in held))
    if not PartialState().is_main_process:
        return lambda step, generate: {}  # only the main process validates
    return validation_fn(AdapterEvaluator.from_zoo(zoo), texts[:n_concepts])


def pick_guidance(generator_dir: str | Path, zoo: str | Path, scales: list[float], log=print) -> float:
    """Score each guidance scale on the generator's validation concepts; the best mean test L1 becomes its default.

    Those are training concepts the generator was trained without (`validation_concepts` in its
    generator.json), never the benchmark's held-out ones: this is model selection.
    """
    import statistics

    from gan.io import read_json, write_json
    from weightgen.generator.pipeline import GENERATOR_FILE, WeightGenPipeline

    generator_dir = Path(generator_dir)
    pipe = WeightGenPipeline.from_pretrained(generator_dir)
    texts = list(pipe.info.get("validation_concepts") or [])
    if not texts or not scales:
        raise WeightgenError("picking a guidance scale needs validation concepts (train with val_concepts >= 1) "
                             "and at least one scale")
    evaluator = AdapterEvaluator.from_zoo(zoo)
    trained_on = set(pipe.info.get("concepts", []))
    if trained_on & set(texts):
        raise WeightgenError(f"guidance must be picked on concepts the generator did not train on; "
                             f"it trained on {sorted(trained_on & set(texts))[:3]}")
    scores = {}
    for scale in scales:
        sds = pipe.generate(texts, guidance_scale=scale)
        scores[scale] = statistics.mean(evaluator.evaluate(t, sd)["l1"] for t, sd in zip(texts, sds))
        log(f"guidance {scale:g}: mean test L1 {scores[scale]:.4f} on {len(texts)} validation concepts")
    best = min(scores, key=scores.get)
    info = read_json(generator_dir / GENERATOR_FILE)
    info.update(guidance_scale=best, guidance_sweep={f"{k:g}": v for k, v in scores.items()})
    write_json(generator_dir / GENERATOR_FILE, info)
    log(f"default guidance scale {best:g} written to {generator_dir / GENERATOR_FILE}")
    return best
