"""What a concept's fine-tunes are scored on and timed against: its image sets, its oracle, its targets.

Three fixed image sets per concept (uint8, (N, 3, H, W)):

    eval   the first `eval_pairs` test pairs: what every dense evaluation scores (a small batch, for speed)
    test   every test pair: step 0, the final quality, and the check that the small batch tracks it
    val    `val_crops` crops of the concept's *train* canvases: what chooses the oracle's checkpoint

The oracle is the concept's own LoRA (a zoo entry, or the bench's reference fine-tune for a
concept outside the zoo), at its best checkpoint *on the validation crops*: choosing among K
checkpoints by test quality would make the target the best of K noisy test scores, a bar no
other method is measured against. Why crops of the train canvases rather than held-out canvases:
the zoo's LoRAs trained on every canvas, so no canvas is unseen by them and retraining every
oracle on fewer would change the oracle itself. The crops are fresh windows (gan.data.paired_crops:
random side between the image size and the canvas, random position, no flip, from a generator
seeded apart from the training batches), so they are not the batches the LoRA was fitted to but
come from the same photos; they never touch the test photos, which is what keeps the test
figures clean. The reference fine-tunes follow the same rule, so both kinds of target mean the
same. Each metric picks its own checkpoint (the lowest validation L1 sets the L1 targets, the
lowest validation style distance the style targets); every checkpoint's validation and test
scores are kept in the record, so the report can say how often validation picked the test-best.

Targets (weightgen.bench.config.TARGETS) are set on the eval set, where the runs are timed: the
oracle's quality, and d(base) - f (d(base) - d(oracle)) with f = gain_fraction (90% of its gain).
A target where the oracle is no better than the base has no room: the report leaves that
concept out of that target's statistics and says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import set_peft_model_state_dict

from gan.base import load_base
from gan.data import ConceptPairs, fixed_crops, to_uint8
from gan.lora import lora_from_state_dict
from gan.metrics import score_pairs
from gan.perceptual import StyleEmbedder
from weightgen.bench.config import TARGET_METRICS, TARGETS
from weightgen.chunks.adapters import read_adapter
from weightgen.errors import WeightgenError

VAL_SEED_OFFSET = 7919  # the validation crops draw from seed + this: a stream apart from the training batches'
Embeddings = tuple[torch.Tensor, torch.Tensor]  # (outputs, targets) style embeddings, (N, 100) each


@dataclass
class EvalSets:
    """One concept's eval / test / validation images (see the module docstring)."""

    eval_source: torch.Tensor
    eval_target: torch.Tensor
    test_source: torch.Tensor
    test_target: torch.Tensor
    val_source: torch.Tensor
    val_target: torch.Tensor

    @property
    def eval_is_full(self) -> bool:
        """The dense evaluations score every test pair: no separate full-set evaluations needed."""
        return len(self.eval_source) == len(self.test_source)

    def training_pairs(self, pairs: ConceptPairs) -> ConceptPairs:
        """The concept with the eval set as its test split: what the trainer's own evaluations then score."""
        return ConceptPairs(pairs.id, pairs.text, pairs.train_source, pairs.train_target, self.eval_source,
                            self.eval_target)


def validation_crops(pairs: ConceptPairs, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` fixed crops of the train canvases (cycling through them), at the test images' size; uint8."""
    src, tgt = fixed_crops(pairs.train_source, pairs.train_target, n, tuple(pairs.test_source.shape[2:]),
                           seed + VAL_SEED_OFFSET)
    return to_uint8(src), to_uint8(tgt)


def eval_sets(pairs: ConceptPairs, eval_pairs: int | None, val_crops: int, seed: int) -> EvalSets:
    n = len(pairs.test_source) if eval_pairs is None else min(eval_pairs, len(pairs.test_source))
    return EvalSets(pairs.test_source[:n], pairs.test_target[:n], pairs.test_source, pairs.test_target,
                    *validation_crops(pairs, val_crops, seed))


def scored(model: torch.nn.Module, source: torch.Tensor, target: torch.Tensor,
           embedder: StyleEmbedder) -> tuple[dict[str, float], Embeddings]:
    """L1 / PSNR / SSIM / style of model(source) against target, and the style embeddings."""
    metrics = score_pairs(model, source, target, embedder=embedder)
    return metrics.compute(), metrics.embeddings


def rounded_embeddings(embeddings: torch.Tensor) -> list[list[float]]:
    """(N, 100) embeddings as JSON lists, 4 decimals: ~1e-4 of values near 1, far below what a distance resolves."""
    return [[round(float(v), 4) for v in row] for row in embeddings]


class LoraSlot:
    """The base generator with one LoRA slot: checkpoints are swapped in to be scored, the base scored with it off."""

    def __init__(self, base_dir: str | Path, adapter_config: dict, device: str = "cpu"):
        generator, _ = load_base(base_dir)
        self.base_dir, self.device = Path(base_dir), device
        self.model = lora_from_state_dict(generator, adapter_config, None, is_trainable=False).to(device).eval()

    def score(self, state_dict: dict[str, torch.Tensor] | None, source: torch.Tensor, target: torch.Tensor,
              embedder: StyleEmbedder) -> tuple[dict[str, float], Embeddings]:
        """These LoRA weights (None: the base alone) scored on (source, target)."""
        if state_dict is None:
            with self.model.disable_adapter():
                return scored(self.model, source, target, embedder)
        result = set_peft_model_state_dict(self.model, state_dict)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise WeightgenError(f"LoRA weights do not fit the base {self.base_dir}: missing {missing[:2]}, "
                                 f"unexpected {list(result.unexpected_keys)[:2]}")
        return scored(self.model, source, target, embedder)


def _pick(metrics: dict[str, float]) -> dict[str, float]:
    return {m: metrics[m] for m in TARGET_METRICS}


def measure_oracle(slot: LoraSlot, embedder: StyleEmbedder, sets: EvalSets,
                   checkpoints: Sequence[tuple[Path, str, int]], gain_fraction: float, source: str) -> dict:
    """The oracle record: every checkpoint's validation / test / eval scores, the validation choice per metric,
    the base's scores, and the targets. `checkpoints`: (folder, path as recorded, training step) each."""
    if not checkpoints:
        raise WeightgenError("an oracle needs at least one checkpoint")
    t0 = time.perf_counter()
    base_test, _ = slot.score(None, sets.test_source, sets.test_target, embedder)
    base_eval = base_test if sets.eval_is_full else slot.score(None, sets.eval_source, sets.eval_target, embedder)[0]
    rows, embeddings = [], []
    for folder, path, step in checkpoints:
        state_dict, _ = read_adapter(folder)
        val, _ = slot.score(state_dict, sets.val_source, sets.val_target, embedder)
        test, emb = slot.score(state_dict, sets.test_source, sets.test_target, embedder)
        ev = test if sets.eval_is_full else slot.score(state_dict, sets.eval_source, sets.eval_target, embedder)[0]
        rows.append({"path": path, "step": step, "val": _pick(val), "test": test, "eval": _pick(ev)})
        embeddings.append(emb[0])
    # The lowest validation score per metric; a tie goes to the later (longer trained) checkpoint.
    chosen = {m: min(range(len(rows)), key=lambda i: (rows[i]["val"][m], -i)) for m in TARGET_METRICS}
    by_l1 = rows[chosen["l1"]]
    test = {"l1": by_l1["test"]["l1"], "psnr": by_l1["test"]["psnr"], "ssim": by_l1["test"]["ssim"],
            "style": rows[chosen["style"]]["test"]["style"]}
    ev = {m: rows[chosen[m]]["eval"][m] for m in TARGET_METRICS}
    test_best = {m: min(range(len(rows)), key=lambda i: (rows[i]["test"][m], -i)) for m in TARGET_METRICS}
    targets = {}
    for name, t in TARGETS.items():
        targets[name] = {"metric": t.metric, "kind": t.kind,
                         "value": t.value(base_eval[t.metric], ev[t.metric], gain_fraction),
                         "test_value": t.value(base_test[t.metric], test[t.metric], gain_fraction),
                         "room": ev[t.metric] < base_eval[t.metric]}
    return {"source": source, "checkpoints": rows,
            "chosen": {m: {"path": rows[i]["path"], "step": rows[i]["step"], "index": i,
                           "test_best": i == test_best[m]} for m, i in chosen.items()},
            "test": test, "eval": ev, "base": {"test": base_test, "eval": _pick(base_eval)}, "targets": targets,
            "eval_pairs": len(sets.eval_source), "test_pairs": len(sets.test_source),
            "val_crops": len(sets.val_source), "style_embeddings": rounded_embeddings(embeddings[chosen["style"]]),
            "seconds": round(time.perf_counter() - t0, 3)}
