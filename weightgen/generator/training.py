"""Training the weight generator on a chunk dataset, with accelerate.

    trainer = GeneratorTrainer(GeneratorTrainConfig(steps=20_000), load_chunk_dataset("chunks"), "runs/gen")
    trainer.resume()            # picks up runs/gen/training/state.json if there is one
    trainer.run_loop()          # -> runs/gen/generator (a folder `weightgen init` loads)

Out folder:
  generator/                 the generator folder (EMA weights), rewritten at every checkpoint
  training/state.json        the one source of resume state: step, current checkpoint, config
  training/ckpt-<step>/      model / ema / optimizer safetensors (+ optimizer.json)
  training/log.jsonl         losses and validation metrics

Every step draws its batch, timesteps and noise from generators seeded by (seed, step, rank), so
a resumed run follows exactly the trajectory of an uninterrupted one without saving RNG state.
Multi-process runs go through `accelerate launch --multi_gpu --num_processes K` (with
Accelerator(cpu=True) for CPU ranks over gloo; note `accelerate launch --cpu` alone starts one
process) or torchrun; gradients are averaged by DDP.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import shutil
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from gan.io import atomic_dir, load_tensors, read_json, save_tensors, write_json
from prompts.identity import stable_seed
from weightgen.chunks.dataset import ChunkData, load_chunk_dataset
from weightgen.errors import WeightgenError
from weightgen.generator.config import (
    MODEL_SIZES,
    RESUMABLE_CHANGES,
    GeneratorTrainConfig,
)
from weightgen.generator.diffusion import WeightDiffusion
from weightgen.generator.network import WeightUNet1D
from weightgen.generator.pipeline import WeightGenPipeline
from weightgen.text_encoders import (
    TextEncoder,
    encode_concepts,
    load_text_encoder,
    pad_tokens,
)

STATE_FORMAT = "weightgen-generator-training"
GenerateFn = Callable[[list[str]], "list[dict[str, torch.Tensor]]"]
ValidateFn = Callable[[int, GenerateFn], dict[str, float]]

class EMA:
    """Exponential moving average of a model's parameters (float32 shadow copies).

    The decay warms up as min(decay, (1 + k) / (10 + k)) so early averages are not dominated by
    the random initialization.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters()}

    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1 - d)

    def copy_to(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            p.data.copy_(self.shadow[name].to(p.dtype))


def _step_seed(seed: int, step: int, rank: int, what: str) -> int:
    return stable_seed(seed, step, rank, what, sep="/")


def validation_concepts(concepts: list[str], n: int, seed: int = 0) -> list[str]:
    """The `n` training concepts a run keeps out of training (seeded, so the CLI and trainer agree)."""
    if n >= len(concepts):
        raise WeightgenError(f"val_concepts={n} leaves nothing to train on: the dataset has {len(concepts)} concepts")
    return sorted(random.Random(seed).sample(list(concepts), n), key=list(concepts).index)


def _optimizer_to_files(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict as safetensors tensors + JSON (no pickle)."""
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().cpu()
            else:
                meta["state"].setdefault(str(pid), {})[key] = value
    return tensors, meta


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta.get("state", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


class GeneratorTrainer:
    """run_loop -> run_step -> forward_backward, plus EMA, checkpoint/resume and validation."""

    def __init__(
        self,
        config: GeneratorTrainConfig,
        data: ChunkData,
        out_dir: str | Path,
        text_encoder: TextEncoder | None = None,
        validate: ValidateFn | None = None,
        accelerator=None,
    ):
        if len(data) == 0:
            raise WeightgenError("the chunk dataset is empty: nothing to train on")
        self.val_texts = []  # training concepts kept out, to validate on
        if config.val_concepts:
            self.val_texts = validation_concepts(data.concepts, config.val_concepts, config.seed)
            data = _without_concepts(data, self.val_texts)
        self.config, self.data, self.layout = config, data, data.layout
        self.out_dir = Path(out_dir)
        self.state_dir = self.out_dir / "training"
        self.validate_fn = validate
        self.acc = accelerator or Accelerator(cpu=config.cpu, mixed_precision=config.mixed_precision)
        dev = self.acc.device

        # 1. frozen text encoder: every training concept encoded once, kept in memory
        self.encoder = text_encoder or load_text_encoder(config.text_encoder, config.text_encoder_path)
        if self.encoder.name != config.text_encoder:
            raise WeightgenError(f"config names text encoder {config.text_encoder!r}, got a {self.encoder.name!r} encoder")
        tokens, mask = encode_concepts(self.encoder, data.concepts)
        null = self.encoder.encode_null()
        T = max(tokens.shape[1], null.tokens.shape[1])
        tokens, mask = pad_tokens(tokens, mask, T)
        null_tokens, null_mask = pad_tokens(null.tokens.float().cpu(), null.mask.cpu(), T)
        self.text_tokens, self.text_mask = tokens.to(dev), mask.to(dev)  # (C, T, D), (C, T)
        self.null_tokens, self.null_mask = null_tokens.to(dev), null_mask.to(dev)  # (1, T, D), (1, T)
        self.blocks = data.blocks.to(dev)  # (M, b) normalized
        self.block_index = data.block_index.to(dev)
        self.concept_index = data.concept_index.to(dev)

        # 2. network, EMA copy, optimizer; the noise process
        with torch.random.fork_rng(devices=[]):  # seeded init, without touching the caller's RNG
            torch.manual_seed(config.seed)
            model = WeightUNet1D(
                **MODEL_SIZES[config.model_size],
                block_size=self.layout.block_size,
                text_dim=self.encoder.dim,
                max_chunk_index=self.layout.n_blocks,
            )
        self.ema = EMA(model, config.ema_decay)
        # fused: one kernel for all parameters; the loop over ~200 small tensors dominates small models
        fused = {"fused": True} if dev.type in ("cpu", "cuda") else {}
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **fused)
        self.model, self.opt = self.acc.prepare(model, opt)
        self.diffusion = WeightDiffusion(config.diffusion)
        self.step = 0
        self.history: list[dict] = []

    @property
    def unwrapped(self):
        return self.acc.unwrap_model(self.model)

    # ---- the loop -------------------------------------------------------------------------

    def run_loop(self, progress: bool = True) -> Path:
        """Train up to config.steps, checkpointing and validating on the way; returns the generator folder."""
        cfg = self.config
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train generator", unit="step",
                   disable=not (progress and self.acc.is_main_process))
        while self.step < cfg.steps:
            losses = self.run_step()
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                # every rank takes part in the reduction, at the same (deterministic) steps
                logged = {k: float(self.acc.reduce(v.detach(), reduction="mean")) for k, v in losses.items()}
                bar.set_postfix(loss=f"{logged['loss']:.4f}")
                self._log({"step": self.step, "lr": cfg.lr_at(self.step - 1), **logged})
            if cfg.validate_every and self.step % cfg.validate_every == 0 and self.step < cfg.steps:
                self.validate()
            if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                self.save_checkpoint()
        bar.close()
        if self.validate_fn is not None:
            self.validate()
        self.save_checkpoint()
        return self.out_dir / "generator"

    def run_step(self) -> dict[str, torch.Tensor]:
        for group in self.opt.param_groups:
            group["lr"] = self.config.lr_at(self.step)
        losses = self.forward_backward(self._batch())
        self.step += 1
        return losses

    def _batch(self) -> tuple[dict, "torch.Tensor", "torch.Generator"]:
        """This rank's blocks for this step, from a generator seeded by (seed, step, rank)."""
        cfg, rank, dev = self.config, self.acc.process_index, self.acc.device
        g = torch.Generator().manual_seed(_step_seed(cfg.seed, self.step, rank, "batch"))
        idx = torch.randint(0, self.blocks.shape[0], (cfg.batch_size,), generator=g).to(dev)
        concepts, text_index = torch.unique(self.concept_index[idx], return_inverse=True)
        tokens, mask = self.text_tokens[concepts], self.text_mask[concepts]  # (U, T, D), (U, T): this batch's
        if cfg.text_dropout > 0:  # some concepts see the empty prompt: the model also learns "no concept"
            drop = (torch.rand(len(concepts), generator=g) < cfg.text_dropout).to(dev)  # (U,)
            tokens = torch.where(drop[:, None, None], self.null_tokens, tokens)
            mask = torch.where(drop[:, None], self.null_mask, mask)
        kwargs = {
            "block_index": self.block_index[idx],  # (B,)
            "text_tokens": tokens,  # (U, T, D)
            "text_mask": mask,  # (U, T)
            "text_index": text_index,  # (B,)
        }
        noise_gen = torch.Generator(device=dev).manual_seed(_step_seed(cfg.seed, self.step, rank, "noise"))
        return kwargs, self.blocks[idx][:, None, :], noise_gen  # x0: (B, 1, b)

    def forward_backward(self, batch) -> dict[str, torch.Tensor]:
        kwargs, x0, noise_gen = batch
        self.model.train()
        with self.acc.autocast():
            losses = self.diffusion.training_losses(self.model, x0, kwargs, generator=noise_gen)
        self.acc.backward(losses["loss"])
        if self.config.grad_clip > 0:
            self.acc.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.unwrapped)
        return losses

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if self.acc.is_main_process:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.state_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    # ---- generation with the EMA weights --------------------------------------------------

    def pipeline(self) -> WeightGenPipeline:
        """A generation pipeline on a copy of the network carrying the EMA weights."""
        model = copy.deepcopy(self.unwrapped).eval()
        self.ema.copy_to(model)
        return WeightGenPipeline(model, self.encoder, self.layout, self.diffusion, {"step": self.step})

    def validate(self) -> dict[str, float]:
        """Call the validation callback (main process only) with a `generate(concepts)` function."""
        metrics: dict[str, float] = {}
        if self.validate_fn is not None and self.acc.is_main_process:
            pipe = self.pipeline()
            metrics = dict(self.validate_fn(self.step, lambda concepts: pipe.generate(list(concepts))))
            self._log({"step": self.step, "validation": metrics})
            if metrics:
                tqdm.write(f"step {self.step} validation: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        self.acc.wait_for_everyone()
        return metrics

    # ---- checkpoints ----------------------------------------------------------------------

    def _state_path(self) -> Path:
        return self.state_dir / "state.json"

    def save_checkpoint(self) -> None:
        """Write ckpt-<step>, then state.json pointing at it (the commit point), then the generator folder."""
        if self.acc.is_main_process:
            name = f"ckpt-{self.step:07d}"
            previous = read_json(self._state_path()) if self._state_path().is_file() else {}
            with atomic_dir(self.state_dir / name, overwrite=True) as tmp:
                save_tensors(tmp / "model.safetensors", self.unwrapped.state_dict())
                save_tensors(tmp / "ema.safetensors", self.ema.shadow)
                opt_tensors, opt_meta = _optimizer_to_files(self.opt.state_dict())
                save_tensors(tmp / "optimizer.safetensors", opt_tensors)
                write_json(tmp / "optimizer.json", opt_meta)
            kept = [c for c in previous.get("checkpoints", []) if c != name] + [name]
            dropped, kept = kept[: -self.config.keep_checkpoints], kept[-self.config.keep_checkpoints :]
            write_json(self._state_path(), {
                "format": STATE_FORMAT,
                "version": 1,
                "step": self.step,
                "checkpoint": name,
                "checkpoints": kept,
                "ema_updates": self.ema.updates,
                "num_processes": self.acc.num_processes,
                "layout_fingerprint": self.layout.fingerprint,
                "text_encoder": self.encoder.fingerprint,
                "config": self.config.to_dict(),
            })
            for old in dropped:
                shutil.rmtree(self.state_dir / old, ignore_errors=True)
            self.pipeline().save_pretrained(self.out_dir / "generator", extra_info=self.generator_info())
        self.acc.wait_for_everyone()

    def generator_info(self) -> dict:
        return {
            "training": self.config.to_dict(),
            "step": self.step,
            "num_processes": self.acc.num_processes,
            "concepts": list(self.data.concepts),
            "validation_concepts": list(self.val_texts),
        }

    def resume(self) -> bool:
        """Load training/state.json and its checkpoint if present; False when starting fresh."""
        path = self._state_path()
        if not path.is_file():
            return False
        state = read_json(path)
        if state.get("format") != STATE_FORMAT:
            raise WeightgenError(f"{path} is not a generator training state file")
        if state.get("layout_fingerprint") != self.layout.fingerprint:
            raise WeightgenError(
                f"cannot resume {self.out_dir}: it was trained on chunk layout {state.get('layout_fingerprint')!r}, "
                f"these chunks have layout {self.layout.fingerprint!r}"
            )
        recorded = state.get("text_encoder") or {}
        for key in ("name", "version", "dim"):
            if recorded.get(key) != self.encoder.fingerprint.get(key):
                raise WeightgenError(
                    f"cannot resume {self.out_dir}: it was trained with text encoder {key} "
                    f"{recorded.get(key)!r}, this one has {self.encoder.fingerprint.get(key)!r}"
                )
        saved = dict(state.get("config", {}))
        now = self.config.to_dict()
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
        if changed:
            k = changed[0]
            raise WeightgenError(
                f"cannot resume {self.out_dir}: {k} was {saved.get(k)!r}, now {now[k]!r} "
                f"(only {', '.join(RESUMABLE_CHANGES)} may change on resume)"
            )
        ckpt = self.state_dir / str(state.get("checkpoint"))
        if not (ckpt / "model.safetensors").is_file():
            raise WeightgenError(f"{path} points at checkpoint {ckpt}, which is missing or incomplete")
        self.unwrapped.load_state_dict(load_tensors(ckpt / "model.safetensors"))
        ema = load_tensors(ckpt / "ema.safetensors")
        if set(ema) != set(self.ema.shadow):
            raise WeightgenError(f"{ckpt / 'ema.safetensors'} does not match the network's parameters")
        self.ema.shadow = {k: v.to(self.acc.device) for k, v in ema.items()}
        self.ema.updates = int(state["ema_updates"])
        opt_state = _optimizer_from_files(load_tensors(ckpt / "optimizer.safetensors"), read_json(ckpt / "optimizer.json"))
        self.opt.load_state_dict(opt_state)
        self.step = int(state["step"])
        return True


def _without_concepts(data: ChunkData, texts: list[str]) -> ChunkData:
    """The dataset without these concepts' blocks (concept indices renumbered)."""

    keep = [i for i, c in enumerate(data.concepts) if c not in set(texts)]
    remap = torch.full((len(data.concepts),), -1, dtype=torch.long)
    remap[keep] = torch.arange(len(keep))
    rows = remap[data.concept_index] >= 0
    return dataclasses.replace(
        data, blocks=data.blocks[rows], block_index=data.block_index[rows],
        concept_index=remap[data.concept_index[rows]], checkpoint_index=data.checkpoint_index[rows],
        concepts=[data.concepts[i] for i in keep],
        concept_ids=[data.concept_ids[i] for i in keep] if data.concept_ids else [],
    )


def train_generator(
    chunks_dir: str | Path,
    out_dir: str | Path,
    config: GeneratorTrainConfig,
    resume: bool = False,
    validate: ValidateFn | None = None,
    progress: bool = True,
    text_encoder: TextEncoder | None = None,
) -> Path:
    """Train on a chunk dataset folder; returns out_dir/generator. Refuses a used out_dir unless resume."""
    out_dir = Path(out_dir)
    if (out_dir / "training" / "state.json").is_file() and not resume:
        raise WeightgenError(f"{out_dir} already holds a training run; pass --resume to continue it or pick another --out")
    data = load_chunk_dataset(chunks_dir)
    trainer = GeneratorTrainer(config, data, out_dir, text_encoder=text_encoder, validate=validate)
    if resume and not trainer.resume() and trainer.acc.is_main_process:
        print(f"no training state in {out_dir}; starting fresh")
    return trainer.run_loop(progress=progress)
