"""The pipeline's config: one dataclass per stage with that stage's own configs nested inside, read from TOML.

No torch here (the text-encoder name check imports the encoder registry when it runs), so `--print-config`
and config errors cost no model import. A file is parsed by tomllib; every value is then checked
against the kind of its field's default, so a wrong type names the key and the table it sits in
instead of surfacing as a TypeError inside a stage hours later. `to_toml` writes the full config
(tomli-w), with each section's help as a comment; `load_config(to_toml(c))` gives back `c`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import tomli_w

from gan.config import (
    BaseTrainConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from prompts.build import BuildConfig
from prompts.llm import REGISTRY, LLMOptions
from weightgen.chunks.config import DEFAULT_BLOCK_SIZE, validate_block_size
from weightgen.config import Config
from weightgen.errors import USER_ERRORS, WeightgenError
from weightgen.generator.config import GeneratorTrainConfig
from weightgen.pairs.config import PairsConfig
from weightgen.zoo.config import (
    BaseConfig,
    ZooConfig,
    default_base_train,
    default_zoo_train,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@dataclass
class PromptsStage(Config):
    """Where concepts come from; the base and the zoo pick theirs from this prompt set."""

    path: str = ""  # prompt-set file; "" = the shipped prompts/data/concepts-v1.json
    build: bool = False  # build a prompt set into work/prompts.json with the LLMs below instead of reading `path`
    generator: str = "smollm2"  # LLM proposing concepts (prompts.llm.REGISTRY) when building
    augmenter: str = "smollm2"  # LLM writing paraphrases when building
    encoder: str = "minilm"  # text encoder of the k-means concept picks (and of the build's dedupe)
    llm: LLMOptions = field(default_factory=LLMOptions)
    recipe: BuildConfig = field(default_factory=BuildConfig)

    def __post_init__(self) -> None:
        # The encoder registry lives beside the encoders (torch); imported only when a config is built.
        from weightgen.text_encoders import TEXT_ENCODERS

        for name in ("generator", "augmenter"):
            self.check_choice(name, getattr(self, name), sorted(REGISTRY))
        self.check_choice("encoder", self.encoder, sorted(TEXT_ENCODERS))


@dataclass
class PairsStage(Config):
    """How the (source, target) pairs are made; the base and zoo stages build what they need into work/pairs."""

    editor: str = "procedural"  # weightgen.pairs.editors.REGISTRY key
    image_size: int = 64  # pixels per side; the base GAN is trained at this size
    canvas_size: int = 0  # side of the edited train canvases, cropped afresh per batch; 0 = 2 x image_size
    n_train: int = 32  # train canvases per concept
    n_test: int = 16  # test pairs per concept
    seed: int = 0
    sources: str = ""  # folder of photos; "" = the bundled photos
    test_fraction: float = 0.25  # share of photos held out for test pairs
    editor_options: dict = field(default_factory=dict)  # passed to the editor's constructor

    def __post_init__(self) -> None:
        self.pairs_config(Path("pairs"), Path("."))  # PairsConfig validates

    def pairs_config(self, out: Path, root: Path, overwrite: bool = False) -> PairsConfig:
        return PairsConfig(out=str(out), overwrite=overwrite, **self.settings(root))

    def settings(self, root: Path) -> dict:
        """PairsConfig fields (the zoo's `pairs_settings`), with `sources` resolved against `root`."""
        settings = self.to_dict()
        settings["sources"] = str((root / self.sources).resolve()) if self.sources else None
        settings["canvas_size"] = self.canvas_size or None
        return settings


def _check_texts(name: str, texts: list) -> None:
    Config.check(all(isinstance(t, str) and t.strip() for t in texts),
                 f"`{name}` should be a list of non-empty concept texts, got {texts!r}")


@dataclass
class BaseStage(Config):
    """The base GAN (weightgen.zoo.BaseConfig): n_concepts k-means representatives, or `concepts`."""

    n_concepts: int = 8  # representative single training concepts, one per k-means cluster
    concepts: list[str] = field(default_factory=list)  # train on exactly these instead of the k-means pick
    select_seed: int = 0  # k-means seed
    threads: int = 0  # torch CPU threads (0: torch's default); does not change the result
    generator: GeneratorConfig = field(default_factory=lambda: default_base_train().generator)  # image_size: [pairs]
    discriminator: DiscriminatorConfig = field(default_factory=lambda: default_base_train().discriminator)
    train: GanTrainConfig = field(default_factory=lambda: default_base_train().train)

    def __post_init__(self) -> None:
        _check_texts("concepts", self.concepts)
        self.base_config(Path("base"), Path("pairs"), {})  # BaseConfig validates

    def base_config(self, out: Path, pairs: Path, pairs_settings: dict) -> BaseConfig:
        return BaseConfig(out=str(out), pairs=str(pairs), n_concepts=self.n_concepts,
                          model=BaseTrainConfig(self.generator, self.discriminator, self.train),
                          pairs_settings=pairs_settings, threads=self.threads or None)


@dataclass
class ZooStage(Config):
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
            self.check(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                       f"`{name}` should be an integer >= 0 (0: all), got {value!r}")
        _check_texts("train_concepts", self.train_concepts)
        _check_texts("heldout_concepts", self.heldout_concepts)
        self.zoo_config(Path("zoo"), Path("base"), Path("pairs"), {})  # ZooConfig validates (K steps must fit)

    def zoo_config(self, out: Path, base: Path, pairs: Path, pairs_settings: dict) -> ZooConfig:
        return ZooConfig(out=str(out), base=str(base), pairs=str(pairs), lora=self.lora, train=self.train, k=self.k,
                         checkpoint_window=self.checkpoint_window, pairs_settings=pairs_settings,
                         threads=self.threads or None)


@dataclass
class ChunksStage(Config):
    """The chunk dataset (weightgen.chunks.build_chunk_dataset)."""

    block_size: int = DEFAULT_BLOCK_SIZE  # values per block b

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
        self.check(not self.guidance_sweep or (self.text_dropout > 0 and self.val_concepts >= 1
                                               and all(v >= 0 for v in self.guidance_sweep)),
                   f"`guidance_sweep` {self.guidance_sweep!r} needs scales >= 0, text_dropout > 0 "
                   "and val_concepts >= 1")
        self.check_int("validate_concepts", self.validate_concepts, minimum=0)

    def train_config(self) -> GeneratorTrainConfig:
        """The fields weightgen.generator.training reads; the pipeline's own (validation) stay here."""
        return GeneratorTrainConfig(**{f.name: getattr(self, f.name) for f in fields(GeneratorTrainConfig)})


@dataclass
class ShipStage(Config):
    """Copy the base, the generator and a zoo reference where `weightgen init` / `finetune` find them."""

    target: str = ""  # folder receiving base/, generator/, zoo_reference/ ("": no ship stage)
    max_mb: float = 50.0  # refuse to ship more than this in total

    def __post_init__(self) -> None:
        self.check(isinstance(self.max_mb, (int, float)) and self.max_mb > 0,
                   f"`max_mb` should be positive, got {self.max_mb!r}")


@dataclass
class PipelineConfig(Config):
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
        self.check(isinstance(self.work, str) and bool(self.work), f"`work` should be a folder path, got {self.work!r}")
        try:  # the base is trained at the pairs' size: one fact, set in [pairs]
            self.base.generator = replace(self.base.generator, image_size=self.pairs.image_size)
        except USER_ERRORS as e:
            raise WeightgenError(f"[base.generator] {e} ([pairs] image_size sets the generator's)") from None

    @classmethod
    def from_dict(cls, data: dict) -> PipelineConfig:
        """Stricter than Config.from_dict: derived keys refused, values type-checked, errors name the table."""
        return _build(cls, data, "")


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
HEADER = ("# weightgen pipeline config (`weightgen pipeline --print-config`); relative paths resolve\n"
          "# against this file's folder. Run: weightgen pipeline THIS_FILE [--dry-run]\n")


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
    return PipelineConfig.from_dict(data)


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


def _tables(obj: Any, path: str, unset: dict[str, list[str]]) -> dict[str, Any]:
    """`obj` as tomli-w's input. TOML has no null: unset keys go to `unset` (by table) to be written as comments."""
    table: dict[str, Any] = {}
    for f in fields(obj):
        dotted, value = f"{path}.{f.name}" if path else f.name, getattr(obj, f.name)
        if dotted in DERIVED:
            continue
        if is_dataclass(value):
            table[f.name] = _tables(value, dotted, unset)
        elif value is None:
            unset.setdefault(path, []).append(f.name)
        else:
            table[f.name] = value
    return table


def to_toml(config: PipelineConfig) -> str:
    """The config as a TOML file `load_config` reads back: tomli-w's tables, each section's help above
    its header and its unset keys as comments below it."""
    unset: dict[str, list[str]] = {}
    body = tomli_w.dumps(_tables(config, "", unset))
    before = {f"[{path}]": f"# {text}" for path, text in SECTION_HELP.items()}
    after = {f"[{path}]": [f"# {name} = (unset)" for name in names] for path, names in unset.items()}
    lines: list[str] = []
    for line in body.splitlines():
        if line in before:
            lines.append(before[line])
        lines.append(line)
        lines.extend(after.get(line, ()))
    return HEADER + "\n".join(lines) + "\n"
