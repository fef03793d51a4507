"""A training run's resumable state, as safetensors + JSON: no pickle (a state folder is data, not code).

Folder layout (replaced atomically at each save, so a kill leaves the previous save whole):
  <state>/tensors.safetensors   G and D weights, both Adam states, the sampler's RNG and epoch order
  <state>/state.json            step, training seconds, history, the loss sums since the last record,
                                the optimizers' param groups, and the run's config (checked on resume)

What a resume restores is everything the loop reads, so a resumed run takes the same batches and
reaches the same weights as one that was never stopped. Single process only: under several
processes each rank's sampler is its own, and a resume would need every rank's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gan.errors import GanError
from gan.io import atomic_dir, load_tensors, read_json, save_tensors, write_json

if TYPE_CHECKING:
    from gan.trainer import Pix2PixTrainer

STATE_FORMAT = "weightgen-train-state"
TENSORS, META = "tensors.safetensors", "state.json"
RESUMABLE_CHANGES = ("max_steps", "max_seconds", "eval_every")  # a resume may extend the run, nothing else


def _optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
    state = optimizer.state_dict()
    tensors = {f"{prefix}.{index}.{name}": value.detach().cpu().contiguous()
               for index, slots in state["state"].items() for name, value in slots.items()}
    return tensors, state["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, prefix: str, tensors: dict, groups: list) -> None:
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            index, name = key[len(prefix) + 1:].split(".", 1)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": groups})


def run_config(trainer: "Pix2PixTrainer") -> dict:
    """The settings a resume must share with the saved run (the recipe minus what may extend it)."""
    config = {k: v for k, v in trainer.config.to_dict().items() if k not in RESUMABLE_CHANGES}
    # as JSON gives it back (tuples become lists), so a saved config compares equal to a rebuilt one
    return json.loads(json.dumps({"train": config, "n_train": trainer.data.n_train, "n_test": trainer.data.n_test}))


def save_state(folder: str | Path, trainer: "Pix2PixTrainer", extra: dict | None = None) -> None:
    """Write the trainer's state to `folder` (replacing the previous save only once this one is whole)."""
    if trainer.accelerator.num_processes > 1:
        raise GanError("resumable training state is single-process only")
    generator = trainer.accelerator.unwrap_model(trainer.generator)
    discriminator = trainer.accelerator.unwrap_model(trainer.discriminator)
    tensors = {f"G.{k}": v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tensors.update({f"D.{k}": v.detach().cpu().contiguous() for k, v in discriminator.state_dict().items()})
    opt_g, groups_g = _optimizer_tensors(trainer.opt_g, "opt_g")
    opt_d, groups_d = _optimizer_tensors(trainer.opt_d, "opt_d")
    sampler = trainer.sampler.state_dict()
    tensors.update({**opt_g, **opt_d, "sampler.rng": sampler["rng"], "sampler.order": sampler["order"]})
    meta = {"format": STATE_FORMAT, "version": 1, "step": trainer.step, "seconds": trainer.seconds,
            "history": trainer.history, "loss_sums": trainer._loss_sums, "loss_count": trainer._loss_count,
            "param_groups": {"opt_g": groups_g, "opt_d": groups_d}, "config": run_config(trainer),
            **(extra or {})}
    with atomic_dir(folder, overwrite=True) as tmp:
        save_tensors(tmp / TENSORS, tensors)
        write_json(tmp / META, meta)


def read_state_meta(folder: str | Path) -> dict | None:
    """The saved run's state.json, or None when `folder` holds no state."""
    path = Path(folder) / META
    if not path.is_file():
        return None
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise GanError(f"{path} is not a weightgen training state")
    return meta


def load_state(folder: str | Path, trainer: "Pix2PixTrainer") -> dict | None:
    """Restore a saved run into `trainer` (built with the same recipe); returns its meta, or None if none."""
    meta = read_state_meta(folder)
    if meta is None:
        return None
    saved, now = meta["config"], run_config(trainer)
    if saved != now:
        changed = sorted(k for k in {**saved["train"], **now["train"]} if saved["train"].get(k) != now["train"].get(k))
        changed += [k for k in ("n_train", "n_test") if saved[k] != now[k]]
        raise GanError(f"the training state in {folder} was saved by a run with other settings ({', '.join(changed)}); "
                       "use the same settings to resume, or delete the folder to start over")
    tensors = load_tensors(Path(folder) / TENSORS)
    for prefix, model in (("G", trainer.generator), ("D", trainer.discriminator)):
        part = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        trainer.accelerator.unwrap_model(model).load_state_dict(part)
    _load_optimizer(trainer.opt_g, "opt_g", tensors, meta["param_groups"]["opt_g"])
    _load_optimizer(trainer.opt_d, "opt_d", tensors, meta["param_groups"]["opt_d"])
    trainer.sampler.load_state_dict({"rng": tensors["sampler.rng"], "order": tensors["sampler.order"]})
    trainer.step, trainer.seconds, trainer.history = int(meta["step"]), float(meta["seconds"]), list(meta["history"])
    trainer._loss_sums, trainer._loss_count = dict(meta["loss_sums"]), int(meta["loss_count"])
    return meta
