"""Reference fine-tunes: the target of a concept that has no zoo oracle (a concept of a --concepts-file).

A zero-init LoRA on the base, trained the way the zoo trains its oracles (the zoo's LoRA settings
and training recipe: learning rates, batch size, seed), for `steps` steps, keeping K late
checkpoints where the zoo keeps its own (scaled to the length). The bench then chooses
among them on validation crops exactly as for a zoo concept (weightgen.bench.targets).

    <out>/references/<concept_id>/ckpt-<k>/       peft adapter folders (+ weightgen.json: step, metrics)
    <out>/references/<concept_id>/settings.json   what the reference is made with (checked on reuse)
    <out>/references/<concept_id>/state/          the training state while it trains (gan.train_state)
    <out>/references/<concept_id>/reference.json  the finished record: checkpoints, history (written last)

Cached and resumable: a finished reference made with the same settings is reused; a killed one
resumes from its training state, saved every `state_every` training seconds, and reaches the same
weights as an uninterrupted run; one made with other settings is discarded and made again.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from gan.base import load_base
from gan.config import GanTrainConfig, LoraSettings
from gan.data import PairedData
from gan.io import read_json, write_json
from gan.lora import add_lora, save_adapter
from gan.trainer import EvalCallback, Pix2PixTrainer
from weightgen import __version__
from weightgen.errors import WeightgenError

REFERENCE_FORMAT = "weightgen-bench-reference"
SETTINGS, RECORD, STATE = "settings.json", "reference.json", "state"
STATE_EVERY = 60.0  # training seconds between saves of the training state


def reference_recipe(zoo_train: dict, steps: int | None, cpu: bool) -> GanTrainConfig:
    """The zoo's training recipe, `steps` long (None: as long as the zoo's), its K checkpoints where the zoo put
    its own, scaled to the length (the same steps when the length is the zoo's)."""
    zoo_steps, zoo_checkpoints = int(zoo_train["max_steps"]), list(zoo_train["checkpoint_steps"])
    steps = zoo_steps if steps is None else steps
    checkpoints = sorted({max(1, round(s * steps / zoo_steps)) for s in zoo_checkpoints})
    if len(checkpoints) < len(zoo_checkpoints):
        raise WeightgenError(f"a reference fine-tune of {steps} steps has no room for the zoo's "
                             f"{len(zoo_checkpoints)} checkpoints (the zoo's are at {zoo_checkpoints} of "
                             f"{zoo_steps}); raise reference_steps")
    recipe = {**zoo_train, "max_steps": steps, "max_seconds": None, "eval_every": 0, "cpu": cpu,
              "checkpoint_steps": checkpoints}
    return GanTrainConfig.from_dict(recipe)


def reference_settings(train: GanTrainConfig, lora: LoraSettings, base_meta: dict, pairs_sha256: str) -> dict:
    """What must match for a cached reference to be reused (anything here changes its weights)."""
    recipe = {k: v for k, v in train.to_dict().items() if k not in ("cpu", "eval_every")}
    return {"format": REFERENCE_FORMAT, "version": 1, "train": recipe, "lora": lora.to_dict(),
            "base_fingerprint": base_meta.get("fingerprint"), "base_weights_hash": base_meta.get("weights_hash"),
            "pairs_sha256": pairs_sha256}


def cached_reference(folder: Path, settings: dict) -> dict | None:
    """The finished reference in `folder` when it was made with `settings`, else None."""
    if not (folder / RECORD).is_file() or not (folder / SETTINGS).is_file():
        return None
    if read_json(folder / SETTINGS) != settings:
        return None
    record = read_json(folder / RECORD)
    if not all((folder / ck["path"]).is_dir() for ck in record.get("checkpoints", [])):
        return None
    return record


def make_reference(folder: str | Path, data: PairedData, base_dir: str | Path, lora: LoraSettings,
                   train: GanTrainConfig, settings: dict, state_every: float = STATE_EVERY,
                   callback: EvalCallback | None = None) -> dict:
    """The concept's reference fine-tune in `folder`: reused when cached, resumed when interrupted, else trained.

    Returns the record: {"checkpoints": [{"path": "ckpt-<k>", "step"}], "train_seconds", "history", ...}.
    """
    folder = Path(folder)
    settings = json.loads(json.dumps(settings))  # as read back from settings.json: tuples become lists
    cached = cached_reference(folder, settings)
    if cached is not None:
        return cached
    if folder.exists() and (not (folder / SETTINGS).is_file() or read_json(folder / SETTINGS) != settings):
        shutil.rmtree(folder)  # made with other settings (or never recorded them): start over
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / SETTINGS, settings)
    (folder / RECORD).unlink(missing_ok=True)
    steps = train.checkpoint_steps
    meta = {"concept": data.concepts[0].id, "concept_text": data.concepts[0].text, "seed": train.seed,
            "lora_init_seed": lora.init_seed, "reference": True}

    def save(step: int, model, record: dict) -> None:
        save_adapter(model, folder / f"ckpt-{steps.index(step)}", {**meta, "step": step, "metrics": record["metrics"]},
                     overwrite=True)

    t0 = time.perf_counter()
    generator, discriminator = load_base(base_dir)
    model = add_lora(generator, lora)  # peft's fresh init (zero B): the zoo's start for every concept
    trainer = Pix2PixTrainer(model, discriminator, data, train, callback=callback, checkpoint_fn=save, progress=False,
                             state_dir=str(folder / STATE), state_every=state_every)
    history = trainer.run_loop()
    checkpoints = [{"path": f"ckpt-{i}", "step": s} for i, s in enumerate(steps)]
    missing = [c["path"] for c in checkpoints if not (folder / c["path"]).is_dir()]
    if missing:
        raise WeightgenError(f"the reference fine-tune in {folder} lacks checkpoints {missing}")
    record = {"format": REFERENCE_FORMAT, "version": 1, "weightgen_version": __version__,
              "concept_id": data.concepts[0].id, "concept": data.concepts[0].text, "checkpoints": checkpoints,
              "steps": trainer.step, "train_seconds": history[-1]["seconds"],
              "seconds": round(time.perf_counter() - t0, 3), "resumed": trainer.resumed is not None,
              "history": history}
    write_json(folder / RECORD, record)  # last: its presence means the reference is complete
    shutil.rmtree(folder / STATE, ignore_errors=True)
    return record
