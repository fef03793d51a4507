"""Reading and writing peft LoRA adapter folders without a model in memory.

A folder is what `PeftModel.save_pretrained` writes: adapter_config.json and
adapter_model.safetensors. We read and write it directly so chunks, the generator and `init`
never need to build the GAN just to move weights around; `PeftModel.from_pretrained` loads what
`write_adapter` writes. Pickled adapter_model.bin files are refused: never unpickle weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gan.io import atomic_dir, load_tensors, read_json, save_tensors, write_json
from weightgen.errors import WeightgenError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
SIDECAR_FILE = "weightgen.json"
# adapter_config fields that change what the weights mean; adapters mixed in one dataset must agree.
# r / rank_pattern first, so a rank mismatch is named as one rather than as a shape mismatch.
_COMPAT_FIELDS = (
    "peft_type", "r", "rank_pattern", "lora_alpha", "alpha_pattern", "use_rslora", "use_dora",
    "lora_bias", "fan_in_fan_out", "target_modules", "modules_to_save",
)


def read_adapter(adapter_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, adapter_config) of a peft adapter folder; a clear error names a missing/corrupt file."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise WeightgenError(f"adapter folder not found: {adapter_dir}")
    weights = adapter_dir / WEIGHTS_FILE
    if not weights.is_file() and (adapter_dir / "adapter_model.bin").is_file():
        raise WeightgenError(
            f"{adapter_dir} holds a pickled adapter_model.bin; only safetensors adapters are read "
            "(re-save it with PeftModel.save_pretrained(..., safe_serialization=True))"
        )
    config = read_json(adapter_dir / CONFIG_FILE)
    if not isinstance(config, dict) or "peft_type" not in config:
        raise WeightgenError(f"{adapter_dir / CONFIG_FILE} is not a peft adapter config (no 'peft_type')")
    state_dict = load_tensors(weights)
    if not state_dict:
        raise WeightgenError(f"adapter weights file is empty: {weights}")
    return state_dict, config


def write_adapter(
    state_dict: dict[str, torch.Tensor],
    adapter_config: dict,
    out_dir: str | Path,
    extra_meta: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a peft adapter folder atomically; refuses non-finite weights (never written).

    extra_meta, if given, goes to a weightgen.json sidecar (concept, seed, generator, ...), which
    peft ignores.
    """
    if not isinstance(adapter_config, dict) or "peft_type" not in adapter_config:
        raise WeightgenError("adapter_config must be a peft adapter config dict with a 'peft_type'")
    if not state_dict:
        raise WeightgenError("refusing to write an adapter with no tensors")
    for key, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise WeightgenError(f"adapter value {key!r} is a {type(t).__name__}, not a tensor")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise WeightgenError(f"refusing to write adapter {out_dir}: tensor {key!r} has NaN or Inf values")
    if extra_meta is not None:
        try:
            json.dumps(extra_meta)
        except TypeError as e:
            raise WeightgenError(f"extra_meta for {out_dir} is not JSON serializable: {e}") from None
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_json(tmp / CONFIG_FILE, adapter_config)
        save_tensors(tmp / WEIGHTS_FILE, {k: t.detach().cpu() for k, t in state_dict.items()},
                     metadata={"format": "pt"})
        if extra_meta is not None:
            write_json(tmp / SIDECAR_FILE, extra_meta)
    return out_dir


def _canon(value):
    """Lists that peft writes from sets (target_modules) compare as sets."""
    if isinstance(value, list):
        return sorted(value, key=str)
    return value


def check_adapter_config(config: dict, expected: dict, source: str = "adapter") -> None:
    """Refuse an adapter whose LoRA settings (rank, alpha, targets, ...) differ from `expected`."""
    for name in _COMPAT_FIELDS:
        got, want = _canon(config.get(name)), _canon(expected.get(name))
        if got != want:
            if name == "r":
                raise WeightgenError(f"{source}: LoRA rank r={got}, layout expects r={want}")
            raise WeightgenError(f"{source}: adapter_config {name}={got!r}, layout expects {want!r}")
