"""LoRA training on one concept with the base generator frozen (E2GAN's recipe, and the fine-tune after init).

The LoRA starts either from the fixed-seed init (zero B: the base's output) or from an existing
adapter folder, e.g. one written by the weight generator; the discriminator trains fully,
starting from the base's discriminator when there is one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from torch import nn

from gan.config import GanTrainConfig, LoraSettings
from gan.data import PairedData
from gan.lora import (
    add_lora,
    count_lora_params,
    load_adapter,
    lora_from_state_dict,
    save_adapter,
)
from gan.trainer import CheckpointFn, EvalCallback, Pix2PixTrainer


def train_lora(generator: nn.Module, discriminator: nn.Module, data: PairedData, settings: LoraSettings,
               config: GanTrainConfig, init_adapter: str | Path | None = None, callback: EvalCallback | None = None,
               checkpoint_fn: CheckpointFn | None = None, progress: bool = True,
               init_weights: tuple[dict, dict[str, torch.Tensor] | None] | None = None) -> tuple[PeftModel, list[dict]]:
    """Wrap `generator` (in place) with a LoRA and train it on `data`; returns (peft model, history).

    With `init_adapter` (a folder) or `init_weights` (adapter_config, state dict in memory, e.g.
    generated; a None state dict is peft's fresh init), the LoRA's rank and targets come from there
    and `settings` is not used.
    """
    if init_adapter is not None and init_weights is not None:
        raise ValueError("give init_adapter or init_weights, not both")
    if init_weights is not None:
        adapter_config, state_dict = init_weights
        model = lora_from_state_dict(generator, adapter_config, state_dict, is_trainable=True,
                                     init_seed=settings.init_seed)
    elif init_adapter is not None:
        model = load_adapter(generator, init_adapter, is_trainable=True)
    else:
        model = add_lora(generator, settings)
    trainer = Pix2PixTrainer(model, discriminator, data, config, callback=callback, checkpoint_fn=checkpoint_fn,
                             progress=progress)
    history = trainer.run_loop()
    return trainer.unwrapped_generator, history


def adapter_checkpoints(out_root: str | Path, meta: dict | None = None, overwrite: bool = False) -> CheckpointFn:
    """A checkpoint_fn saving each checkpoint as an adapter folder <out_root>/ckpt-<k> (k = 0, 1, ...).

    The sidecar gets `meta` plus the step, the test metrics at that step and the LoRA size.
    """
    out_root = Path(out_root)
    counter = {"k": 0}

    def save(step: int, model: nn.Module, record: dict) -> None:
        path = out_root / f"ckpt-{counter['k']}"
        save_adapter(model, path, {**(meta or {}), "step": step, "metrics": record["metrics"],
                                   "lora_params": count_lora_params(model)}, overwrite=overwrite)
        counter["k"] += 1

    return save
