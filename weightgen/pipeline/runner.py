"""`weightgen pipeline CONFIG`: every stage from prompts to the trained generator, in one resumable command.

    pipe = Pipeline.from_file("configs/default.toml")
    pipe.inspect()                 # [StageStatus]: done / partial / todo / changed / off, per stage
    pipe.run()                     # runs what is not done, skips what is

Stages, in order; each is a call into that stage's own API (nothing is reimplemented here):
  prompts    the shipped prompt set, a prompt-set file, or one built by LLMs (prompts.build)
  base       E2GAN's base GAN on k-means representative training concepts (weightgen.zoo.build_base)
  zoo        one LoRA per concept, K late checkpoints each (weightgen.zoo.build_zoo)
  chunks     the zoo's train split cut into equal blocks (weightgen.chunks.build_chunk_dataset)
  generator  the weight generator (weightgen.generator.training.train_generator, always resumed)
  ship       base + generator + zoo reference copied into [ship] target (off while target is "")
The pairs are not a stage of their own: the base and zoo stages build exactly the concepts they
need into work/pairs (weightgen.pairs.build_pairs, resumable), sharing one loaded text encoder.

Every output lives in the config's `work` folder: work/pairs, work/base, work/zoo, work/chunks,
work/generator-run (the generator is work/generator-run/generator), work/prompts.json when built.
Relative paths in a config file resolve against the file's folder.

Resume. A stage is done when its own output says so: the base's weightgen.json, the zoo manifest's
"complete", the chunks file, the generator's training step reaching `steps`. A done stage is
skipped; an unfinished one resumes (pairs, zoo and generator resume inside their stage). Before a
stage runs, what it depends on is recorded in work/pipeline_state.json: its config section and
those upstream, plus the identity of its inputs (the prompt set's sha256, the base's weights hash,
the zoo manifest's and chunk layout's sha256). When that record no longer matches, the stage is
"changed" and the pipeline refuses to skip or resume it, naming the key, unless --overwrite-changed
rebuilds it (and, by the same check, every stage after it). Settings that do not change a stage's
result (threads, cpu, the generator's steps and checkpoint cadence, validation) are not recorded,
so raising `[generator] steps` simply trains on. Ship is a copy: it reruns whenever what it would
copy differs from the target.

Processes. The pipeline runs in one process. The zoo, by far the longest stage, shards over the
ranks of a launcher (each rank trains every N-th concept; see weightgen.zoo.ranks):
    weightgen pipeline CONFIG --stages prompts,base
    accelerate launch --multi_gpu --num_processes N -m weightgen pipeline CONFIG --stages zoo
    weightgen pipeline CONFIG
Under a launcher (WORLD_SIZE > 1) only `--stages zoo` runs; set `[zoo.train] cpu = true` for CPU ranks.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tomllib
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from gan.config import (
    BaseTrainConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from gan.io import atomic_dir, read_json, write_json
from prompts import DEFAULT_PROMPT_SET, load_prompt_set
from prompts.build import BuildConfig, build_prompt_set
from prompts.identity import concept_id
from prompts.llm import REGISTRY, LLMOptions, make_backend
from weightgen.chunks.dataset import CHUNKS_FILE, build_chunk_dataset
from weightgen.chunks.layout import validate_block_size
from weightgen.errors import USER_ERRORS, WeightgenError
from weightgen.finetune.starts import ZooReference
from weightgen.generator.config import RESUMABLE_CHANGES, GeneratorTrainConfig
from weightgen.generator.pipeline import WeightGenPipeline
from weightgen.generator.validation import train_validate_pick
from weightgen.pairs.build import build_pairs
from weightgen.pairs.config import PairsConfig
from weightgen.pairs.editors import load_editor
from weightgen.pairs.editors.procedural import ProceduralConfig
from weightgen.text_encoders import TEXT_ENCODERS, load_text_encoder
from weightgen.zoo.base import build_base
from weightgen.zoo.build import build_zoo
from weightgen.zoo.config import (
    BaseConfig,
    ZooConfig,
    default_base_train,
    default_zoo_train,
)
from weightgen.zoo.inputs import pairs_manifest
from weightgen.zoo.plan import ZooConcept, base_concepts, plan_from_prompt_set
from weightgen.zoo.ranks import Ranks
from weightgen.zoo.store import sha256_file

STAGES = ("prompts", "base", "zoo", "chunks", "generator", "ship")
STATES = ("done", "partial", "todo", "changed", "off")
STATE_FILE = "pipeline_state.json"
LOG_FILE = "pipeline_log.jsonl"
STATE_FORMAT = "weightgen-pipeline-state"
# Each stage's output folder (or file) under `work`; ship writes to [ship] target instead.
OUTPUTS = {"prompts": "prompts.json", "base": "base", "zoo": "zoo", "chunks": "chunks", "generator": "generator-run"}
PAIRS_DIR = "pairs"
SHIPPED = ("base", "generator", "zoo_reference")


# ---- the config: one dataclass per stage, the stage's own configs nested inside ---------------------------------

@dataclass
class PromptsStage:
    """Where concepts come from; the base and the zoo pick theirs from this prompt set."""

    path: str = ""  # prompt-set file; "" = the shipped prompts/data/concepts-v1.json
    build: bool = False  # build a prompt set into work/prompts.json with the LLMs below instead of reading `path`
    generator: str = "smollm2"  # LLM proposing concepts (prompts.llm.REGISTRY) when building
    augmenter: str = "smollm2"  # LLM writing paraphrases when building
    encoder: str = "minilm"  # text encoder of the k-means concept picks (and of the build's dedupe)
    llm: LLMOptions = field(default_factory=LLMOptions)
    recipe: BuildConfig = field(default_factory=BuildConfig)

    def __post_init__(self) -> None:
        for name in ("generator", "augmenter"):
            if getattr(self, name) not in REGISTRY:
                raise WeightgenError(f"`{name}` should be one of {sorted(REGISTRY)}, got {getattr(self, name)!r}")
        if self.encoder not in TEXT_ENCODERS:
            raise WeightgenError(f"`encoder` should be one of {sorted(TEXT_ENCODERS)}, got {self.encoder!r}")


@dataclass
class PairsStage:
    """How the (source, target) pairs are made; the base and zoo stages build what they need into work/pairs."""

    editor: str = "procedural"  # weightgen.pairs.editors.REGISTRY key
    image_size: int = 64  # pixels per side; the base GAN is trained at this size
    n_train: int = 64  # train pairs per concept
    n_test: int = 16  # test pairs per concept
    seed: int = 0
    sources: str = ""  # folder of photos; "" = the bundled photos
    test_fraction: float = 0.25  # share of photos held out for test pairs
    editor_options: dict = field(default_factory=dict)  # passed to the editor's constructor

    def __post_init__(self) -> None:
        self.pairs_config(Path("pairs"), Path("."))  # PairsConfig validates

    def pairs_config(self, out: Path, root: Path, overwrite: bool = False):
        return PairsConfig(out=str(out), overwrite=overwrite, **self.settings(root))

    def settings(self, root: Path) -> dict:
        """PairsConfig fields (the zoo's `pairs_settings`), with `sources` resolved against `root`."""
        settings = asdict(self)
        settings["sources"] = str((root / self.sources).resolve()) if self.sources else None
        return settings


def _check_texts(name: str, texts: list) -> None:
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise WeightgenError(f"`{name}` should be a list of non-empty concept texts, got {texts!r}")


@dataclass
class BaseStage:
    """The base GAN (weightgen.zoo.BaseConfig): n_concepts k-means representatives, or `concepts`."""

    n_concepts: int = 8  # representative single training concepts, one per k-means cluster
    concepts: list[str] = field(default_factory=list)  # train on exactly these instead of the k-means pick
    select_seed: int = 0  # k-means seed
    threads: int = 0  # torch CPU threads (0: torch's default); does not change the result
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # image_size follows [pairs]
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    train: GanTrainConfig = field(default_factory=lambda: default_base_train().train)

    def __post_init__(self) -> None:
        _check_texts("concepts", self.concepts)
        self.base_config(Path("base"), Path("pairs"), {})  # BaseConfig validates

    def base_config(self, out: Path, pairs: Path, pairs_settings: dict) -> BaseConfig:
        return BaseConfig(out=str(out), pairs=str(pairs), n_concepts=self.n_concepts,
                          model=BaseTrainConfig(self.generator, self.discriminator, self.train),
                          pairs_settings=pairs_settings, threads=self.threads or None)


@dataclass
class ZooStage:
    """The LoRA zoo (weightgen.zoo.ZooConfig): n_train + n_heldout k-means picks, or explicit concept lists."""

    n_train: int = 64  # training concepts picked from the prompt set's train split (0: all of them)
    n_heldout: int = 16  # held-out concepts (the benchmark's oracle; never the generator's data; 0: all)
    train_concepts: list[str] = field(default_factory=list)  # with heldout_concepts: exactly these instead
    heldout_concepts: list[str] = field(default_factory=list)
    select_seed: int = 0  # k-means seed
    k: int = 5  # checkpoints kept per concept
    checkpoint_window: float = 0.25  # the K checkpoints spread over this last fraction of the steps
    threads: int = 0  # torch CPU threads (0: torch's default); does not change the result
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: GanTrainConfig = field(default_factory=default_zoo_train)  # per-concept recipe; max_steps = LoRA steps

    def __post_init__(self) -> None:
        for name in ("n_train", "n_heldout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise WeightgenError(f"`{name}` should be an integer >= 0 (0: all), got {value!r}")
        _check_texts("train_concepts", self.train_concepts)
        _check_texts("heldout_concepts", self.heldout_concepts)
        self.zoo_config(Path("zoo"), Path("base"), Path("pairs"), {})  # ZooConfig validates (K steps must fit)

    def zoo_config(self, out: Path, base: Path, pairs: Path, pairs_settings: dict) -> ZooConfig:
        return ZooConfig(out=str(out), base=str(base), pairs=str(pairs), lora=self.lora, train=self.train, k=self.k,
                         checkpoint_window=self.checkpoint_window, pairs_settings=pairs_settings,
                         threads=self.threads or None)


@dataclass
class ChunksStage:
    """The chunk dataset (weightgen.chunks.build_chunk_dataset)."""

    block_size: int = 256  # values per block b (the paper found 256 best)

    def __post_init__(self) -> None:
        validate_block_size(self.block_size)


@dataclass
class GeneratorStage(GeneratorTrainConfig):
    """The weight generator: weightgen.generator.training.GeneratorTrainConfig's fields, plus the GAN validation to watch."""

    steps: int = 3000
    lr: float = 1e-3
    checkpoint_every: int = 500
    validate_every: int = 1000
    text_dropout: float = 0.2  # the generator also learns "no concept": classifier-free guidance
    val_concepts: int = 8  # training concepts kept out: validation and the guidance pick happen on them
    validate_concepts: int = 8  # generate this many validation concepts' LoRAs and score their GAN (0: none)
    guidance_sweep: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])

    def __post_init__(self) -> None:
        super().__post_init__()
        self.guidance_sweep = [float(v) for v in self.guidance_sweep]
        if self.guidance_sweep and (self.text_dropout <= 0 or self.val_concepts < 1
                                    or any(not v >= 0 for v in self.guidance_sweep)):
            raise WeightgenError(f"`guidance_sweep` {self.guidance_sweep!r} needs scales >= 0, text_dropout > 0 "
                                 "and val_concepts >= 1")
        if isinstance(self.validate_concepts, bool) or not isinstance(self.validate_concepts, int) \
                or self.validate_concepts < 0:
            raise WeightgenError(f"`validate_concepts` should be an integer >= 0, got {self.validate_concepts!r}")

    def train_config(self) -> GeneratorTrainConfig:  # the fields of weightgen.generator.training.GeneratorTrainConfig only
        return GeneratorTrainConfig(**{f.name: getattr(self, f.name) for f in fields(GeneratorTrainConfig)})


@dataclass
class ShipStage:
    """Copy the base, the generator and a zoo reference where `weightgen init` / `finetune` find them."""

    target: str = ""  # folder receiving base/, generator/, zoo_reference/ ("": no ship stage)
    max_mb: float = 50.0  # refuse to ship more than this in total

    def __post_init__(self) -> None:
        if not self.max_mb > 0:
            raise WeightgenError(f"`max_mb` should be positive, got {self.max_mb!r}")


@dataclass
class PipelineConfig:
    """Everything `weightgen pipeline` does, stage by stage; the defaults are the shipped default zoo
    (scripts/build_zoo.sh) plus its generator."""

    work: str = "work"  # folder holding every stage's output
    prompts: PromptsStage = field(default_factory=PromptsStage)
    pairs: PairsStage = field(default_factory=PairsStage)
    base: BaseStage = field(default_factory=BaseStage)
    zoo: ZooStage = field(default_factory=ZooStage)
    chunks: ChunksStage = field(default_factory=ChunksStage)
    generator: GeneratorStage = field(default_factory=GeneratorStage)
    ship: ShipStage = field(default_factory=ShipStage)

    def __post_init__(self) -> None:
        if not isinstance(self.work, str) or not self.work:
            raise WeightgenError(f"`work` should be a folder path, got {self.work!r}")
        try:  # the base is trained at the pairs' size: one fact, set in [pairs]
            self.base.generator = replace(self.base.generator, image_size=self.pairs.image_size)
        except USER_ERRORS as e:
            raise WeightgenError(f"[base.generator] {e} ([pairs] image_size sets the generator's)") from None


# Keys set by the pipeline, not by the file (refused by name when given).
DERIVED = {
    "base.generator.image_size": "it follows [pairs] image_size",
    "zoo.train.checkpoint_steps": "the zoo places them from k and checkpoint_window",
}
SECTION_HELP = {
    "prompts": "Concept prompts: the shipped set, a prompt-set file (path), or a set built by LLMs (build = true).",
    "prompts.llm": "LLM backend settings when building (prompts.llm.LLMOptions).",
    "prompts.recipe": "Prompt-set recipe when building (prompts.build.BuildConfig).",
    "pairs": "Paired images, built on the fly into work/pairs for the concepts the base and zoo need.",
    "base": "The base GAN on representative training concepts (weightgen.zoo.BaseConfig).",
    "base.generator": "gan.config.GeneratorConfig (image_size comes from [pairs]).",
    "base.discriminator": "gan.config.DiscriminatorConfig.",
    "base.train": "gan.config.GanTrainConfig: the base's pix2pix recipe.",
    "zoo": "The LoRA zoo: one LoRA per concept, k late checkpoints each (weightgen.zoo.ZooConfig).",
    "zoo.lora": "gan.config.LoraSettings, shared by every concept (one aligned weight space).",
    "zoo.train": "gan.config.GanTrainConfig: the per-concept LoRA recipe (max_steps = LoRA steps).",
    "chunks": "The chunk dataset the generator trains on.",
    "generator": "The weight generator (weightgen.generator.training.GeneratorTrainConfig) and its GAN validation.",
    "generator.diffusion": "weightgen.generator.diffusion.DiffusionConfig.",
    "ship": "Copy base, generator and zoo reference into target (weightgen/assets for the shipped defaults).",
}


def _coerce(value: Any, default: Any, key: str, where: str) -> Any:
    """`value` from the file, checked against the kind of the field's default (the dataclass checks the rest)."""
    def bad(kind: str) -> WeightgenError:
        return WeightgenError(f"bad value for {key!r} in {where}: {value!r} (expected {kind})")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, list):
            raise bad("a list")
        return type(default)(value)
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad("a table")
    elif isinstance(value, dict):  # a None default takes a scalar or a list
        raise bad("a value, not a table")
    return value


def _build(cls: type, data: Any, path: str) -> Any:
    """A `cls` from a table of the file: unknown and derived keys refused by name, nested tables recursed."""
    where = f"[{path}]" if path else "the top level of the config"
    if not isinstance(data, dict):
        raise WeightgenError(f"{where} should be a table, got {data!r}")
    defaults = cls()
    known = [f.name for f in fields(cls) if f"{path}.{f.name}" not in DERIVED]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else key
        if dotted in DERIVED:
            raise WeightgenError(f"key {key!r} in {where} is set by the pipeline: {DERIVED[dotted]}")
        if key not in known:
            raise WeightgenError(f"unknown key {key!r} in {where}; known: {', '.join(known)}")
        default = getattr(defaults, key)
        if is_dataclass(default):
            kwargs[key] = _build(type(default), value, dotted)
        else:
            kwargs[key] = _coerce(value, default, key, where)
    try:
        return cls(**kwargs)
    except (*USER_ERRORS, ValueError, TypeError) as e:
        raise WeightgenError(f"{where if path else 'config'}: {e}") from None


def config_from_dict(data: dict) -> PipelineConfig:
    return _build(PipelineConfig, data, "")


def load_config(path: str | Path) -> PipelineConfig:
    """A PipelineConfig from a TOML (or .json) file; missing keys take the defaults."""
    path = Path(path)
    if not path.is_file():
        raise WeightgenError(f"pipeline config not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightgenError(f"cannot parse {path}: {e}") from None
    return config_from_dict(data)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', k) else json.dumps(k)} = {_toml_value(v)}"
                 for k, v in value.items()]
        return "{" + ", ".join(items) + "}" if items else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def to_toml(config: PipelineConfig) -> str:
    """The config as a TOML file `load_config` reads back (unset keys appear as comments)."""
    lines = ["# weightgen pipeline config (`weightgen pipeline --print-config`); relative paths resolve",
             "# against this file's folder. Run: weightgen pipeline THIS_FILE [--dry-run]",
             f"work = {_toml_value(config.work)}"]

    def table(obj: Any, path: str) -> None:
        lines.extend(["", f"# {SECTION_HELP[path]}"] if path in SECTION_HELP else [""])
        lines.append(f"[{path}]")
        nested = []
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f"{path}.{f.name}" in DERIVED:
                continue
            if is_dataclass(value):
                nested.append((f.name, value))
            elif value is None:
                lines.append(f"# {f.name} = (unset)")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        for name, value in nested:
            table(value, f"{path}.{name}")

    for f in fields(config):
        if f.name != "work":
            table(getattr(config, f.name), f.name)
    return "\n".join(lines) + "\n"


# ---- records: what a stage's output depends on ----------------------------------------------------------------

# Config sections a stage's output depends on (its own and upstream), and the stages whose outputs it reads.
SECTIONS = {
    "prompts": ("prompts",),
    "base": ("prompts.encoder", "pairs", "base"),
    "zoo": ("prompts.encoder", "pairs", "base", "zoo"),
    "chunks": ("prompts.encoder", "pairs", "base", "zoo", "chunks"),
    "generator": ("prompts.encoder", "pairs", "base", "zoo", "chunks", "generator"),
    "ship": ("ship",),
}
INPUTS = {"prompts": (), "base": ("prompts",), "zoo": ("prompts", "base"), "chunks": ("zoo",),
          "generator": ("chunks",), "ship": ("base", "zoo", "generator")}
# Keys that do not change a stage's result: left out of its record (resumable or runtime-only).
UNRECORDED = {"base.threads", "base.train.cpu", "zoo.threads", "zoo.train.cpu", "zoo.train.eval_every",
              "generator.validate_concepts", "ship.max_mb", "prompts.llm.device", "prompts.llm.threads",
              "prompts.llm.timeout_s", "prompts.llm.max_retries", "prompts.llm.api_key_env",
              *(f"generator.{k}" for k in RESUMABLE_CHANGES)}


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if not is_dataclass(value):
        return {prefix: json.loads(json.dumps(value))}  # tuples -> lists, as they come back from JSON
    out: dict[str, Any] = {}
    for f in fields(value):
        out.update(_flatten(getattr(value, f.name), f"{prefix}.{f.name}"))
    return out


def _sha256(path: Path) -> str:
    return sha256_file(path)


def _folder_digest(folder: Path) -> str | None:
    """sha256 over a folder's files (relative names and contents): equal digests = identical copies."""
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(folder).as_posix()}\0{_sha256(p)}\n".encode())
    return h.hexdigest()


def _diff(old: dict, new: dict) -> list[str]:
    changes = []
    for key in list(new) + [k for k in old if k not in new]:
        a, b = old.get(key), new.get(key)
        if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
            continue
        if key.startswith("input."):
            changes.append(f"its input {key[6:]} changed since it was built ({str(a)[:12]} -> {str(b)[:12]})")
        else:
            changes.append(f"{key} was {json.dumps(a)}, now {json.dumps(b)}")
    return changes


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes}m {s:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m {s:02d}s"


@dataclass
class StageStatus:
    """One row of the plan: where a stage stands and why."""

    stage: str
    state: str  # one of STATES
    output: Path | None  # the stage's output (folder or file)
    detail: str = ""  # progress or the reason for "changed"
    adopt: bool = False  # an output without a record, taken as built with this config (--adopt)


# ---- the pipeline --------------------------------------------------------------------------------------------

class Pipeline:
    """A PipelineConfig bound to the folder its relative paths resolve against; inspect() and run()."""

    def __init__(self, config: PipelineConfig, root: str | Path = ".", source: str = "", encoders: dict | None = None):
        self.config, self.root, self.source = config, Path(root).resolve(), source
        self.work = (self.root / config.work).resolve()
        # Loaded text encoders by (name, path): the pairs editor, k-means picks, the generator and ship
        # share one (pass a dict to share them across pipelines, as the tests do).
        self.encoders = encoders if encoders is not None else {}
        self.console = Console(highlight=False, soft_wrap=True)
        self._prompts = None

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> Pipeline:
        return cls(load_config(path), Path(path).parent, source=str(path), **kwargs)

    # -- paths -------------------------------------------------------------------------------------------------

    def output(self, stage: str) -> Path:
        if stage == "ship":
            return (self.root / self.config.ship.target).resolve()
        return self.work / OUTPUTS[stage]

    @property
    def pairs_dir(self) -> Path:
        return self.work / PAIRS_DIR

    @property
    def generator_dir(self) -> Path:
        return self.output("generator") / "generator"

    def prompt_set_path(self) -> Path:
        cfg = self.config.prompts
        if cfg.build:
            return self.output("prompts")
        return (self.root / cfg.path).resolve() if cfg.path else DEFAULT_PROMPT_SET

    def stages(self, names: str | Sequence[str] | None = None) -> list[str]:
        """The stages to run, in pipeline order: all (ship when it has a target), or the named ones."""
        if names is None:
            return [s for s in STAGES if s != "ship" or self.config.ship.target]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in names if n not in STAGES]
        if unknown or not names:
            raise WeightgenError(f"unknown stage(s) {unknown or names!r}; choose from {', '.join(STAGES)}")
        if "ship" in names and not self.config.ship.target:
            raise WeightgenError("stage ship needs a target folder: set [ship] target in the config")
        return [s for s in STAGES if s in names]

    # -- status ------------------------------------------------------------------------------------------------

    def _read_state(self) -> dict:
        path = self.work / STATE_FILE
        if not path.is_file():
            return {"format": STATE_FORMAT, "version": 1, "stages": {}}
        state = read_json(path)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise WeightgenError(f"{path} is not a weightgen pipeline state file")
        return state

    def stamp(self, stage: str) -> str | None:
        """The identity of a stage's output, recorded by the stages reading it."""
        out = self.output(stage)
        if stage == "prompts":
            path = self.prompt_set_path()
            return _sha256(path) if path.is_file() else None
        if stage == "base":
            return read_json(out / "weightgen.json").get("weights_hash") if (out / "weightgen.json").is_file() else None
        if stage in ("zoo", "chunks"):
            path = out / ("manifest.json" if stage == "zoo" else "layout.json")
            return _sha256(path) if path.is_file() else None
        if stage == "generator":
            return _folder_digest(self.generator_dir)
        raise ValueError(f"no stamp for stage {stage!r}")

    def record(self, stage: str) -> dict[str, Any]:
        """What `stage`'s output depends on: config keys (flattened) and its inputs' stamps."""
        flat: dict[str, Any] = {}
        for section in SECTIONS[stage]:
            obj: Any = self.config
            for part in section.split("."):
                obj = getattr(obj, part)
            flat.update(_flatten(obj, section))
        record = {k: v for k, v in flat.items() if k not in UNRECORDED}
        for up in INPUTS[stage]:
            record[f"input.{up}"] = self.stamp(up)
        return record

    def _output_state(self, stage: str) -> tuple[str, str]:
        """(done | partial | todo, detail) from the stage's own output alone."""
        out = self.output(stage)
        if stage == "prompts":
            cfg = self.config.prompts
            return ("done", f"built with {cfg.generator} + {cfg.augmenter}") if out.is_file() else ("todo", "")
        if stage == "base":
            if not (out / "weightgen.json").is_file():
                return "todo", ""
            return "done", f"{len(read_json(out / 'weightgen.json').get('concepts', []))} concepts"
        if stage == "zoo":
            if (out / "manifest.json").is_file():
                m = read_json(out / "manifest.json")
                detail = f"{len(m.get('concepts', {}))}/{m.get('n_planned', '?')} concepts"
                return ("done" if m.get("complete") else "partial"), detail
            return ("partial", "planned") if (out / "plan.json").is_file() else ("todo", "")
        if stage == "chunks":
            return ("done", "") if (out / CHUNKS_FILE).is_file() and (out / "layout.json").is_file() else ("todo", "")
        if stage == "generator":
            state_file = out / "training" / "state.json"
            steps = self.config.generator.steps
            if not state_file.is_file():
                return "todo", f"step 0/{steps}"
            step = int(read_json(state_file).get("step", 0))
            if step >= steps and self.config.generator.guidance_sweep:
                info_file = out / "generator" / "generator.json"
                if not info_file.is_file() or "guidance_sweep" not in read_json(info_file):
                    return "partial", f"step {step}/{steps}, guidance not picked yet"
            return ("done" if step >= steps else "partial"), f"step {step}/{steps}"
        raise ValueError(f"no output state for stage {stage!r}")

    def _status(self, stage: str, done: dict[str, StageStatus], recorded: dict, adopt: bool) -> StageStatus:
        out = self.output(stage)
        if stage == "ship":
            return self._ship_status(done, recorded)
        if stage == "prompts" and not self.config.prompts.build:
            what = "prompt set file" if self.config.prompts.path else "shipped prompt set"
            return StageStatus(stage, "done", self.prompt_set_path(), what)
        state, detail = self._output_state(stage)
        if state == "todo":
            return StageStatus(stage, "todo", out, detail)
        waiting = [up for up in INPUTS[stage] if done[up].state != "done"]
        if waiting:  # its input will be rebuilt under it
            up = waiting[0]
            return StageStatus(stage, "changed", out, f"its input {up} is {done[up].state} and would be rebuilt "
                                                      "under it")
        if stage not in recorded:
            if adopt:
                return StageStatus(stage, state, out, detail + " (adopted)", adopt=True)
            return StageStatus(stage, "changed", out, f"{out} was not built by this pipeline (no record in "
                                                      f"{self.work / STATE_FILE}); pass --adopt to take it as built "
                                                      "with this config")
        changes = _diff(recorded[stage].get("config", {}), self.record(stage))
        if changes:
            more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
            return StageStatus(stage, "changed", out, "; ".join(changes[:3]) + more)
        return StageStatus(stage, state, out, detail)

    def _ship_status(self, done: dict[str, StageStatus], recorded: dict) -> StageStatus:
        if not self.config.ship.target:
            return StageStatus("ship", "off", None, "no [ship] target")
        target = self.output("ship")
        if done["generator"].state != "done":
            return StageStatus("ship", "todo", target, "waits for the generator")
        same = (recorded.get("ship", {}).get("config") == self.record("ship")
                and (target / "zoo_reference").is_dir()
                and _folder_digest(target / "base") == _folder_digest(self.output("base"))
                and _folder_digest(target / "generator") == _folder_digest(self.generator_dir))
        return StageStatus("ship", "done" if same else "todo", target, "" if same else "target differs from work")

    def inspect(self, adopt: bool = False) -> list[StageStatus]:
        """Every stage's status, in order (what --dry-run prints)."""
        recorded = self._read_state()["stages"]
        statuses: dict[str, StageStatus] = {}
        for stage in STAGES:
            statuses[stage] = self._status(stage, statuses, recorded, adopt)
        return list(statuses.values())

    # -- running -----------------------------------------------------------------------------------------------

    def run(self, stages: str | Sequence[str] | None = None, overwrite_changed: bool = False, adopt: bool = False,
            progress: bool = True) -> list[StageStatus]:
        """Run the selected stages in order: skip the done, resume the partial, refuse the changed
        (unless `overwrite_changed`: remove and rebuild). Returns the final statuses."""
        selected = self.stages(stages)
        ranks = Ranks.from_env()
        main = ranks.is_main
        if ranks.world > 1:
            if selected != ["zoo"] or overwrite_changed or adopt:
                raise WeightgenError(
                    f"under a launcher (WORLD_SIZE={ranks.world}) the pipeline runs only the zoo stage, sharded: "
                    "`accelerate launch ... -m weightgen pipeline CONFIG --stages zoo` (without --overwrite-changed "
                    "or --adopt); run the other stages in one process")
            self.console.quiet = not main
        first = {s.stage: s for s in self.inspect(adopt)}
        for stage in selected:  # refuse before hours of work, not after
            if first[stage].state == "changed" and not overwrite_changed:
                raise self._changed_error(first[stage])
        t_all = time.perf_counter()
        for i, stage in enumerate(selected, 1):
            status = {s.stage: s for s in self.inspect(adopt)}
            st = status[stage]
            for up in INPUTS[stage]:
                if status[up].state != "done":
                    raise WeightgenError(f"stage {stage} needs {up}, which is {status[up].state}"
                                         f"{': ' + status[up].detail if status[up].detail else ''}; "
                                         f"add {up} to --stages")
            head = f"[bold]{i}/{len(selected)} {stage}[/bold]"
            if st.state == "done":
                if st.adopt and main:
                    self._write_record(stage)
                self.console.print(f"{head}: [green]done[/green], skipped "
                                   + escape(f"({self.show(st.output)}{': ' + st.detail if st.detail else ''})"))
                self._log(main, stage, "skip", state="done")
                continue
            if st.state == "changed":
                if not overwrite_changed:
                    raise self._changed_error(st)
                self.console.print(f"{head}: [yellow]changed[/yellow] "
                                   + escape(f"({st.detail}): removing {self.show(st.output)}"))
                if main:
                    self._remove(st.output)
            if main:
                self._write_record(stage)
            self.console.rule(f"{head}: {st.state} -> " + escape(self.show(st.output)), align="left")
            self._log(main, stage, "start", state=st.state)
            t0 = time.perf_counter()
            try:
                getattr(self, f"_run_{stage}")(progress=progress, overwrite=overwrite_changed)
            except BaseException as e:
                seconds = time.perf_counter() - t0
                self._log(main, stage, "fail", seconds=round(seconds, 2), error=f"{type(e).__name__}: {e}")
                self.console.print(f"[red]{stage} stopped after {format_seconds(seconds)}[/red]; rerun to resume")
                raise
            seconds = time.perf_counter() - t0
            self._log(main, stage, "finish", seconds=round(seconds, 2))
            if main:
                self._finish_record(stage, seconds)
            self.console.print(f"{head}: [green]finished[/green] in {format_seconds(seconds)}")
        final = self.inspect()
        done = final[STAGES.index("generator")].state == "done"
        made = f"; generator {self.show(self.generator_dir)}" if done else ""
        took = format_seconds(time.perf_counter() - t_all)
        self.console.print(escape(f"pipeline: {', '.join(selected)} in {took}{made}"))
        return final

    def _changed_error(self, st: StageStatus) -> WeightgenError:
        return WeightgenError(f"stage {st.stage} was built with another config: {st.detail}; restore the config, "
                              f"or pass --overwrite-changed to rebuild {st.stage} and the stages after it")

    def show(self, path: Path | None) -> str:
        if path is None:
            return "-"
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def _remove(self, path: Path | None) -> None:
        if path is not None and path.is_dir():
            shutil.rmtree(path)
        elif path is not None and path.exists():
            path.unlink()

    def _write_record(self, stage: str) -> None:
        state = self._read_state()
        state["stages"][stage] = {"config": self.record(stage), "started": _now(), "finished": None, "seconds": None}
        write_json(self.work / STATE_FILE, state)

    def _finish_record(self, stage: str, seconds: float) -> None:
        state = self._read_state()
        entry = state["stages"].setdefault(stage, {"config": self.record(stage)})
        entry.update(finished=_now(), seconds=round(seconds, 2))
        write_json(self.work / STATE_FILE, state)

    def _log(self, main: bool, stage: str, event: str, **fields_: Any) -> None:
        if not main:
            return
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.work / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": _now(), "stage": stage, "event": event, **fields_}) + "\n")

    # -- shared inputs -----------------------------------------------------------------------------------------

    def encoder(self, name: str | None = None, path: str | None = None):
        """A loaded text encoder (the prompts' by default), loaded once per pipeline."""
        key = (name or self.config.prompts.encoder, path)
        if key not in self.encoders:
            self.encoders[key] = load_text_encoder(key[0], path)
        return self.encoders[key]

    def prompt_set(self):
        if self._prompts is None:
            self._prompts = load_prompt_set(self.prompt_set_path())
        return self._prompts

    def _pairs_settings(self, overwrite: bool) -> dict:
        return {**self.config.pairs.settings(self.root), "overwrite": overwrite}

    def build_pairs(self, texts: Sequence[str], overwrite: bool = False, progress: bool = True) -> None:
        """The pairs of `texts` missing from work/pairs, with one shared text encoder for the procedural editor."""
        manifest = pairs_manifest(self.pairs_dir) if self.pairs_dir.is_dir() else None
        have = set(manifest["concepts"]) if manifest else set()
        missing = [t for t in texts if concept_id(t) not in have]
        if not missing:
            return
        cfg = self.config.pairs
        editor = None
        if cfg.editor == "procedural":
            options = dict(cfg.editor_options)
            text_encoder = ProceduralConfig(**options).text_encoder
            editor = load_editor("procedural", encoder=self.encoder(text_encoder), **options)
        bar = _Bar(f"pairs ({len(missing)} concepts)", progress)
        with bar:
            build_pairs(missing, cfg.pairs_config(self.pairs_dir, self.root, overwrite), editor=editor,
                        progress=bar.update)

    # -- the stages --------------------------------------------------------------------------------------------

    def _run_prompts(self, progress: bool, overwrite: bool) -> None:
        cfg = self.config.prompts
        generator = make_backend(cfg.generator, cfg.llm)
        augmenter = generator if cfg.augmenter == cfg.generator else make_backend(cfg.augmenter, cfg.llm)
        command = f"weightgen pipeline {self.source or 'CONFIG'} --stages prompts"
        prompt_set = build_prompt_set(cfg.recipe, generator, augmenter, self.encoder(), command=command)
        prompt_set.save(self.output("prompts"))
        stats = prompt_set.stats()
        self.console.print(f"prompt set: {stats['concepts']} concepts ({stats['heldout']} held out)")

    def _run_base(self, progress: bool, overwrite: bool) -> None:
        cfg = self.config.base
        texts = list(cfg.concepts) or base_concepts(self.prompt_set(), cfg.n_concepts, self.encoder(), cfg.select_seed)
        self.console.print(escape(f"base concepts ({len(texts)}): " + "; ".join(texts)))
        self.build_pairs(texts, overwrite, progress)
        config = cfg.base_config(self.output("base"), self.pairs_dir, self._pairs_settings(overwrite))
        history = build_base(config, texts, progress=progress)
        first, last = history[0]["metrics"], history[-1]["metrics"]
        self.console.print(f"base: test L1 {first['l1']:.4f} -> {last['l1']:.4f} after {history[-1]['step']} steps")

    def _zoo_plan(self, overwrite: bool, progress: bool) -> list:
        """The zoo's concepts (explicit, or k-means picks) with their pairs built; the main rank calls it."""
        cfg = self.config.zoo
        if cfg.train_concepts or cfg.heldout_concepts:
            plan = [ZooConcept(t, "train") for t in cfg.train_concepts] + \
                   [ZooConcept(t, "heldout") for t in cfg.heldout_concepts]
        else:
            plan = plan_from_prompt_set(self.prompt_set(), cfg.n_train or None, cfg.n_heldout or None, self.encoder(),
                                        cfg.select_seed)
        self.build_pairs([c.text for c in plan], overwrite, progress)
        return plan

    def _run_zoo(self, progress: bool, overwrite: bool) -> None:
        config = self.config.zoo.zoo_config(self.output("zoo"), self.output("base"), self.pairs_dir,
                                            self._pairs_settings(overwrite))
        report = build_zoo(config, lambda: self._zoo_plan(overwrite, progress), progress=progress)
        if report.manifest is not None:
            m = report.manifest
            self.console.print(f"zoo: {len(m['concepts'])}/{m['n_planned']} concepts complete ({len(report.built)} "
                               f"built now, {len(report.skipped)} already done, {len(report.rebuilt)} rebuilt)")

    def _run_chunks(self, progress: bool, overwrite: bool) -> None:
        build_chunk_dataset(self.output("zoo"), self.output("chunks"), block_size=self.config.chunks.block_size,
                            progress=progress)

    def _run_generator(self, progress: bool, overwrite: bool) -> None:
        cfg = self.config.generator
        train_validate_pick(self.output("chunks"), self.output("generator"), cfg.train_config(), zoo=self.output("zoo"),
                            validate_concepts=cfg.validate_concepts, guidance_sweep=cfg.guidance_sweep, resume=True,
                            progress=progress, text_encoder=self.encoder(cfg.text_encoder, cfg.text_encoder_path),
                            log=lambda line: self.console.print(escape(line)))

    def _run_ship(self, progress: bool, overwrite: bool) -> None:
        gen, target, base = self.config.generator, self.output("ship"), self.output("base")
        pipe = WeightGenPipeline.from_pretrained(self.generator_dir,
                                                 text_encoder=self.encoder(gen.text_encoder, gen.text_encoder_path))
        pipe.check_compatible(base=read_json(base / "weightgen.json"))
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".ship.", dir=target) as staging:
            reference = ZooReference.from_zoo(self.output("zoo"), layout=pipe.layout).save(Path(staging) / "ref")
            sources = {"base": base, "generator": self.generator_dir, "zoo_reference": reference}
            mb = {name: sum(p.stat().st_size for p in src.rglob("*") if p.is_file()) / 2**20
                  for name, src in sources.items()}
            sizes = ", ".join(f"{k} {v:.1f} MB" for k, v in mb.items())
            if sum(mb.values()) > self.config.ship.max_mb:
                raise WeightgenError(f"the shipped files would be {sum(mb.values()):.1f} MB, over [ship] max_mb "
                                     f"{self.config.ship.max_mb:g} ({sizes})")
            for name, src in sources.items():  # each folder replaced atomically; others in target are left alone
                with atomic_dir(target / name, overwrite=True) as tmp:
                    shutil.copytree(src, tmp, dirs_exist_ok=True)
        self.console.print(escape(f"shipped to {self.show(target)}: {sizes}"))


class _Bar:
    """A rich progress bar over concepts for build_pairs' progress(done, total, text) callback."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled, self.task = label, enabled, None

    def __enter__(self) -> _Bar:
        if self.enabled:
            self.progress = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.progress.start()
        return self

    def update(self, done: int, total: int, text: str) -> None:
        if self.enabled:
            if self.task is None:
                self.task = self.progress.add_task("", total=total)
            self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()


def format_plan(pipeline: Pipeline, statuses: Sequence[StageStatus]) -> str:
    """The --dry-run table: stage, status, output path, detail."""
    rows = [("stage", "status", "output", "detail")]
    rows += [(s.stage, s.state, pipeline.show(s.output), s.detail) for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:{widths[0]}}  {r[1]:{widths[1]}}  {r[2]:{widths[2]}}  {r[3]}".rstrip() for r in rows)
