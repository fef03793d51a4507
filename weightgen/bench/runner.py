"""Running the bench: every (concept, method) fine-tuned with one recipe, each result kept on disk.

    <out>/bench_config.json               the recipe and the zoo / generator identity the results belong to
    <out>/runs/<concept_id>/<method>.json one finished run: the oracle and targets it was timed against, its
                                          history (eval-set scores at every scheduled step, full test-set
                                          scores at some), step-0 / final quality, hits per target, budgets
                                          (written atomically, so a killed bench leaves finished runs or none)
    <out>/pairs/<concept_id>/             pairs of --concepts-file concepts built here (one pairs folder each)
    <out>/references/<concept_id>/        their reference fine-tunes (weightgen.bench.reference)

The order within a concept: the generated init first, then every baseline. Every run trains the
common budget `steps`; a baseline then trains on until it has reached each target, or passed
`multiple` x the generated init's steps to that target (scratch_multiple from scratch,
lora_multiple for the LoRA baselines), or `max_steps`: so a 15x ratio can be measured, and a
run that does not get there is censored at a budget that makes its ratio a lower bound of at
least the multiple.

A rerun skips the runs already on disk, so an interrupted bench resumes where it stopped, and n
processes with `shard="i/n"` split the concepts between them (a concept's runs, pairs and
reference stay in one process). A rerun under another recipe would mix incomparable numbers, so
it is refused unless told to start over.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
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
from gan.data import PAIRS_FILE, ConceptPairs, PairedData, load_concept
from gan.data import read_manifest as read_pairs_manifest
from gan.io import read_json, write_json
from gan.lora import count_lora_params
from gan.lora_training import train_lora
from gan.metrics import score_style
from gan.perceptual import StyleEmbedder
from gan.trainer import Pix2PixTrainer
from weightgen import __version__
from weightgen.bench.concepts import (  # heldout_concepts: where scripts/bench_finetune.py imports it from
    BenchConcept,
    bench_concepts,
    check_pairs_hold,
    heldout_concepts,  # noqa: F401
    select_concepts,
)
from weightgen.bench.config import (
    CONFIG_FILE,
    CONFIG_FORMAT,
    METHODS,
    PAIRS_DIR,
    PRIMARY_TARGET,
    PRODUCT,
    REFERENCES_DIR,
    REPORT_FILES,
    RUN_FORMAT,
    RUN_VERSION,
    RUNS_DIR,
    TARGET_METRICS,
    TARGETS,
    BenchConfig,
    schedule_steps,
)
from weightgen.bench.reference import (
    make_reference,
    reference_recipe,
    reference_settings,
)
from weightgen.bench.report import write_report
from weightgen.bench.stats import first_hit, spearman
from weightgen.bench.targets import (
    EvalSets,
    LoraSlot,
    eval_sets,
    measure_oracle,
    rounded_embeddings,
    scored,
)
from weightgen.chunks.adapters import read_adapter
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
from weightgen.pairs.build import build_concept_pairs
from weightgen.pairs.config import PairsConfig
from weightgen.zoo.store import settings_mismatch

ResultFn = Callable[[dict], None]  # called with each finished run's result


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
    """Create or check <out>/bench_config.json; refuse a recipe or zoo/generator the stored results do not share.

    --overwrite discards the runs and the report; the pairs and reference fine-tunes of a concepts file are
    caches, each checked against its own settings, and stay.
    """
    out = Path(config.out)
    path = out / CONFIG_FILE
    if config.overwrite and out.exists():
        shutil.rmtree(out / RUNS_DIR, ignore_errors=True)
        for name in (CONFIG_FILE, *REPORT_FILES):
            (out / name).unlink(missing_ok=True)
    concepts = "file" if config.concepts_file else "zoo-heldout"
    new = {"format": CONFIG_FORMAT, "version": RUN_VERSION, "weightgen_version": __version__,
           "recipe": config.recipe(), "concepts": concepts, "zoo": zoo_id, "generator": gen_id}
    new = json.loads(json.dumps(new))  # tuples -> lists, as read back
    if not path.is_file():
        if (out / RUNS_DIR).is_dir() and any((out / RUNS_DIR).iterdir()):
            raise WeightgenError(f"{out} holds bench runs but no {CONFIG_FILE}; pass --overwrite to discard them")
        write_json(path, new)
        return new
    old = read_json(path)
    if not isinstance(old, dict) or old.get("format") != CONFIG_FORMAT:
        raise WeightgenError(f"{path} is not a bench config (pass --overwrite to start over)")
    if old.get("version") != RUN_VERSION:
        raise WeightgenError(f"{out} holds results of the old bench (version {old.get('version')}), not comparable "
                             "with this one's; pass --overwrite to discard them, or use another --out")
    diffs = settings_mismatch(old.get("recipe", {}), new["recipe"])
    if old.get("concepts") != concepts:
        diffs.append(f"concepts={old.get('concepts')} (now {concepts})")
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


# -- budgets -------------------------------------------------------------------------------------------------------

def target_caps(config: BenchConfig, method: str, product_hits: dict[str, dict] | None) -> dict[str, int]:
    """Per target, the step up to which `method` trains to time it.

    The product and any method without a product run: `steps`. A baseline: `multiple` x the
    product's steps to that target when the product reached it (a product at the target from
    step 0 counts as one step), at least `steps`, at most `max_steps`.
    """
    multiple = config.multiple(method)
    caps = {}
    for name in TARGETS:
        cap = config.steps
        hit = (product_hits or {}).get(name)
        if multiple is not None and hit is not None and hit["reached"]:
            cap = max(cap, math.ceil(multiple * max(hit["steps"], 1)))
        caps[name] = min(cap, config.max_steps)
    return caps


def evaluation_steps(config: BenchConfig, caps: dict[str, int]) -> tuple[list[int], set[int]]:
    """(steps evaluated on the eval set, steps also scored on the full test set) of a run with these caps.

    Every cap and `steps` itself are evaluated, so a run is judged exactly at its budget ends.
    """
    until = max(config.steps, *caps.values())
    points = sorted({*schedule_steps(config.schedule, until), config.steps, *caps.values()})
    full = {0, config.steps, *(s for s in points if s % config.full_every == 0)}
    return points, full


# -- evaluations during a run ----------------------------------------------------------------------------------------

class _Stop(Exception):
    """Raised by the evaluation callback once a run past the common budget has timed every target it can."""


class _Evaluations:
    """The trainer's evaluation callback for one run.

    Adds the eval-set style distance to each record (the trainer has scored L1 / PSNR / SSIM on the
    eval set), the full test set's scores where scheduled (record["full"]), keeps the style
    embeddings of step 0 and of the final step, and stops the run once it is past `steps` and
    every target is reached or at its cap. Everything here runs outside the training clock.
    """

    def __init__(self, generator: torch.nn.Module, sets: EvalSets, embedder: StyleEmbedder, targets: dict,
                 caps: dict[str, int], steps: int, full_steps: set[int], then=None):
        self.generator, self.sets, self.embedder, self.then = generator, sets, embedder, then
        self.targets, self.caps, self.steps, self.full_steps = targets, caps, steps, full_steps
        self.records: list[dict] = []
        self.reached: dict[str, int] = {}
        self.embeddings: dict[str, tuple] = {}  # "step0", "final", "last" -> (outputs, targets)
        self.seconds = 0.0

    def __call__(self, step: int, record: dict) -> None:
        t0 = time.perf_counter()
        style = score_style(self.generator, self.sets.eval_source, self.sets.eval_target, self.embedder)
        record["metrics"]["style"] = style.compute()["style"]
        for name, target in self.targets.items():
            if name not in self.reached and record["metrics"][target["metric"]] <= target["value"]:
                self.reached[name] = step
        stop = step >= self.steps and all(n in self.reached or step >= self.caps[n] for n in self.targets)
        if self.sets.eval_is_full:
            record["full"] = dict(record["metrics"])
            self._keep(step, style.embeddings)
        elif stop or step in self.full_steps:
            self._score_full(record)
        self.records.append(record)
        self.seconds += time.perf_counter() - t0
        if self.then is not None:
            self.then(step, record)
        if stop:
            raise _Stop

    def _score_full(self, record: dict) -> None:
        record["full"], embeddings = scored(self.generator, self.sets.test_source, self.sets.test_target,
                                            self.embedder)
        self._keep(record["step"], embeddings)

    def _keep(self, step: int, embeddings: tuple) -> None:
        if step == 0:
            self.embeddings["step0"] = embeddings
        if step == self.steps:
            self.embeddings["final"] = embeddings
        self.embeddings["last"] = embeddings

    def finish(self) -> None:
        """The run's last record gets its full test-set scores when it has none (a time budget ended it)."""
        t0 = time.perf_counter()
        if "full" not in self.records[-1]:
            self._score_full(self.records[-1])
        self.embeddings.setdefault("final", self.embeddings["last"])
        self.seconds += time.perf_counter() - t0


def tracking(history: list[dict]) -> dict:
    """How the eval set's scores rank the run's records against the full test set's (Spearman), per metric."""
    both = [r for r in history if "full" in r]
    return {"n": len(both), **{m: spearman([r["metrics"][m] for r in both], [r["full"][m] for r in both])
                               for m in TARGET_METRICS}}


# -- the runs ------------------------------------------------------------------------------------------------------

class _Bench:
    """What every run of one bench shares: the zoo's base, LoRA settings, the pairs, oracles and init sources."""

    def __init__(self, config: BenchConfig, manifest: dict, generator_dir: Path | None):
        self.config, self.zoo, self.manifest = config, Path(config.zoo), manifest
        self.base_dir, self.pairs_dir = Path(manifest["base"]), Path(manifest["pairs"])
        self.base_meta = read_base_meta(self.base_dir)
        self.lora_settings = LoraSettings.from_dict(manifest.get("lora") or {})
        first = next(c for c in manifest["concepts"].values() if c.get("checkpoints"))
        _, self.adapter_config = read_adapter(self.zoo / first["checkpoints"][-1]["path"])
        self.slot = LoraSlot(self.base_dir, self.adapter_config)
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
        self._pairs: dict[str, ConceptPairs] = {}
        self._sets: dict[str, EvalSets] = {}
        self._oracles: dict[str, dict] = {}

    # -- a concept's pairs, evaluation sets and oracle

    def concept_pairs_dir(self, concept: BenchConcept) -> Path:
        if concept.source == "zoo":
            return self.pairs_dir
        if self.config.concepts_pairs is not None:
            return Path(self.config.concepts_pairs)
        return Path(self.config.out) / PAIRS_DIR / concept.id

    def pairs(self, concept: BenchConcept) -> ConceptPairs:
        if concept.id not in self._pairs:
            root = self.concept_pairs_dir(concept)
            if concept.source == "file" and self.config.concepts_pairs is None:
                self._build_pairs(concept, root)
            pairs = load_concept(root, concept.id)
            size = int(self.base_meta["config"]["generator"]["image_size"])
            if tuple(pairs.test_source.shape[2:]) != (size, size):
                raise WeightgenError(f"pairs of {concept.text!r} in {root} are {tuple(pairs.test_source.shape[2:])}, "
                                     f"the base GAN works at {size}x{size}")
            self._pairs[concept.id] = pairs
        return self._pairs[concept.id]

    def _build_pairs(self, concept: BenchConcept, root: Path) -> None:
        """A concepts-file concept's pairs, built as the zoo's were (its canvases, counts and seed), at the base's size."""
        zoo_pairs = read_pairs_manifest(self.pairs_dir)
        same = {k: zoo_pairs[k] for k in ("canvas_size", "n_train", "n_test", "seed", "test_fraction") if k in zoo_pairs}
        config = PairsConfig(out=str(root), editor=self.config.editor,
                             image_size=int(self.base_meta["config"]["generator"]["image_size"]), **same)
        build_concept_pairs(concept.text, config)

    def sets(self, concept: BenchConcept) -> EvalSets:
        if concept.id not in self._sets:
            self._sets[concept.id] = eval_sets(self.pairs(concept), self.config.eval_pairs, self.config.val_crops,
                                               self.config.seed)
        return self._sets[concept.id]

    def candidates(self, concept: BenchConcept) -> tuple[list[tuple[Path, str, int]], dict]:
        """The oracle's checkpoints ((folder, path as recorded, step) each) and, for a file concept, its reference."""
        if concept.source == "zoo":
            return [(self.zoo / path, path, step) for path, step in concept.checkpoints], {}
        c = self.config
        data = PairedData([self.pairs(concept)])  # built first when the bench makes them
        train = reference_recipe(self.manifest["train"], c.reference_steps, c.cpu)
        settings = reference_settings(train, self.lora_settings, self.base_meta,
                                      sha256_file(self.concept_pairs_dir(concept) / concept.id / PAIRS_FILE))
        folder = Path(c.out) / REFERENCES_DIR / concept.id
        record = make_reference(folder, data, self.base_dir, self.lora_settings, train, settings)
        rel = f"{REFERENCES_DIR}/{concept.id}"
        info = {"steps": record["steps"], "train_seconds": record["train_seconds"], "seconds": record["seconds"]}
        return [(folder / ck["path"], f"{rel}/{ck['path']}", ck["step"]) for ck in record["checkpoints"]], info

    def oracle(self, concept: BenchConcept) -> dict:
        """The concept's oracle, chosen on validation crops and re-measured here, and the targets it sets."""
        if concept.id not in self._oracles:
            checkpoints, reference = self.candidates(concept)
            oracle = measure_oracle(self.slot, self.embedder, self.sets(concept), checkpoints,
                                    self.config.gain_fraction, "zoo" if concept.source == "zoo" else "reference")
            self._oracles[concept.id] = {**oracle, **({"reference": reference} if reference else {})}
        return self._oracles[concept.id]

    # -- one run

    def train_config(self, method: str, caps: dict[str, int]) -> GanTrainConfig:
        c = self.config
        points, _ = evaluation_steps(c, caps)
        return GanTrainConfig(batch_size=c.batch_size, lr=c.scratch_lr if METHODS[method].init is None else c.lr,
                              lr_d=c.lr_d, max_steps=max(c.steps, *caps.values()), max_seconds=c.seconds,
                              eval_every=0, checkpoint_steps=tuple(points), seed=c.seed, cpu=c.cpu)

    def run(self, concept: BenchConcept, method: str, caps: dict[str, int], callback=None) -> dict:
        """Fine-tune one concept from one method's start; returns the result record."""
        t_start = time.perf_counter()
        oracle, sets = self.oracle(concept), self.sets(concept)
        train = self.train_config(method, caps)
        data = PairedData([sets.training_pairs(self.pairs(concept))])
        init = METHODS[method].init
        info: dict = {}
        if init is None:  # pix2pix from scratch: the base's architecture, fresh weights, everything trains
            model_cfg = self.base_meta["config"]
            generator, discriminator = build_models(BaseTrainConfig(
                GeneratorConfig.from_dict(model_cfg["generator"]),
                DiscriminatorConfig.from_dict(model_cfg["discriminator"]), train))
            init_seconds, state_dict = 0.0, None
        else:  # a LoRA on the frozen base, the base's discriminator reloaded fresh for every run
            generator, discriminator = load_base(self.base_dir)
            t0 = time.perf_counter()
            state_dict = init_weights(init, concept.text, self.sources) if init != "zero" else None
            init_seconds = time.perf_counter() - t0
            if init in ("nearest", "nearest-noise"):
                info = describe_nearest(concept.text, self.sources)
        # peft injects the LoRA into `generator` in place, so scoring it scores the model being trained.
        _, full_steps = evaluation_steps(self.config, caps)
        evals = _Evaluations(generator, sets, self.embedder, oracle["targets"], caps, self.config.steps, full_steps,
                             then=callback)
        try:
            if init is None:
                Pix2PixTrainer(generator, discriminator, data, train, callback=evals, progress=False).run_loop()
            else:
                train_lora(generator, discriminator, data, self.lora_settings, train, callback=evals, progress=False,
                           init_weights=(self.adapter_config, state_dict))
        except _Stop:
            pass
        evals.finish()
        trained = (sum(p.numel() for p in generator.parameters() if p.requires_grad) if init is None
                   else count_lora_params(generator))
        return self._result(concept, method, info, trained, init_seconds, caps, evals,
                            time.perf_counter() - t_start)

    def _result(self, concept: BenchConcept, method: str, info: dict, trained: int, init_seconds: float,
                caps: dict[str, int], evals: _Evaluations, wall: float) -> dict:
        oracle, history = self.oracle(concept), evals.records
        final = next((r for r in history if r["step"] == self.config.steps), history[-1])
        hits = {name: first_hit(history, t["value"], init_seconds, t["metric"]).to_dict()
                for name, t in oracle["targets"].items()}
        emb = evals.embeddings
        return {"format": RUN_FORMAT, "version": RUN_VERSION, "weightgen_version": __version__,
                "concept_id": concept.id, "concept": concept.text, "concept_source": concept.source,
                **({"note": concept.note} if concept.note else {}), "method": method, "init_info": info,
                "trained_params": trained, "init_seconds": round(init_seconds, 3), "oracle": oracle, "caps": caps,
                "step0": history[0]["full"], "final": final["full"], "final_step": final["step"],
                "last": history[-1]["full"], "last_step": history[-1]["step"], "hits": hits,
                "hit": hits[PRIMARY_TARGET], "tracking": None if evals.sets.eval_is_full else tracking(history),
                "eval_seconds": round(evals.seconds, 3), "wall_seconds": round(wall, 3),
                "style_embeddings": {"step0": rounded_embeddings(emb["step0"][0]),
                                     "outputs": rounded_embeddings(emb["final"][0]),
                                     "targets": rounded_embeddings(emb["step0"][1])},
                "history": [{"step": r["step"], "seconds": r["seconds"], "metrics": r["metrics"],
                             **({"full": r["full"]} if "full" in r else {}), "losses": r["losses"]}
                            for r in history]}


def run_order(methods: tuple[str, ...]) -> list[str]:
    """The product first (its hits set the baselines' budgets), then the rest in registry order."""
    return sorted(methods, key=lambda m: m != PRODUCT)


def run_bench(config: BenchConfig, progress: bool = True, on_result: ResultFn | None = None) -> dict:
    """Run every missing (concept, method) of this shard, then write the report; returns the report summary."""

    all_concepts, manifest = bench_concepts(config)
    concepts = select_concepts(config, all_concepts)
    check_pairs_hold(config, concepts)
    needs_generator = any(METHODS[m].needs_generator for m in config.methods)
    generator_dir = resolve_generator_dir(config.generator) if needs_generator else None
    prepare_out(config, zoo_identity(manifest), generator_identity(generator_dir) if generator_dir else None)
    runs = [(c, m) for c in concepts for m in run_order(config.methods)]
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


def _product_hits(out: str, concept: BenchConcept) -> dict | None:
    """The product's hits on this concept when its run is on disk (run first, or by an earlier bench on this folder)."""
    path = run_path(out, concept.id, PRODUCT)
    return read_json(path)["hits"] if path.is_file() else None


def _run_all(bench: _Bench, runs: list, todo: list, progress: bool, on_result: ResultFn | None) -> None:
    c = bench.config
    with Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), disable=not progress) as bar:
        task = bar.add_task("", total=len(runs), completed=len(runs) - len(todo))
        for concept, method in todo:
            label = f"{concept.text} / {method}"
            bar.update(task, description=f"{label}: oracle" if concept.id not in bench._oracles else label)
            target = bench.oracle(concept)["targets"][PRIMARY_TARGET]
            caps = target_caps(c, method, _product_hits(c.out, concept))
            last = max(c.steps, *caps.values())

            def show(step: int, rec: dict, label=label, target=target, last=last) -> None:
                bar.update(task, description=f"{label}: step {step}/{last}, L1 {rec['metrics']['l1']:.4f} "
                                             f"(target {target['value']:.4f})")

            bar.update(task, description=f"{label}: starting")
            result = bench.run(concept, method, caps, show)
            write_json(run_path(c.out, concept.id, method), result)
            bar.advance(task)
            if progress:
                hit = result["hit"]
                bar.console.log(f"{label}: " + (f"oracle L1 reached at step {hit['steps']} ({hit['seconds']:.1f} s)"
                                                if hit["reached"] else f"oracle L1 not reached in {hit['budget_steps']} steps")
                                + f", final test L1 {result['final']['l1']:.4f} (oracle {result['oracle']['test']['l1']:.4f})")
            if on_result is not None:
                on_result(result)
