"""The pipeline's stages, one class each, and REGISTRY, the stages by name in pipeline order.

Each stage is a call into that stage's own API (nothing is reimplemented here):
  prompts    the shipped prompt set, a prompt-set file, or one built by LLMs (prompts.build)
  base       E2GAN's base GAN on k-means representative training concepts (weightgen.zoo.build_base)
  zoo        one LoRA per concept, K late checkpoints each (weightgen.zoo.build_zoo)
  chunks     the zoo's train split cut into equal blocks (weightgen.chunks.build_chunk_dataset)
  generator  the weight generator (weightgen.generator.validation.train_validate_pick, always resumed)
  ship       base + generator + zoo reference copied into [ship] target (off while target is "")

A stage knows everything the runner asks of it: the stages it reads (`inputs`), the config
sections its result depends on (`sections`, recorded before it runs), its output, the stamp its
readers record, whether that output is done, and how to build it. The runner only walks REGISTRY.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape

from gan.io import atomic_dir, read_json
from prompts import DEFAULT_PROMPT_SET, load_prompt_set
from prompts.build import build_prompt_set
from prompts.llm import make_backend
from weightgen.chunks.dataset import CHUNKS_FILE, build_chunk_dataset
from weightgen.errors import WeightgenError
from weightgen.finetune.starts import ZooReference
from weightgen.generator.pipeline import WeightGenPipeline
from weightgen.generator.validation import train_validate_pick
from weightgen.pipeline.records import config_record, diff, file_digest, folder_digest
from weightgen.pipeline.workspace import Workspace
from weightgen.zoo.base import build_base
from weightgen.zoo.build import build_zoo
from weightgen.zoo.plan import ZooConcept, base_concepts, plan_from_prompt_set

STATES = ("done", "partial", "todo", "changed", "off")


@dataclass
class StageStatus:
    """One row of the plan: where a stage stands and why."""

    stage: str
    state: str  # one of STATES
    output: Path | None  # the stage's output (folder or file)
    detail: str = ""  # progress or the reason for "changed"
    adopt: bool = False  # an output without a record, taken as built with this config (--adopt)


class Stage:
    """One stage bound to a workspace; `stages` is every bound stage by name, for reading upstream outputs."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()  # stages whose outputs this one reads (all before it in STAGES)
    sections: ClassVar[tuple[str, ...]] = ()  # config sections (dotted) its output depends on
    folder: ClassVar[str] = ""  # its output, under work
    sharded: ClassVar[bool] = False  # runs on every rank of a launcher, each rank doing its share

    def __init__(self, ws: Workspace, stages: Mapping[str, Stage]):
        self.ws, self.stages = ws, stages

    def output(self) -> Path:
        return self.ws.work / self.folder

    def product(self) -> Path:
        """What the stage makes for its users (its output, unless that also holds working state)."""
        return self.output()

    def blocker(self) -> str:
        """Why the stage cannot run with this config ("" when it can); a blocked stage is left out by default."""
        return ""

    def stamp(self) -> str | None:
        """The identity of this stage's output, recorded by the stages reading it."""
        raise ValueError(f"no stamp for stage {self.name!r}")

    def record(self) -> dict[str, Any]:
        """What the output depends on: the recorded config keys (flattened) and the inputs' stamps."""
        record = config_record(self.ws.config, self.sections)
        for up in self.inputs:
            record[f"input.{up}"] = self.stages[up].stamp()
        return record

    def output_state(self) -> tuple[str, str]:
        """(done | partial | todo, detail) from the stage's own output alone."""
        raise NotImplementedError

    def status(self, done: Mapping[str, StageStatus], recorded: dict, adopt: bool) -> StageStatus:
        """Where the stage stands, given its upstream stages' statuses and the state file's records."""
        out = self.output()
        state, detail = self.output_state()
        if state == "todo":
            return StageStatus(self.name, "todo", out, detail)
        waiting = [up for up in self.inputs if done[up].state != "done"]
        if waiting:  # its input will be rebuilt under it
            up = waiting[0]
            return StageStatus(self.name, "changed", out, f"its input {up} is {done[up].state} and would be rebuilt "
                                                          "under it")
        if self.name not in recorded:
            if adopt:
                return StageStatus(self.name, state, out, detail + " (adopted)", adopt=True)
            return StageStatus(self.name, "changed", out, f"{out} was not built by this pipeline (no record in "
                                                          f"{self.ws.state.path}); pass --adopt to take it as "
                                                          "built with this config")
        changes = diff(recorded[self.name].get("config", {}), self.record())
        if changes:
            more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
            return StageStatus(self.name, "changed", out, "; ".join(changes[:3]) + more)
        return StageStatus(self.name, state, out, detail)

    def run(self, progress: bool, overwrite: bool) -> None:
        """Build (or resume) the output; `overwrite` rebuilds the pairs made with other settings."""
        raise NotImplementedError


class Prompts(Stage):
    name = "prompts"
    sections = ("prompts",)
    folder = "prompts.json"

    def __init__(self, ws: Workspace, stages: Mapping[str, Stage]):
        super().__init__(ws, stages)
        self._loaded = None

    def source(self) -> Path:
        """The prompt set the base and zoo read: the built one, a file, or the shipped set."""
        cfg = self.ws.config.prompts
        if cfg.build:
            return self.output()
        return (self.ws.root / cfg.path).resolve() if cfg.path else DEFAULT_PROMPT_SET

    def prompt_set(self):
        if self._loaded is None:
            self._loaded = load_prompt_set(self.source())
        return self._loaded

    def stamp(self) -> str | None:
        return file_digest(self.source())

    def output_state(self) -> tuple[str, str]:
        cfg = self.ws.config.prompts
        return ("done", f"built with {cfg.generator} + {cfg.augmenter}") if self.output().is_file() else ("todo", "")

    def status(self, done: Mapping[str, StageStatus], recorded: dict, adopt: bool) -> StageStatus:
        if self.ws.config.prompts.build:
            return super().status(done, recorded, adopt)
        what = "prompt set file" if self.ws.config.prompts.path else "shipped prompt set"
        return StageStatus(self.name, "done", self.source(), what)

    def run(self, progress: bool, overwrite: bool) -> None:
        cfg = self.ws.config.prompts
        generator = make_backend(cfg.generator, cfg.llm)
        augmenter = generator if cfg.augmenter == cfg.generator else make_backend(cfg.augmenter, cfg.llm)
        command = f"weightgen pipeline {self.ws.source or 'CONFIG'} --stages prompts"
        prompt_set = build_prompt_set(cfg.recipe, generator, augmenter, self.ws.encoder(), command=command)
        prompt_set.save(self.output())
        stats = prompt_set.stats()
        self.ws.console.print(f"prompt set: {stats['concepts']} concepts ({stats['heldout']} held out)")


class Base(Stage):
    name = "base"
    inputs = ("prompts",)
    sections = ("prompts.encoder", "pairs", "base")
    folder = "base"

    def stamp(self) -> str | None:
        info = self.output() / "weightgen.json"
        return read_json(info).get("weights_hash") if info.is_file() else None

    def output_state(self) -> tuple[str, str]:
        info = self.output() / "weightgen.json"
        if not info.is_file():
            return "todo", ""
        return "done", f"{len(read_json(info).get('concepts', []))} concepts"

    def run(self, progress: bool, overwrite: bool) -> None:
        cfg, ws = self.ws.config.base, self.ws
        texts = list(cfg.concepts) or base_concepts(self.stages["prompts"].prompt_set(), cfg.n_concepts,
                                                    ws.encoder(), cfg.select_seed)
        ws.console.print(escape(f"base concepts ({len(texts)}): " + "; ".join(texts)))
        ws.build_pairs(texts, overwrite, progress)
        config = cfg.base_config(self.output(), ws.pairs_dir, ws.pairs_settings(overwrite))
        history = build_base(config, texts, progress=progress)
        first, last = history[0]["metrics"], history[-1]["metrics"]
        ws.console.print(f"base: test L1 {first['l1']:.4f} -> {last['l1']:.4f} after {history[-1]['step']} steps")


class Zoo(Stage):
    name = "zoo"
    inputs = ("prompts", "base")
    sections = ("prompts.encoder", "pairs", "base", "zoo")
    folder = "zoo"
    sharded = True

    def stamp(self) -> str | None:
        return file_digest(self.output() / "manifest.json")

    def output_state(self) -> tuple[str, str]:
        out = self.output()
        if (out / "manifest.json").is_file():
            m = read_json(out / "manifest.json")
            detail = f"{len(m.get('concepts', {}))}/{m.get('n_planned', '?')} concepts"
            return ("done" if m.get("complete") else "partial"), detail
        return ("partial", "planned") if (out / "plan.json").is_file() else ("todo", "")

    def plan(self, overwrite: bool, progress: bool) -> list[ZooConcept]:
        """The zoo's concepts (explicit, or k-means picks) with their pairs built; the main rank calls it."""
        cfg = self.ws.config.zoo
        if cfg.train_concepts or cfg.heldout_concepts:
            plan = [ZooConcept(t, "train") for t in cfg.train_concepts] + \
                   [ZooConcept(t, "heldout") for t in cfg.heldout_concepts]
        else:
            plan = plan_from_prompt_set(self.stages["prompts"].prompt_set(), cfg.n_train or None,
                                        cfg.n_heldout or None, self.ws.encoder(), cfg.select_seed)
        self.ws.build_pairs([c.text for c in plan], overwrite, progress)
        return plan

    def run(self, progress: bool, overwrite: bool) -> None:
        config = self.ws.config.zoo.zoo_config(self.output(), self.stages["base"].output(), self.ws.pairs_dir,
                                               self.ws.pairs_settings(overwrite))
        report = build_zoo(config, lambda: self.plan(overwrite, progress), progress=progress)
        if report.manifest is not None:
            m = report.manifest
            self.ws.console.print(f"zoo: {len(m['concepts'])}/{m['n_planned']} concepts complete "
                                  f"({len(report.built)} built now, {len(report.skipped)} already done, "
                                  f"{len(report.rebuilt)} rebuilt)")


class Chunks(Stage):
    name = "chunks"
    inputs = ("zoo",)
    sections = ("prompts.encoder", "pairs", "base", "zoo", "chunks")
    folder = "chunks"

    def stamp(self) -> str | None:
        return file_digest(self.output() / "layout.json")

    def output_state(self) -> tuple[str, str]:
        out = self.output()
        return ("done", "") if (out / CHUNKS_FILE).is_file() and (out / "layout.json").is_file() else ("todo", "")

    def run(self, progress: bool, overwrite: bool) -> None:
        build_chunk_dataset(self.stages["zoo"].output(), self.output(),
                            block_size=self.ws.config.chunks.block_size, progress=progress)


class Generator(Stage):
    name = "generator"
    inputs = ("chunks",)
    sections = ("prompts.encoder", "pairs", "base", "zoo", "chunks", "generator")
    folder = "generator-run"

    def product(self) -> Path:
        """The generator folder itself; the run's output around it also holds the training state."""
        return self.output() / "generator"

    def stamp(self) -> str | None:
        return folder_digest(self.product())

    def output_state(self) -> tuple[str, str]:
        cfg, state_file = self.ws.config.generator, self.output() / "training" / "state.json"
        if not state_file.is_file():
            return "todo", f"step 0/{cfg.steps}"
        step = int(read_json(state_file).get("step", 0))
        if step >= cfg.steps and cfg.guidance_sweep:
            info_file = self.product() / "generator.json"
            if not info_file.is_file() or "guidance_sweep" not in read_json(info_file):
                return "partial", f"step {step}/{cfg.steps}, guidance not picked yet"
        return ("done" if step >= cfg.steps else "partial"), f"step {step}/{cfg.steps}"

    def run(self, progress: bool, overwrite: bool) -> None:
        cfg, ws = self.ws.config.generator, self.ws
        train_validate_pick(self.stages["chunks"].output(), self.output(), cfg.train_config(),
                            zoo=self.stages["zoo"].output(), validate_concepts=cfg.validate_concepts,
                            guidance_sweep=cfg.guidance_sweep, resume=True, progress=progress,
                            text_encoder=ws.encoder(cfg.text_encoder, cfg.text_encoder_path),
                            log=lambda line: ws.console.print(escape(line)))


class Ship(Stage):
    """A copy, never "changed": done while the target holds what work holds, redone whenever it does not."""

    name = "ship"
    inputs = ("base", "zoo", "generator")
    sections = ("ship",)

    def output(self) -> Path:
        return (self.ws.root / self.ws.config.ship.target).resolve()

    def blocker(self) -> str:
        return "" if self.ws.config.ship.target else "stage ship needs a target folder: set [ship] target in the config"

    def status(self, done: Mapping[str, StageStatus], recorded: dict, adopt: bool) -> StageStatus:
        if not self.ws.config.ship.target:
            return StageStatus(self.name, "off", None, "no [ship] target")
        target = self.output()
        if done["generator"].state != "done":
            return StageStatus(self.name, "todo", target, "waits for the generator")
        same = (recorded.get(self.name, {}).get("config") == self.record()
                and (target / "zoo_reference").is_dir()
                and folder_digest(target / "base") == folder_digest(self.stages["base"].output())
                and folder_digest(target / "generator") == folder_digest(self.stages["generator"].product()))
        return StageStatus(self.name, "done" if same else "todo", target, "" if same else "target differs from work")

    def run(self, progress: bool, overwrite: bool) -> None:
        ws, gen, target = self.ws, self.ws.config.generator, self.output()
        base, generator = self.stages["base"].output(), self.stages["generator"].product()
        pipe = WeightGenPipeline.from_pretrained(generator, text_encoder=ws.encoder(gen.text_encoder,
                                                                                    gen.text_encoder_path))
        pipe.check_compatible(base=read_json(base / "weightgen.json"))
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".ship.", dir=target) as staging:
            reference = ZooReference.from_zoo(self.stages["zoo"].output(), layout=pipe.layout).save(
                Path(staging) / "ref")
            sources = {"base": base, "generator": generator, "zoo_reference": reference}
            mb = {name: sum(p.stat().st_size for p in src.rglob("*") if p.is_file()) / 2**20
                  for name, src in sources.items()}
            sizes = ", ".join(f"{k} {v:.1f} MB" for k, v in mb.items())
            if sum(mb.values()) > ws.config.ship.max_mb:
                raise WeightgenError(f"the shipped files would be {sum(mb.values()):.1f} MB, over [ship] max_mb "
                                     f"{ws.config.ship.max_mb:g} ({sizes})")
            for name, src in sources.items():  # each folder replaced atomically; others in target are left alone
                with atomic_dir(target / name, overwrite=True) as tmp:
                    shutil.copytree(src, tmp, dirs_exist_ok=True)
        ws.console.print(escape(f"shipped to {ws.show(target)}: {sizes}"))


REGISTRY: dict[str, type[Stage]] = {cls.name: cls for cls in (Prompts, Base, Zoo, Chunks, Generator, Ship)}
STAGES = tuple(REGISTRY)  # the names, in pipeline order
PRODUCT = "generator"  # the stage whose product a finished run names


def bind(ws: Workspace) -> dict[str, Stage]:
    """Every registered stage bound to `ws`, in pipeline order; each finds its upstream stages in the result."""
    bound: dict[str, Stage] = {}
    for name, cls in REGISTRY.items():
        bound[name] = cls(ws, bound)
    return bound
