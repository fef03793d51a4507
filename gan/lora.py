"""LoRA on the generator through peft: inject with a fixed init, save/load standard adapter folders.

An adapter folder is exactly what `PeftModel.save_pretrained` writes (adapter_config.json +
adapter_model.safetensors), so `PeftModel.from_pretrained(base, dir)` loads it with no code of
ours. Next to it sits `weightgen.json`, a sidecar naming the base it was trained on:

  {"format": "weightgen-gan-adapter", "version": 1, "base_fingerprint": "<architecture sha>",
   "base_weights_hash": "<weights sha>", ...free meta: concept, step, metrics...}

`load_adapter` refuses an adapter whose sidecar names another base, instead of producing images
from mismatched weights.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from peft import (
    LoraConfig,
    PeftModel,
    get_peft_config,
    get_peft_model,
    set_peft_model_state_dict,
)
from peft.utils import get_peft_model_state_dict
from torch import nn

from gan import __version__
from gan.config import LoraSettings
from gan.errors import GanError
from gan.io import atomic_dir, load_tensors, read_json, write_json

ADAPTER_META = "weightgen.json"
ADAPTER_FORMAT = "weightgen-gan-adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def lora_config(settings: LoraSettings) -> LoraConfig:
    """The peft LoraConfig for these settings (zero-initialized B, so a fresh adapter equals the base)."""
    return LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=list(settings.target_modules), rank_pattern=dict(settings.rank_pattern),
                      bias="none", init_lora_weights=True)


def add_lora(generator: nn.Module, settings: LoraSettings) -> PeftModel:
    """Wrap `generator` (modified in place) with a trainable LoRA; the base weights are frozen.

    The LoRA A matrices are drawn right after seeding with `settings.init_seed` (in a forked RNG, so
    the caller's random stream is untouched): every concept starts from the same point, which is
    what puts all the zoo's adapters into one aligned weight space.
    """
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.init_seed)
            return get_peft_model(generator, lora_config(settings))
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        raise GanError(f"cannot put LoRA on this generator: {_first_line(e)}") from None


def _base_model(model: nn.Module) -> nn.Module:
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Base weights under their plain names (peft renames wrapped layers to `<name>.base_layer`)."""
    return {k.replace(".base_layer", ""): v for k, v in _base_model(model).state_dict().items() if "lora_" not in k}


def fingerprint(model: nn.Module) -> str:
    """sha256 (16 hex) of the architecture: class, config and parameter names/shapes; weights excluded."""
    base = _base_model(model)
    # Options added after checkpoints were fingerprinted leave the fingerprint alone when off, so
    # those checkpoints (and the LoRAs recorded against them) keep matching.
    neutral = getattr(type(base), "fingerprint_neutral", {})
    config = {k: v for k, v in dict(getattr(base, "config", {})).items()
              if not k.startswith("_") and not (k in neutral and v == neutral[k])}
    shapes = sorted((k, list(v.shape)) for k, v in _base_state(model).items())
    blob = json.dumps({"class": type(base).__name__, "config": config, "params": shapes}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def weights_hash(model: nn.Module) -> str:
    """sha256 (16 hex) of the base weights' bytes (LoRA excluded): tells two trainings of one architecture apart."""
    h = hashlib.sha256()
    for key, value in sorted(_base_state(model).items()):
        h.update(key.encode())
        h.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def count_lora_params(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def adapter_sidecar(model: nn.Module, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The weightgen.json of an adapter on this base: format, the base's fingerprint and weights hash, + meta."""
    return {"format": ADAPTER_FORMAT, "version": 1, "weightgen_version": __version__,
            "base_fingerprint": fingerprint(model), "base_weights_hash": weights_hash(model), **(meta or {})}


def save_adapter(peft_model: PeftModel, out_dir: str | Path, meta: dict[str, Any] | None = None,
                 overwrite: bool = False) -> Path:
    """Write a standard peft adapter folder + the weightgen.json sidecar, atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        peft_model.save_pretrained(str(tmp))
        write_json(tmp / ADAPTER_META, adapter_sidecar(peft_model, meta))
    return out_dir


def read_adapter_meta(adapter_dir: str | Path) -> dict:
    """The sidecar's content, or {} for a plain peft folder without one."""
    path = Path(adapter_dir) / ADAPTER_META
    return read_json(path) if path.exists() else {}


def _first_line(error: BaseException) -> str:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    # torch's load_state_dict puts the useful part ("size mismatch for ...") on the second line.
    useful = [ln for ln in lines if "size mismatch" in ln or "Missing key" in ln or "not found" in ln]
    return (useful or lines or [type(error).__name__])[0]


def check_adapter_dir(adapter_dir: str | Path, base: nn.Module, check_weights: bool = True) -> None:
    """Refuse a missing/incomplete folder or one whose sidecar names a different base."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise GanError(f"adapter folder not found: {adapter_dir}")
    for name in ADAPTER_FILES:
        if not (adapter_dir / name).is_file():
            raise GanError(f"not a peft adapter folder: {adapter_dir} has no {name}")
    meta = read_adapter_meta(adapter_dir)
    trained_for, this = meta.get("base_fingerprint"), fingerprint(base)
    if trained_for and trained_for != this:
        raise GanError(f"adapter {adapter_dir} was trained for base {trained_for}, this base is {this} "
                             f"(a different generator architecture)")
    trained_on, these = meta.get("base_weights_hash"), weights_hash(base) if check_weights else None
    if check_weights and trained_on and trained_on != these:
        raise GanError(f"adapter {adapter_dir} was trained for base weights {trained_on}, these base "
                             f"weights are {these} (another training of the base)")


def load_adapter(base: nn.Module, adapter_dir: str | Path, is_trainable: bool = False,
                 check_weights: bool = True) -> PeftModel:
    """Load an adapter onto `base` (modified in place; reload the base after a failure) with clear errors.

    `is_trainable=True` keeps the LoRA trainable: that is how a generated adapter becomes the init
    of a fine-tune. `check_weights=False` accepts an adapter trained on other weights of the same
    architecture.
    """
    adapter_dir = Path(adapter_dir)
    check_adapter_dir(adapter_dir, base, check_weights)
    config = read_json(adapter_dir / "adapter_config.json")
    if config.get("peft_type") != "LORA":
        raise GanError(f"adapter {adapter_dir} is a {config.get('peft_type')!r} adapter, expected LORA")
    stored = load_tensors(adapter_dir / "adapter_model.safetensors")  # clear error when corrupt
    try:
        with warnings.catch_warnings():  # peft only warns about absent tensors; we check and raise below
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=is_trainable)
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        raise GanError(f"adapter {adapter_dir} does not fit this base generator: {_first_line(e)}") from None
    # peft loads non-strictly and only warns about absent tensors; a partial adapter is a wrong result.
    expected = set(get_peft_model_state_dict(model))
    missing, extra = sorted(expected - set(stored)), sorted(set(stored) - expected)
    if missing or extra:
        raise GanError(f"adapter {adapter_dir} does not match this base: "
                             f"{len(missing)} missing tensors {missing[:2]}, {len(extra)} unexpected {extra[:2]}")
    return model


def lora_from_state_dict(base: nn.Module, adapter_config: dict, state_dict: dict[str, torch.Tensor] | None = None,
                         is_trainable: bool = True, init_seed: int = 0) -> PeftModel:
    """Wrap `base` (in place) with the LoRA an adapter_config describes, holding `state_dict`.

    This is how weights that exist only in memory (generated, zoo mean, nearest + noise) become a
    model; with `state_dict=None` the LoRA keeps peft's fresh init drawn after seeding `init_seed`
    (zero B: the base's output), as `add_lora` does.
    """
    config = {k: v for k, v in adapter_config.items() if k not in ("auto_mapping", "base_model_name_or_path")}
    config["inference_mode"] = not is_trainable
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = get_peft_model(base, get_peft_config(config))
    except (ValueError, TypeError) as e:
        raise GanError(f"cannot put this LoRA on the base generator: {_first_line(e)}") from None
    if state_dict is not None:
        expected = set(get_peft_model_state_dict(model))
        missing, extra = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        if missing or extra:
            raise GanError(f"LoRA weights do not match this base: {len(missing)} missing tensors "
                                 f"{missing[:2]}, {len(extra)} unexpected {extra[:2]}")
        set_peft_model_state_dict(model, state_dict)
    if is_trainable:
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
    return model
