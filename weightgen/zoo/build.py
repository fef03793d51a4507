"""Build the LoRA zoo: one LoRA per concept on the frozen base, K late checkpoints each, resumable and sharded.

    report = build_zoo(ZooConfig(out="zoo", base="base", pairs="pairs"), plan_from_prompt_set(load_prompt_set()))

The run, in order (see store.py for the folder layout and ranks.py for the multi-process side):
  1. main process: check the base, build missing pairs, drop stale temporaries and damaged
     concepts (each named in an `error:` line), write plan.json with the to-do list and a
     manifest of what is already complete;
  2. barrier; every rank trains to-do concepts rank, rank + world, ... single-process, one at a
     time (gan.trainer) or, with `concepts_per_pass` > 1 or a convergence rule, several per batched
     pass (weightgen.zoo.batched); each concept is written to a temporary folder and renamed into
     place with its entry.json;
  3. barrier; the main process rebuilds manifest.json from the entries.
Kill it at any point and rerun the same command: complete concepts are skipped, nothing is
duplicated, and nothing half-written is ever listed.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from gan.data import PairedData
from gan.io import atomic_dir, read_json, write_json
from gan.lora import count_lora_params
from gan.lora_training import adapter_checkpoints, train_lora
from weightgen.errors import WeightgenError
from weightgen.zoo.batched import train_batched
from weightgen.zoo.config import ZooConfig
from weightgen.zoo.inputs import BaseModels, ensure_pairs, pairs_settings_of
from weightgen.zoo.plan import ZooConcept, check_plan
from weightgen.zoo.ranks import Ranks, StoreBarrier, rank_local, torch_threads
from weightgen.zoo.store import (
    ENTRY,
    PLAN,
    adapter_meta,
    check_entry,
    concept_entry,
    manifest_from_entries,
    raise_if_disk_full,
    read_plan,
    remove_concept,
    remove_stale_temporaries,
    settings_mismatch,
    write_manifest,
    write_plan,
)

Concepts = Sequence[ZooConcept] | Callable[[], Sequence[ZooConcept]]
ConceptHook = Callable[[ZooConcept, dict], None]  # after a concept is complete on disk: (concept, entry)


@dataclass
class ZooReport:
    zoo: Path
    built: list[str] = field(default_factory=list)  # concept ids trained by this process
    skipped: list[str] = field(default_factory=list)  # complete before this run (main process)
    rebuilt: list[str] = field(default_factory=list)  # found damaged or incomplete, removed and rebuilt (main process)
    manifest: dict | None = None  # the final manifest (main process)
    seconds: float = 0.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_zoo(config: ZooConfig, concepts: Concepts, progress: bool = True, on_concept: ConceptHook | None = None,
              log: Callable[[str], None] = _log) -> ZooReport:
    """Build (or resume) the zoo of `concepts` into `config.out`; returns what this process did.

    `concepts` is a list of ZooConcept or a function returning one, called on the main process
    only (k-means selection then runs once; the other ranks read the plan it wrote).
    """
    t0 = time.perf_counter()
    ranks = Ranks.from_env()
    barrier = StoreBarrier(ranks, config.barrier_timeout)
    zoo = Path(config.out)
    report = ZooReport(zoo)
    with rank_local(), torch_threads(config.threads if _on_cpu(config) else None):
        _pick_device(ranks, config)
        base = BaseModels.load(config.base)
        if ranks.is_main:
            _prepare(config, concepts, base, report, log)
        barrier("plan")
        _, plan, todo = read_plan(zoo)
        by_id = {c.id: c for c in plan}
        mine = [by_id[cid] for cid in ranks.shard(todo)]
        with _ZooProgress(len(plan), zoo, plan, config.train.max_steps, progress and ranks.is_main) as bar:
            if config.batched:
                done = train_batched(mine, base, config, bar.callback, ranks.rank)
            else:  # one concept at a time, each on its own Pix2PixTrainer
                done = ((c, train_concept(c, base, config, bar.callback(c), ranks.rank)) for c in mine)
            for concept, entry in done:
                report.built.append(concept.id)
                line = (f"{concept.split} concept {concept.text!r} done on rank {ranks.rank}: test L1 "
                        f"{entry['final_metrics']['l1']:.4f} (base {entry['base_metrics']['l1']:.4f}) in "
                        f"{entry['seconds']:.0f} s, {entry['history'][-1]['step']} steps")
                if bar.enabled:
                    bar.print(line)
                else:
                    log(line)
                if ranks.is_main:
                    _write_manifest(config, base, plan, zoo)  # keeps manifest.json current through a long run
                bar.refresh()
                if on_concept is not None:
                    on_concept(concept, entry)
        barrier("done")
        if ranks.is_main:
            report.manifest = _write_manifest(config, base, plan, zoo)
    report.seconds = time.perf_counter() - t0
    return report


def _on_cpu(config: ZooConfig) -> bool:
    return config.train.cpu or not torch.cuda.is_available()


def _pick_device(ranks: Ranks, config: ZooConfig) -> None:
    """One GPU per local rank (accelerate picks `cuda`, the current device, in single-process mode)."""
    if not _on_cpu(config) and torch.cuda.device_count() > 1:
        torch.cuda.set_device(ranks.local_rank % torch.cuda.device_count())


def _prepare(config: ZooConfig, concepts: Concepts, base: BaseModels, report: ZooReport,
             log: Callable[[str], None]) -> None:
    """Main process: plan, pairs, resume checks; writes plan.json and a manifest of what is complete."""
    zoo = Path(config.out)
    if zoo.exists() and not zoo.is_dir():
        raise WeightgenError(f"zoo path exists and is not a folder: {zoo}")
    plan = check_plan(concepts() if callable(concepts) else concepts)
    plan = [c for c in plan if c.split in config.splits]
    if not plan:
        raise WeightgenError(f"no concepts of the split(s) {list(config.splits)} to build")
    pairs = ensure_pairs(config.pairs, [c.text for c in plan], config.pairs_settings, config.build_pairs)
    size = pairs.get("image_size")
    if size is not None and int(size) != base.image_size:
        raise WeightgenError(f"the pairs in {config.pairs} are {size}x{size}, the base {config.base} was trained at "
                             f"{base.image_size}x{base.image_size}")
    settings = {**config.settings(), "base_fingerprint": base.fingerprint, "base_weights_hash": base.weights_hash,
                "pairs": pairs_settings_of(pairs)}
    zoo.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temporaries(zoo):
        log(f"removed an unfinished temporary from a killed run: {stale.name}")
    _check_settings(zoo, settings, config.overwrite, log)

    todo = []
    for c in plan:
        check = check_entry(zoo, c, config.k)
        if check.ok:
            report.skipped.append(c.id)
            continue
        if check.problem is not None:
            log(f"error: zoo concept {c.id}: {check.problem}; removed, it will be rebuilt")
            remove_concept(zoo, c.id)
            report.rebuilt.append(c.id)
        todo.append(c.id)
    write_plan(zoo, settings, plan, todo)
    _write_manifest(config, base, plan, zoo)
    log(f"zoo {zoo}: {len(plan)} concepts planned, {len(report.skipped)} complete, {len(todo)} to build")


def _check_settings(zoo: Path, settings: dict, overwrite: bool, log: Callable[[str], None]) -> None:
    """Refuse to mix adapters of two recipes or bases in one zoo; --overwrite removes the old concepts."""
    if not (zoo / PLAN).exists():
        return
    old = read_json(zoo / PLAN).get("settings", {})
    diffs = settings_mismatch(old, settings)
    if not diffs:
        return
    ours = [p for p in zoo.iterdir() if p.is_dir() and (p / ENTRY).is_file()]
    if ours and not overwrite:
        raise WeightgenError(f"{zoo} holds a zoo built with other settings: {'; '.join(diffs[:4])}"
                             f"{' ...' if len(diffs) > 4 else ''}; use another --out or pass --overwrite to rebuild it")
    for p in ours:
        remove_concept(zoo, p.name)
    if ours:
        log(f"--overwrite: removed {len(ours)} concepts built with other settings")


def _write_manifest(config: ZooConfig, base: BaseModels, plan: Sequence[ZooConcept], zoo: Path) -> dict:
    entries = {}
    for c in plan:
        check = check_entry(zoo, c, config.k)
        if check.ok:
            entries[c.id] = check.entry
    manifest = manifest_from_entries(
        str(base.path), base.fingerprint, base.weights_hash, config.lora.to_dict(),
        {"pairs": str(Path(config.pairs).resolve()), "k": config.k, "train": config.train.to_dict()}, plan, entries)
    try:
        write_manifest(zoo, manifest)
    except OSError as e:
        raise_if_disk_full(e, f"{zoo}/manifest.json", "the previous manifest was kept")
        raise
    return manifest


def train_concept(concept: ZooConcept, base: BaseModels, config: ZooConfig, callback=None, rank: int = 0) -> dict:
    """Train one concept's LoRA and write <zoo>/<id>/ (K adapters + entry.json) atomically; returns the entry."""
    zoo = Path(config.out)
    data = PairedData.load(config.pairs, [concept.id])
    generator, discriminator = copy.deepcopy(base.generator), copy.deepcopy(base.discriminator)
    meta = adapter_meta(concept, config.train.seed, config.lora.init_seed)
    t0 = time.perf_counter()
    try:
        with atomic_dir(zoo / concept.id, overwrite=True) as tmp:
            model, history = train_lora(generator, discriminator, data, config.lora, config.train, callback=callback,
                                        checkpoint_fn=adapter_checkpoints(tmp, meta), progress=False)
            saved = sorted(p.name for p in tmp.glob("ckpt-*"))
            if len(saved) != config.k:
                raise RuntimeError(f"expected {config.k} checkpoints of {concept.id}, the trainer saved {saved}")
            entry = concept_entry(zoo, tmp, concept, config.k, rank, time.perf_counter() - t0,
                                  count_lora_params(model), history)
            write_json(tmp / ENTRY, entry)  # last: its presence means the concept is complete
    except OSError as e:
        raise_if_disk_full(e, f"zoo concept {concept.id} into {zoo}", "its temporary folder was removed")
        raise
    return entry


class _ZooProgress:
    """A rich bar over all the zoo's concepts (done by any rank), with the current concept's step and test L1."""

    def __init__(self, total: int, zoo: Path, plan: Sequence[ZooConcept], max_steps: int, enabled: bool):
        self.total, self.zoo, self.plan, self.max_steps, self.enabled = total, zoo, plan, max_steps, enabled

    def __enter__(self) -> _ZooProgress:
        if self.enabled:
            self.progress = Progress(TextColumn("zoo"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.description}"))
            self.progress.start()
            self.task = self.progress.add_task("", total=self.total, completed=self._done())
        return self

    def _done(self) -> int:
        return sum((self.zoo / c.id / ENTRY).is_file() for c in self.plan)

    def callback(self, concept: ZooConcept):
        """The trainer's eval callback for `concept`: step and test L1 into the bar's text."""
        def update(step: int, record: dict) -> None:
            if self.enabled:
                text = f"{concept.text[:32]}  step {step}/{self.max_steps}  test L1 {record['metrics']['l1']:.4f}"
                self.progress.update(self.task, completed=self._done(), description=text)
        return update

    def refresh(self) -> None:
        if self.enabled:
            self.progress.update(self.task, completed=self._done())

    def print(self, line: str) -> None:
        self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()
