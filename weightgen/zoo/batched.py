"""The zoo's batched path: several concepts' LoRAs per pass on one base (gan.multi_trainer), each saved as it ends.

Used when `ZooConfig.concepts_per_pass` > 1 or a convergence rule is set. A rank's concepts go through
`concepts_per_pass` slots; when a concept's run ends its slot takes the next one, and the finished
concept is written exactly as `build.train_concept` writes one: <zoo>/<id>/ckpt-<k>/ peft adapters
with the same sidecar (gan.lora_training.adapter_checkpoints) and entry.json, assembled in a temporary
folder and renamed into place. A kill loses only the concepts still in their slots.

The entry gains "concepts_per_pass" and, with a convergence rule, "convergence": the step it
converged at, where its run ended and the validation L1 of each check. Its "seconds" and the
history's are the concept's share of the pass (a step of C slots counts 1/C to each).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gan.convergence import ConvergenceSchedule, FixedSchedule
from gan.data import PairedData
from gan.io import atomic_dir, write_json
from gan.lora import add_lora, count_lora_params
from gan.lora_training import adapter_checkpoints
from gan.multi_trainer import MultiLoraTrainer, Schedule, SlotJob, SlotResult
from weightgen.zoo.config import ZooConfig
from weightgen.zoo.inputs import BaseModels
from weightgen.zoo.plan import ZooConcept
from weightgen.zoo.store import ENTRY, adapter_meta, concept_entry, raise_if_disk_full

RecordCallback = Callable[[int, dict], None]  # (step, record) after each evaluation of a concept


def schedule_of(config: ZooConfig) -> Schedule:
    """A fresh schedule for one concept: the fixed `max_steps` or the convergence rule's."""
    if config.convergence is None:
        return FixedSchedule(config.train.max_steps, config.train.checkpoint_steps)
    return ConvergenceSchedule(config.convergence, config.train.max_steps, config.k, config.checkpoint_window)


def train_batched(concepts: Sequence[ZooConcept], base: BaseModels, config: ZooConfig,
                  callback: Callable[[ZooConcept], RecordCallback] | None = None,
                  rank: int = 0) -> Iterator[tuple[ZooConcept, dict]]:
    """Train `concepts` `config.concepts_per_pass` at a time; yields (concept, entry) as each is complete on disk."""
    if not concepts:
        return
    by_id = {c.id: c for c in concepts}
    on_record = None
    if callback is not None:
        callbacks = {c.id: callback(c) for c in concepts}

        def on_record(cid: str, step: int, record: dict) -> None:
            callbacks[cid](step, record)

    template = add_lora(copy.deepcopy(base.generator), config.lora)  # the shared init, and the model adapters save from
    trainer = MultiLoraTrainer(template, base.discriminator, config.train, min(config.concepts_per_pass, len(concepts)),
                               val_crops=config.convergence.val_crops if config.convergence is not None else 0,
                               callback=on_record)
    jobs = (SlotJob(c.id, PairedData.load(config.pairs, [c.id])) for c in concepts)  # each read when a slot frees
    for result in trainer.run(jobs, lambda: schedule_of(config)):
        concept = by_id[result.job.name]
        yield concept, _write_concept(concept, result, trainer, template, config, rank)


def _write_concept(concept: ZooConcept, result: SlotResult, trainer: MultiLoraTrainer, template, config: ZooConfig,
                   rank: int) -> dict:
    zoo, t0 = Path(config.out), time.perf_counter()
    try:
        with atomic_dir(zoo / concept.id, overwrite=True) as tmp:
            save = adapter_checkpoints(tmp, adapter_meta(concept, config.train.seed, config.lora.init_seed))
            for ck in result.checkpoints:
                save(ck.step, trainer.generator.export(ck.lora, template), ck.record)
            if len(result.checkpoints) != config.k:
                raise RuntimeError(f"expected {config.k} checkpoints of {concept.id}, the trainer kept "
                                   f"{[ck.step for ck in result.checkpoints]}")
            extra: dict = {"concepts_per_pass": config.concepts_per_pass}
            if config.convergence is not None:
                extra["convergence"] = {"converged_step": result.converged_step, "end_step": result.history[-1]["step"],
                                        "checks": [[step, round(value, 6)] for step, value in result.checks]}
            entry = concept_entry(zoo, tmp, concept, config.k, rank, result.seconds + time.perf_counter() - t0,
                                  count_lora_params(template), result.history, extra)
            write_json(tmp / ENTRY, entry)  # last: its presence means the concept is complete
    except OSError as e:
        raise_if_disk_full(e, f"zoo concept {concept.id} into {zoo}", "its temporary folder was removed")
        raise
    return entry
