"""Running the bench: every (held-out concept, method) fine-tuned with one recipe, each result kept on disk.

    <out>/bench_config.json              the recipe and the zoo / generator identity the results belong to
    <out>/runs/<concept_id>/<method>.json one finished run: history, step-0 and final quality, hit, the style
                                          embeddings of its step-0 / final outputs and of the targets
                                          (written atomically, so a killed bench leaves finished runs or none)

A run's step-0 and final records also hold "style" (gan.metrics: the mean style distance to the
targets), scored here after the trainer's own evaluation and outside the training clock; their
embeddings let the report compute one Fréchet style distance per method over all concepts' outputs.

A rerun skips the runs already on disk, so an interrupted bench resumes where it stopped, and n
processes with `shard="i/n"` split the concepts between them. A rerun under another recipe would
mix incomparable numbers, so it is refused unless told to start over.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from gan.base import build_models, load_base, read_base_meta
from gan.config import (
    BaseTrainConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from gan.data import PairedData
from gan.io import read_json, write_json
from gan.lora import count_lora_params
from gan.lora_training import train_lora
from gan.metrics import StyleMetrics, StyleScorer, score_style
from gan.perceptual import StyleEmbedder
from gan.trainer import Pix2PixTrainer
from weightgen import __version__
from weightgen.bench.config import (
    CONFIG_FILE,
    CONFIG_FORMAT,
    METHODS,
    REPORT_FILES,
    RUN_FORMAT,
    RUNS_DIR,
    BenchConfig,
)
from weightgen.bench.report import write_report
from weightgen.bench.stats import first_hit
from weightgen.chunks.adapters import read_adapter
from weightgen.chunks.evaluate import AdapterEvaluator
from weightgen.digests import sha256_file
from weightgen.errors import WeightgenError
from weightgen.finetune.starts import (
    InitSources,
    ZooReference,
    describe_nearest,
    init_weights,
)
from weightgen.generator.pipeline import (
    GENERATOR_FILE,
    WeightGenPipeline,
    resolve_generator_dir,
)
from weightgen.zoo.store import read_manifest, settings_mismatch

ResultFn = Callable[[dict], None]  # called with each finished run's result


@dataclass(frozen=True)
class HeldOutConcept:
    id: str
    text: str
    oracle_path: str  # its last zoo checkpoint, relative to the zoo
    oracle_step: int  # the zoo training step that checkpoint was saved at


def heldout_concepts(zoo: str | Path) -> tuple[list[HeldOutConcept], dict]:
    """The zoo's held-out concepts that have an oracle (a checkpoint), in manifest order, and the manifest."""
    manifest = read_manifest(Path(zoo))
    out = []
    for cid, info in (manifest.get("concepts") or {}).items():
        if info.get("split") == "heldout" and info.get("checkpoints"):
            last = info["checkpoints"][-1]
            out.append(HeldOutConcept(cid, info.get("text", cid), last["path"], int(last.get("step", -1))))
    if not out:
        raise WeightgenError(f"zoo {zoo} has no held-out concepts with checkpoints; the bench compares methods "
                             "on held-out concepts against their own zoo LoRA (build the zoo with a held-out split)")
    return out, manifest


def select_concepts(config: BenchConfig, heldout: list[HeldOutConcept]) -> list[HeldOutConcept]:
    """config.concepts (ids or texts), then the first `limit`, then this process's shard."""
    chosen = heldout
    if config.concepts is not None:
        by_name = {c.id: c for c in heldout} | {c.text: c for c in heldout}
        unknown = [name for name in config.concepts if name not in by_name]
        if unknown:
            raise WeightgenError(f"not held-out concepts of the zoo: {unknown}; held-out: {[c.text for c in heldout]}")
        chosen = list({by_name[name].id: by_name[name] for name in config.concepts}.values())
    if config.limit is not None:
        chosen = chosen[: config.limit]
    i, n = config.shard_index
    return chosen[i::n]


def run_path(out: str | Path, concept_id: str, method: str) -> Path:
    return Path(out) / RUNS_DIR / concept_id / f"{method}.json"


# -- what the results belong to ------------------------------------------------------------------------------------

def zoo_identity(manifest: dict) -> dict:
    return {k: manifest.get(k) for k in ("base_fingerprint", "base_weights_hash", "lora", "train")}


def generator_identity(generator_dir: Path) -> dict:
    info = read_json(generator_dir / GENERATOR_FILE)
    weights = generator_dir / "diffusion_pytorch_model.safetensors"
    return {"layout_fingerprint": info.get("layout_fingerprint"), "step": info.get("step"),
            "weights_sha256": sha256_file(weights)[:16] if weights.is_file() else None}


def prepare_out(config: BenchConfig, zoo_id: dict, gen_id: dict | None) -> dict:
    """Create or check <out>/bench_config.json; refuse a recipe or zoo/generator the stored results do not share."""
    out = Path(config.out)
    path = out / CONFIG_FILE
    if config.overwrite and out.exists():
        shutil.rmtree(out / RUNS_DIR, ignore_errors=True)
        for name in (CONFIG_FILE, *REPORT_FILES):
            (out / name).unlink(missing_ok=True)
    new = {"format": CONFIG_FORMAT, "version": 1, "weightgen_version": __version__, "recipe": config.recipe(),
           "zoo": zoo_id, "generator": gen_id}
    new = json.loads(json.dumps(new))  # tuples -> lists, as read back
    if not path.is_file():
        if (out / RUNS_DIR).is_dir() and any((out / RUNS_DIR).iterdir()):
            raise WeightgenError(f"{out} holds bench runs but no {CONFIG_FILE}; pass --overwrite to discard them")
        write_json(path, new)
        return new
    old = read_json(path)
    if not isinstance(old, dict) or old.get("format") != CONFIG_FORMAT:
        raise WeightgenError(f"{path} is not a bench config (pass --overwrite to start over)")
    diffs = settings_mismatch(old.get("recipe", {}), new["recipe"])
    diffs += [f"zoo {d}" for d in settings_mismatch(old.get("zoo", {}), zoo_id)]
    if old.get("generator") and gen_id:
        diffs += [f"generator {d}" for d in settings_mismatch(old["generator"], gen_id)]
    if diffs:
        raise WeightgenError(f"{out} holds results of another bench: {'; '.join(diffs)}. Mixing them would compare "
                             "unlike runs; pass --overwrite to discard them, or use another --out")
    if gen_id and not old.get("generator"):  # the first run that needs the generator records it
        old["generator"] = gen_id
        write_json(path, old)
    return old


# -- style scores ---------------------------------------------------------------------------------------------------

def rounded_embeddings(embeddings) -> list[list[float]]:
    """(N, 100) embeddings as JSON lists, 4 decimals: ~1e-4 of values near 1, far below what a distance resolves."""
    return [[round(float(v), 4) for v in row] for row in embeddings]


def style_record(metrics: StyleMetrics) -> dict:
    fake, real = metrics.embeddings
    return {"outputs": rounded_embeddings(fake), "targets": rounded_embeddings(real)}


class _StyleScores(StyleScorer):
    """Evaluation callback: adds "style" to the step-0 record, then `finish` to the final one, keeping both embeddings.

    Only those two: the report's style columns are step 0 and final, its curves are L1, and
    scoring all 21 evaluations of a default run would cost ~2 s of it (16 images x ~7 ms each).
    """

    def __init__(self, generator, pairs, embedder: StyleEmbedder, then):
        super().__init__(generator, pairs, embedder)
        self.then = then
        self.first: StyleMetrics | None = None
        self.last: StyleMetrics | None = None

    def __call__(self, step: int, record: dict) -> None:
        if step == 0 and self.first is None:
            self.first = self.score(record)
        if self.then is not None:
            self.then(step, record)

    def finish(self, history: list[dict]) -> None:
        """Score the trained model: the trainer's last record is its evaluation at the end of the run."""
        self.last = self.score(history[-1]) if len(history) > 1 else self.first


# -- the runs ------------------------------------------------------------------------------------------------------

class _Bench:
    """What every run of one bench shares: the zoo's base, pairs, LoRA settings, oracle targets, init sources."""

    def __init__(self, config: BenchConfig, manifest: dict, generator_dir: Path | None):
        self.config, self.zoo = config, Path(config.zoo)
        self.base_dir, self.pairs_dir = Path(manifest["base"]), Path(manifest["pairs"])
        self.base_meta = read_base_meta(self.base_dir)
        self.lora_settings = LoraSettings.from_dict(manifest.get("lora") or {})
        first = next(c for c in manifest["concepts"].values() if c.get("checkpoints"))
        _, self.adapter_config = read_adapter(self.zoo / first["checkpoints"][-1]["path"])
        self.evaluator = AdapterEvaluator(self.base_dir, self.pairs_dir, self.adapter_config)
        # One thread: the style network runs one 256x256 image per call; a second thread made it no faster.
        self.embedder = StyleEmbedder(threads=1)
        self.sources = None
        if generator_dir is not None:
            pipe = WeightGenPipeline.from_pretrained(generator_dir)
            pipe.check_compatible(base=self.base_meta)
            ref = ZooReference.from_zoo(self.zoo, layout=pipe.layout)
            self.sources = InitSources(reference=ref, pipeline=pipe, seed=config.seed, ddim_steps=config.ddim_steps,
                                       noise_scale=config.noise_scale)
            # One-off costs outside every run's clock: the training concepts' embeddings, a first forward pass.
            ref.embeddings(self.sources.text_encoder())
            pipe.generate_blocks(["warm up"], steps=1, seed=config.seed)
        self._oracles: dict[str, dict] = {}

    def oracle(self, concept: HeldOutConcept) -> dict:
        """The concept's own zoo LoRA, re-measured here: its test quality is the target."""
        if concept.id not in self._oracles:
            sd, _ = read_adapter(self.zoo / concept.oracle_path)
            metrics = self.evaluator.evaluate(concept.id, sd)
            # evaluate() leaves these LoRA weights in the evaluator's model: score their style on the same pairs.
            pairs = self.evaluator.pairs(concept.id)
            scored = score_style(self.evaluator.model, pairs.test_source, pairs.test_target, self.embedder,
                                 device=self.evaluator.device)
            metrics["style"] = scored.compute()["style"]
            self._oracles[concept.id] = {"path": concept.oracle_path, "zoo_step": concept.oracle_step,
                                         "metrics": metrics, "style_embeddings": style_record(scored)["outputs"]}
        return self._oracles[concept.id]

    def train_config(self, method: str):
        c = self.config
        return GanTrainConfig(batch_size=c.batch_size, lr=c.scratch_lr if METHODS[method].init is None else c.lr,
                           lr_d=c.lr_d, max_steps=c.steps, max_seconds=c.seconds, eval_every=c.eval_every,
                           seed=c.seed, cpu=c.cpu)

    def run(self, concept: HeldOutConcept, method: str, data: PairedData, callback) -> dict:
        """Fine-tune one concept from one method's start; returns the result record."""
        train = self.train_config(method)
        init = METHODS[method].init
        info: dict = {}
        if init is None:  # pix2pix from scratch: the base's architecture, fresh weights, everything trains
            model_cfg = self.base_meta["config"]
            generator, discriminator = build_models(BaseTrainConfig(
                GeneratorConfig.from_dict(model_cfg["generator"]),
                DiscriminatorConfig.from_dict(model_cfg["discriminator"]), train))
            init_seconds = 0.0
            style = _StyleScores(generator, data.concepts[0], self.embedder, then=callback)
            trainer = Pix2PixTrainer(generator, discriminator, data, train, callback=style, progress=False)
            history = trainer.run_loop()
            trained = sum(p.numel() for p in generator.parameters() if p.requires_grad)
        else:  # a LoRA on the frozen base, the base's discriminator reloaded fresh for every run
            generator, discriminator = load_base(self.base_dir)
            # peft injects the LoRA into `generator` in place, so scoring it scores the model being trained.
            style = _StyleScores(generator, data.concepts[0], self.embedder, then=callback)
            t0 = time.perf_counter()
            state_dict = init_weights(init, concept.text, self.sources) if init != "zero" else None
            init_seconds = time.perf_counter() - t0
            if init in ("nearest", "nearest-noise"):
                info = describe_nearest(concept.text, self.sources)
            model, history = train_lora(generator, discriminator, data, self.lora_settings, train, callback=style,
                                        progress=False, init_weights=(self.adapter_config, state_dict))
            trained = count_lora_params(model)
        style.finish(history)
        oracle = self.oracle(concept)
        hit = first_hit(history, oracle["metrics"]["l1"], init_seconds)
        return {"format": RUN_FORMAT, "version": 1, "weightgen_version": __version__, "concept_id": concept.id,
                "concept": concept.text, "method": method, "init_info": info, "trained_params": trained,
                "init_seconds": round(init_seconds, 3), "oracle": oracle, "step0": history[0]["metrics"],
                "final": history[-1]["metrics"], "hit": hit.to_dict(), "style_seconds": round(style.seconds, 3),
                "style_embeddings": {"step0": style_record(style.first)["outputs"], **style_record(style.last)},
                "history": [{"step": r["step"], "seconds": r["seconds"], "metrics": r["metrics"],
                             "losses": r["losses"]} for r in history]}


def run_bench(config: BenchConfig, progress: bool = True, on_result: ResultFn | None = None) -> dict:
    """Run every missing (concept, method) of this shard, then write the report; returns the report summary."""

    heldout, manifest = heldout_concepts(config.zoo)
    concepts = select_concepts(config, heldout)
    needs_generator = any(METHODS[m].needs_generator for m in config.methods)
    generator_dir = resolve_generator_dir(config.generator) if needs_generator else None
    prepare_out(config, zoo_identity(manifest), generator_identity(generator_dir) if generator_dir else None)
    runs = [(c, m) for c in concepts for m in config.methods]
    todo = [(c, m) for c, m in runs if not run_path(config.out, c.id, m).is_file()]
    if todo:
        threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        try:
            bench = _Bench(config, manifest, generator_dir if any(METHODS[m].needs_generator for _, m in todo)
                           else None)
            _run_all(bench, runs, todo, progress, on_result)
        finally:
            torch.set_num_threads(threads)
    return write_report(config.out)


def _run_all(bench: _Bench, runs: list, todo: list, progress: bool, on_result: ResultFn | None) -> None:
    steps = bench.config.steps
    with Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), disable=not progress) as bar:
        task = bar.add_task("", total=len(runs), completed=len(runs) - len(todo))
        data: dict[str, PairedData] = {}
        for concept, method in todo:
            if concept.id not in data:
                data[concept.id] = PairedData.load(bench.pairs_dir, [concept.id])
            target = bench.oracle(concept)["metrics"]["l1"]
            label = f"{concept.text} / {method}"

            def show(step: int, rec: dict, label=label, target=target) -> None:
                bar.update(task, description=f"{label}: step {step}/{steps}, test L1 {rec['metrics']['l1']:.4f} "
                                             f"(target {target:.4f})")

            bar.update(task, description=f"{label}: starting")
            result = bench.run(concept, method, data[concept.id], show)
            write_json(run_path(bench.config.out, concept.id, method), result)
            bar.advance(task)
            hit = result["hit"]
            if progress:
                bar.console.log(f"{label}: " + (f"target reached at step {hit['steps']} ({hit['seconds']:.1f} s)"
                                                if hit["reached"] else f"not reached in {hit['budget_steps']} steps")
                                + f", final test L1 {result['final']['l1']:.4f} (target {target:.4f})")
            if on_result is not None:
                on_result(result)
