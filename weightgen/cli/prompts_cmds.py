"""CLI verbs for the prompts stage: `weightgen prompts build | stats | show | select`."""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress

from prompts.build import BuildConfig, build_command, build_prompt_set
from prompts.concepts import CATEGORIES, load_prompt_set
from prompts.llm import REGISTRY, LLMOptions, make_backend
from prompts.seeds import load_seeds
from weightgen.cli.options import option
from weightgen.errors import WeightgenError

Backend = enum.Enum("Backend", {name: name for name in REGISTRY}, type=str)


def _llm(field: str, *param_decls: str, **kwargs):
    return option(LLMOptions, field, *param_decls, **kwargs)


def _recipe(field: str, *param_decls: str, **kwargs):
    return option(BuildConfig, field, *param_decls, **kwargs)


class SplitChoice(str, enum.Enum):
    train = "train"
    heldout = "heldout"
    all = "all"


def _backend_args(name: str, base_url: str, model: str, model_path: Optional[str], gguf_file: Optional[str], threads: Optional[int]) -> list[str]:
    """The LLM options that matter for `name`, for the recorded build command (never the key)."""
    if name == "openai":
        return ["--base-url", base_url, "--model", model]
    local = ["--threads", str(threads)] if threads else []
    if name == "transformers":
        return ["--model-path", str(model_path)] + (["--gguf-file", gguf_file] if gguf_file else []) + local
    if name == "smollm2":
        return local
    return []


def register(app: typer.Typer) -> None:
    """Add the `prompts` sub-command group to the app."""
    prompts_app = typer.Typer(
        name="prompts",
        help="Concept prompts: build a prompt set with an LLM, inspect it, pick representative concepts.",
        no_args_is_help=True,
    )

    @prompts_app.command("build")
    def build(
        out: Path = typer.Option(..., "--out", "-o", help="Prompt set JSON file to write (atomically: nothing is written on error or Ctrl-C)."),
        generator: Backend = typer.Option(Backend("smollm2"), help="LLM that proposes new concepts per category from the seed lists."),
        augmenter: Backend = typer.Option(Backend("smollm2"), help="LLM that writes paraphrases (the second pass); seed rules fill what it misses."),
        base_url: str = _llm("base_url", help="openai backend: API root of an OpenAI-compatible server."),
        model: str = _llm("model", help="openai backend: model name."),
        api_key_env: str = _llm("api_key_env", help="openai backend: NAME of the environment variable holding the API key."),
        timeout: float = _llm("timeout_s", help="openai backend: seconds before an unreachable endpoint is an error."),
        model_path: Optional[str] = _llm("path", help="transformers backend: local causal LM folder."),
        gguf_file: Optional[str] = _llm("gguf_file", help="transformers backend: GGUF file inside --model-path."),
        device: str = _llm("device", help="Device for local LLMs and the text encoder (cpu, cuda)."),
        threads: Optional[int] = _llm("threads", help="CPU threads for local LLM generation (1 is fastest on a busy shared CPU; default: torch's)."),
        seeds: Optional[Path] = _llm("seeds_path", help="Seed lists JSON (default: the shipped prompts/data/seeds.json)."),
        encoder: str = typer.Option("minilm", help="Text encoder for dedupe and paraphrase checks."),
        seed: int = _recipe("seed", help="Seed for sampling, template picks and the split."),
        llm_rounds: int = _recipe("llm_rounds", help="Generator requests per category."),
        llm_batch: int = _recipe("llm_batch", help="Concepts asked for per generator request."),
        variants: int = _recipe("variants_per_category", help="Template variants added per category."),
        paraphrases: int = _recipe("n_paraphrases", help="Paraphrases kept per concept."),
        llm_paraphrase_limit: int = _recipe("llm_paraphrase_limit", help="Concepts the augmenter LLM paraphrases (rules do the rest)."),
        compositions: int = _recipe("n_compositions", help="Cross-category combinations ('van gogh style, at night')."),
        dup_threshold: float = _recipe("dup_threshold", help="Cosine similarity at or above which two concepts are duplicates."),
        heldout_fraction: float = _recipe("heldout_fraction", help="Target held-out share per category (compositions follow their parts)."),
        overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
    ) -> None:
        """Build a prompt set: generate, augment, combine, dedupe, validate and split concepts."""
        from weightgen.text_encoders import load_text_encoder

        if out.exists() and not overwrite:
            raise WeightgenError(f"output file already exists: {out} (pass --overwrite to replace it)")
        config = BuildConfig(
            seed=seed, llm_rounds=llm_rounds, llm_batch=llm_batch, variants_per_category=variants,
            n_paraphrases=paraphrases, llm_paraphrase_limit=llm_paraphrase_limit, n_compositions=compositions,
            dup_threshold=dup_threshold, heldout_fraction=heldout_fraction,
        )
        options = LLMOptions(base_url=base_url, model=model, api_key_env=api_key_env, timeout_s=timeout,
                             path=model_path, gguf_file=gguf_file, device=device, threads=threads, seeds_path=str(seeds) if seeds else None)
        extra = []
        for name in dict.fromkeys([generator.value, augmenter.value]):
            extra += _backend_args(name, base_url, model, model_path, gguf_file, threads)
        if seeds:
            extra += ["--seeds", str(seeds)]
        command = build_command(config, generator.value, augmenter.value, str(out), extra)

        start = time.perf_counter()
        with Progress(transient=False) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            loading = bar.add_task("load models", total=None)
            gen_backend = make_backend(generator.value, options)
            aug_backend = gen_backend if augmenter == generator else make_backend(augmenter.value, options)
            text_encoder = load_text_encoder(encoder, device=device)
            bar.update(loading, total=1, completed=1)
            prompt_set = build_prompt_set(config, gen_backend, aug_backend, text_encoder, seeds=load_seeds(seeds),
                                          command=command, progress=progress)
        prompt_set.save(out)
        stats = prompt_set.stats()
        print(f"wrote {out}: {stats['concepts']} concepts ({stats['heldout']} held out) in {time.perf_counter() - start:.0f} s")

    @prompts_app.command("stats")
    def stats(path: Optional[Path] = typer.Argument(None, help="Prompt set file (default: the shipped concepts-v1.json).")) -> None:
        """Print counts of a prompt set as JSON: concepts per category and split, paraphrases."""
        prompt_set = load_prompt_set(path)
        print(json.dumps({**prompt_set.stats(), "build_command": prompt_set.build_command}, indent=2))

    @prompts_app.command("show")
    def show(
        path: Optional[Path] = typer.Argument(None, help="Prompt set file (default: the shipped concepts-v1.json)."),
        split: SplitChoice = typer.Option(SplitChoice.all, help="Which split to list."),
        category: Optional[str] = typer.Option(None, help="Only this category (style, character, appearance)."),
        limit: int = typer.Option(0, help="Show at most this many concepts (0 = all)."),
        paraphrases: bool = typer.Option(False, help="Also print each concept's paraphrases."),
    ) -> None:
        """List concepts, one per line: split, category, text (and paraphrases)."""
        if category is not None and category not in CATEGORIES:
            raise WeightgenError(f"unknown category {category!r}; choose one of {CATEGORIES}")
        concepts = load_prompt_set(path).concepts
        concepts = [c for c in concepts if (split == SplitChoice.all or c.split == split.value) and (category is None or c.category == category)]
        for c in concepts[: limit or None]:
            line = f"{c.split:8s} {c.category:11s} {c.text}"
            if paraphrases:
                line += "  |  " + " | ".join(c.paraphrases)
            print(line)

    @prompts_app.command("select")
    def select(
        k: int = typer.Argument(..., help="How many representative concepts to pick."),
        path: Optional[Path] = typer.Option(None, "--path", help="Prompt set file (default: the shipped concepts-v1.json)."),
        split: SplitChoice = typer.Option(SplitChoice.train, help="Pick among this split (train: base-model concepts must be training concepts)."),
        singles_only: bool = typer.Option(True, help="Ignore compositions ('a, b')."),
        encoder: str = typer.Option("minilm", help="Text encoder for the embeddings."),
        seed: int = typer.Option(0, help="k-means seed."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {id, text, category}."),
    ) -> None:
        """Pick K representative concepts by k-means over text embeddings (E2GAN's base concepts)."""
        from prompts.select import select_representative
        from weightgen.text_encoders import load_text_encoder

        concepts = [c for c in load_prompt_set(path).concepts if split == SplitChoice.all or c.split == split.value]
        if singles_only:
            concepts = [c for c in concepts if not c.components]
        chosen = [concepts[i] for i in select_representative([c.text for c in concepts], k, load_text_encoder(encoder), seed=seed)]
        if as_json:
            print(json.dumps([{"id": c.id, "text": c.text, "category": c.category} for c in chosen], indent=2))
        else:
            for c in chosen:
                print(f"{c.category:11s} {c.text}")

    app.add_typer(prompts_app, name="prompts")
