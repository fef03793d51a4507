"""Judging the weight generator by its GAN: the validation hook, the guidance pick, and the two in one run.

The diffusion loss says little about the GAN a generated LoRA makes, so training reports the
test-pair L1/PSNR of generated weights next to the base's. `train_validate_pick` is the one
train -> validate -> guidance-pick sequence that both `weightgen train` and the pipeline's
generator stage run.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from accelerate import PartialState

from gan.io import read_json, write_json
from weightgen.chunks.dataset import read_chunks_metadata, zoo_checkpoints
from weightgen.chunks.evaluate import AdapterEvaluator
from weightgen.errors import USER_ERRORS, WeightgenError
from weightgen.generator.config import GeneratorTrainConfig
from weightgen.generator.pipeline import GENERATOR_FILE, WeightGenPipeline
from weightgen.generator.training import train_generator, validation_concepts
from weightgen.text_encoders import TextEncoder


def validation_fn(evaluator: AdapterEvaluator, concepts: list[str]):
    """A `weightgen train` validation callback: generate the concepts' adapters, report mean test quality.

    Reports the base's L1 next to the generated one, so a log line says whether the generator's
    weights help at all.
    """
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
    keeps out (`val_concepts`, as `validation_concepts` picks them), or else on the zoo's held-out
    concepts (watched, never tuned on). `zoo` defaults to the one the chunks were cut from.
    """
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


def train_validate_pick(
    chunks_dir: str | Path,
    out_dir: str | Path,
    config: GeneratorTrainConfig,
    *,
    zoo: str | Path | None = None,
    validate: bool | None = None,
    validate_concepts: int = 8,
    guidance_sweep: Sequence[float] = (),
    resume: bool = False,
    progress: bool = True,
    text_encoder: TextEncoder | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train the generator, validated by its GAN, then pick its default guidance scale; returns its folder.

    validate: True requires the zoo's base and pairs (an error names what is missing), None uses
    them when found (a line says why not otherwise), False or validate_concepts=0 skips it.
    guidance_sweep: scales tried on the run's validation concepts after training (needs
    text_dropout > 0 and val_concepts >= 1: an unconditional mode and concepts kept out).
    """
    if guidance_sweep and (config.text_dropout <= 0 or config.val_concepts < 1):
        raise WeightgenError("--guidance-sweep needs --text-dropout > 0 (an unconditional model) and --val-concepts >= 1 "
                             "(in a pipeline config: [generator] guidance_sweep, text_dropout, val_concepts)")
    validate_fn = None
    if validate is not False and validate_concepts > 0:
        try:
            validate_fn = chunks_validation(chunks_dir, zoo, validate_concepts, config.val_concepts, config.seed)
        except USER_ERRORS as e:
            if validate:
                raise WeightgenError(f"{e} (pass --zoo DIR or --no-validate)") from None
            log(f"no GAN validation: {e}")
    generator_dir = train_generator(chunks_dir, out_dir, config, resume=resume, progress=progress,
                                    validate=validate_fn, text_encoder=text_encoder)
    if guidance_sweep and PartialState().is_main_process:
        pick_guidance(generator_dir, zoo or read_chunks_metadata(chunks_dir)["zoo"], list(guidance_sweep), log=log)
    return generator_dir
