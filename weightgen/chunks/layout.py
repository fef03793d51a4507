"""The chunk layout: how one LoRA adapter becomes N equal blocks of b values, and back.

Per adapted layer, the LoRA down (lora_A) and up (lora_B) matrices, plus any other tensors the
adapter saves for that module (norm parameters from `modules_to_save`, DoRA magnitudes, LoRA
biases), form one group. A group is flattened in a fixed key order, zero padded to a multiple of
b and cut into blocks, so no block mixes two layers: the chunk index then tells the generator
which layer (and which part of it) it is writing. The layout also carries per-tensor
normalization statistics measured on the training zoo, because lora_A and lora_B live on very
different scales and a diffusion model wants inputs of unit scale.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch

from gan.io import read_json, write_json
from weightgen.chunks.config import validate_block_size
from weightgen.errors import WeightgenError

LAYOUT_FORMAT = "weightgen-chunk-layout"
LAYOUT_VERSION = 1
# A std below this is a constant tensor (e.g. an untouched norm bias): scale it by 1, not by ~0.
STD_EPS = 1e-8
# Blocks hold float32; these dtypes convert to float32 and back without losing a bit.
EXACT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# peft keys of the low-rank factors, down (A) then up (B); everything else follows, sorted.
_ROLE_ORDER = ("lora_A", "lora_embedding_A", "lora_B", "lora_embedding_B")
_LORA_KEY = re.compile(r"^(?P<module>.+?)\.(?P<role>lora_[A-Za-z_]+?)(?:\.(?P<param>weight|bias))?$")
_PEFT_PREFIX = "base_model.model."


@dataclass
class TensorSpec:
    """One tensor inside a group: where its values sit in the group's flat vector."""

    key: str  # the adapter's state-dict key
    role: str  # "lora_A", "lora_B", "weight", ... (for messages)
    shape: tuple[int, ...]
    dtype: str  # a key of EXACT_DTYPES
    offset: int  # first value inside the group's flat vector
    mean: float = 0.0  # normalization statistics over the training zoo (identity until fitted)
    std: float = 1.0

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class GroupSpec:
    """One adapted layer: its tensors flattened back to back, padded to whole blocks."""

    name: str  # module path without peft's "base_model.model." prefix
    tensors: list[TensorSpec]
    first_block: int
    n_blocks: int
    padding: int  # zeros appended after the last tensor

    @property
    def numel(self) -> int:
        return sum(t.numel for t in self.tensors)


def _natural_key(text: str) -> list:
    """'up.10' after 'up.2': layers keep their model order, not the string order."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def split_key(key: str) -> tuple[str, str]:
    """(module path, role) of a peft adapter key, e.g. ('base_model.model.conv', 'lora_A')."""
    m = _LORA_KEY.match(key)
    if m:
        role = m["role"] if m["param"] in (None, "weight") else f"{m['role']}.{m['param']}"
        return m["module"], role
    module, _, param = key.rpartition(".")
    return (module, param) if module else (key, key)


def _role_rank(role: str) -> int:
    return _ROLE_ORDER.index(role) if role in _ROLE_ORDER else len(_ROLE_ORDER)


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


@dataclass
class ChunkLayout:
    """Maps an adapter's state dict to (N, block_size) blocks; see the module docstring."""

    block_size: int
    groups: list[GroupSpec]
    adapter_config: dict = field(default_factory=dict)  # peft adapter_config.json, to write adapters back
    base_fingerprint: str = ""  # the base GAN the adapters belong to
    stats_checkpoints: int = 0  # how many zoo checkpoints the statistics were fitted on (0: identity)
    # The base identity from the zoo adapters' weightgen.json sidecar (format, base_fingerprint,
    # base_weights_hash): pass it in write_adapter's extra_meta so generated adapters name their base.
    adapter_meta: dict = field(default_factory=dict)

    # ----------------------------------------------------------------------------- building
    @classmethod
    def from_state_dict(
        cls,
        state_dict: dict[str, torch.Tensor],
        block_size: int = 256,
        adapter_config: dict | None = None,
        base_fingerprint: str = "",
    ) -> ChunkLayout:
        """The layout of one adapter's state dict (identity normalization until fitted)."""
        if not state_dict:
            raise WeightgenError("cannot build a chunk layout from an empty state dict")
        modules: dict[str, list[tuple[str, str]]] = {}
        for key, t in state_dict.items():
            if not isinstance(t, torch.Tensor):
                raise WeightgenError(f"state dict value of {key!r} is a {type(t).__name__}, not a tensor")
            dtype = str(t.dtype).removeprefix("torch.")
            if dtype not in EXACT_DTYPES:
                raise WeightgenError(
                    f"tensor {key!r} has dtype {dtype}; chunks hold float32, so only "
                    f"{sorted(EXACT_DTYPES)} round-trip exactly"
                )
            module, role = split_key(key)
            modules.setdefault(module, []).append((role, key))
        largest = max(sum(state_dict[k].numel() for _, k in items) for items in modules.values())
        validate_block_size(block_size, largest)

        groups, next_block = [], 0
        for module in sorted(modules, key=_natural_key):
            items = sorted(modules[module], key=lambda rk: (_role_rank(rk[0]), rk[1]))
            tensors, offset = [], 0
            for role, key in items:
                t = state_dict[key]
                tensors.append(TensorSpec(key, role, tuple(t.shape), str(t.dtype).removeprefix("torch."), offset))
                offset += t.numel()
            n_blocks = -(-offset // block_size)
            name = module.removeprefix(_PEFT_PREFIX)
            groups.append(GroupSpec(name, tensors, next_block, n_blocks, n_blocks * block_size - offset))
            next_block += n_blocks
        return cls(block_size, groups, dict(adapter_config or {}), base_fingerprint)

    # ----------------------------------------------------------------------------- facts
    @property
    def n_blocks(self) -> int:
        return sum(g.n_blocks for g in self.groups)

    @property
    def n_params(self) -> int:
        """Real (unpadded) values in one adapter."""
        return sum(g.numel for g in self.groups)

    @property
    def tensors(self) -> list[TensorSpec]:
        return [t for g in self.groups for t in g.tensors]

    @property
    def fingerprint(self) -> str:
        """Identity of the block space: keys, shapes and block size (not the statistics)."""
        spec = {"block_size": self.block_size, "tensors": [[t.key, list(t.shape)] for t in self.tensors]}
        return hashlib.sha256(json.dumps(spec, separators=(",", ":")).encode()).hexdigest()[:16]

    @property
    def block_group(self) -> torch.Tensor:
        """(N,) long: the group id of every block."""
        return torch.repeat_interleave(
            torch.arange(len(self.groups)), torch.tensor([g.n_blocks for g in self.groups])
        )

    def block_info(self, index: int) -> dict:
        """What block `index` holds: its group, the tensor slices inside it, its padding."""
        if not 0 <= index < self.n_blocks:
            raise WeightgenError(f"block index {index} out of range [0, {self.n_blocks})")
        g = self.groups[int(self.block_group[index])]
        start = (index - g.first_block) * self.block_size
        stop = start + self.block_size
        pieces = []
        for t in g.tensors:
            lo, hi = max(start, t.offset), min(stop, t.offset + t.numel)
            if lo < hi:
                pieces.append({"key": t.key, "start": lo - t.offset, "stop": hi - t.offset, "at": lo - start})
        return {"group": g.name, "tensors": pieces, "padding": max(0, stop - g.numel)}

    # ----------------------------------------------------------------------------- checks
    def check_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Refuse a state dict of another architecture, rank or dtype, naming the first mismatch."""
        expected = {t.key: t for t in self.tensors}
        missing = [k for k in expected if k not in state_dict]
        extra = [k for k in state_dict if k not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} key(s) of the layout, e.g. {missing[0]!r}")
            if extra:
                parts.append(f"has {len(extra)} key(s) the layout lacks, e.g. {extra[0]!r}")
            raise WeightgenError(f"{source}: different architecture: " + "; ".join(parts))
        for g in self.groups:
            for spec in g.tensors:
                t = state_dict[spec.key]
                if tuple(t.shape) != spec.shape:
                    raise WeightgenError(
                        f"{source}: {spec.role} of layer {g.name} has shape {_shape_str(t.shape)}, "
                        f"layout expects {_shape_str(spec.shape)}"
                    )
                dtype = str(t.dtype).removeprefix("torch.")
                if dtype != spec.dtype:
                    raise WeightgenError(
                        f"{source}: {spec.role} of layer {g.name} has dtype {dtype}, layout expects {spec.dtype}"
                    )

    def check_base(self, base: dict, what: str = "these weights") -> None:
        """Refuse a base GAN other than the one these blocks' adapters were trained on.

        `base` is a base folder's weightgen.json content ({"fingerprint", "weights_hash", ...}).
        Weights laid out for another base would load (same shapes) and mean nothing.
        """
        want = self.base_fingerprint or self.adapter_meta.get("base_fingerprint", "")
        if want and base.get("fingerprint") != want:
            raise WeightgenError(f"base GAN mismatch: {what} belong to base {want}, "
                                 f"the given base is {base.get('fingerprint')!r}")
        want_w = self.adapter_meta.get("base_weights_hash")
        if want_w and base.get("weights_hash") and base["weights_hash"] != want_w:
            raise WeightgenError(f"base GAN mismatch: {what} were trained on base weights {want_w}, "
                                 f"the given base has weights {base['weights_hash']}")

    def check_blocks(self, blocks: torch.Tensor, what: str = "blocks") -> None:
        if not isinstance(blocks, torch.Tensor) or blocks.dim() < 2:
            raise WeightgenError(f"{what} must be a tensor of shape (..., {self.n_blocks}, {self.block_size})")
        if blocks.shape[-1] != self.block_size:
            raise WeightgenError(
                f"{what} have width {blocks.shape[-1]}, but the layout's block size is {self.block_size}"
            )
        if blocks.shape[-2] != self.n_blocks:
            raise WeightgenError(f"{what} hold {blocks.shape[-2]} blocks, the layout has {self.n_blocks}")

    # ----------------------------------------------------------------------------- conversion
    def to_blocks(self, state_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, b) float32 raw values, zero padded; bit exact for float32/16 and bfloat16 tensors."""
        self.check_state_dict(state_dict)
        flat = torch.zeros(self.n_blocks * self.block_size, dtype=torch.float32)
        for g in self.groups:
            base = g.first_block * self.block_size
            for t in g.tensors:
                start = base + t.offset
                flat[start : start + t.numel] = state_dict[t.key].detach().reshape(-1).to("cpu", torch.float32)
        return flat.view(self.n_blocks, self.block_size)

    def from_blocks(self, blocks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Exact inverse of `to_blocks`: (N, b) raw blocks -> {key: tensor} in the adapter's dtypes."""
        self.check_blocks(blocks)
        if blocks.dim() != 2:
            raise WeightgenError(f"from_blocks takes one adapter's (N, b) blocks, got shape {tuple(blocks.shape)}")
        flat = blocks.detach().to("cpu", torch.float32).reshape(-1)
        out = {}
        for g in self.groups:
            base = g.first_block * self.block_size
            for t in g.tensors:
                start = base + t.offset
                # clone: views into one buffer would share storage, which safetensors refuses
                out[t.key] = flat[start : start + t.numel].reshape(t.shape).to(EXACT_DTYPES[t.dtype]).clone()
        return out

    # ----------------------------------------------------------------------------- normalization
    @cached_property
    def _tensor_map(self) -> torch.Tensor:
        """(N*b,) long: which tensor (index into self.tensors) each value belongs to, -1 for padding."""
        ids = torch.full((self.n_blocks * self.block_size,), -1, dtype=torch.long)
        i = 0
        for g in self.groups:
            base = g.first_block * self.block_size
            for t in g.tensors:
                ids[base + t.offset : base + t.offset + t.numel] = i
                i += 1
        return ids

    @cached_property
    def _stat_maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, b) float64 mean and scale per value; padding gets (0, 1) so it stays zero."""
        means = torch.tensor([t.mean for t in self.tensors] + [0.0], dtype=torch.float64)
        scales = torch.tensor([t.std if t.std > STD_EPS else 1.0 for t in self.tensors] + [1.0], dtype=torch.float64)
        ids = self._tensor_map.clone()
        ids[ids < 0] = len(self.tensors)
        shape = (self.n_blocks, self.block_size)
        return means[ids].view(shape), scales[ids].view(shape)

    @cached_property
    def _device_maps(self) -> dict:
        return {}

    def _maps_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The stat maps on `device`, cached: training moves them once, not every batch."""
        key = str(device)
        if key not in self._device_maps:
            dtype = torch.float32 if device.type == "mps" else torch.float64  # mps has no float64
            self._device_maps[key] = tuple(m.to(device, dtype) for m in self._stat_maps)
        return self._device_maps[key]

    def _maps_for(self, blocks: torch.Tensor, block_index: torch.Tensor | None):
        if block_index is None:
            self.check_blocks(blocks)
            return self._maps_on(blocks.device)
        block_index = torch.as_tensor(block_index, dtype=torch.long)
        if blocks.dim() != 2 or blocks.shape[-1] != self.block_size or blocks.shape[0] != block_index.shape[0]:
            raise WeightgenError(
                f"blocks of shape {tuple(blocks.shape)} do not match block_index of shape "
                f"{tuple(block_index.shape)} and block size {self.block_size}"
            )
        if block_index.numel() and (block_index.min() < 0 or block_index.max() >= self.n_blocks):
            raise WeightgenError(f"block_index out of range [0, {self.n_blocks})")
        mean, scale = self._maps_on(blocks.device)
        block_index = block_index.to(blocks.device)
        return mean[block_index], scale[block_index]

    def normalize(self, blocks: torch.Tensor, block_index: torch.Tensor | None = None) -> torch.Tensor:
        """Per-tensor standardization. blocks (..., N, b), or (M, b) rows with their block_index (M,)."""
        mean, scale = self._maps_for(blocks, block_index)
        return ((blocks.to(mean.dtype) - mean) / scale).to(blocks.dtype)

    def denormalize(self, blocks: torch.Tensor, block_index: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse of `normalize` (float64 inside, so the round trip stays within 1e-6)."""
        mean, scale = self._maps_for(blocks, block_index)
        return (blocks.to(mean.dtype) * scale + mean).to(blocks.dtype)

    def fit_statistics(self, blocks: torch.Tensor) -> ChunkLayout:
        """A copy of this layout with per-tensor mean/std measured on raw blocks (K, N, b)."""
        self.check_blocks(blocks, "training blocks")
        blocks = blocks.reshape(-1, self.n_blocks * self.block_size)
        k, ids = blocks.shape[0], self._tensor_map
        keep = ids >= 0
        n_t = len(self.tensors)
        idx = ids[keep].repeat(k)
        values = blocks[:, keep].reshape(-1).double()
        counts = torch.bincount(idx, minlength=n_t).double()
        means = torch.bincount(idx, weights=values, minlength=n_t) / counts
        # two passes (center, then square): exact enough even when a mean dwarfs its spread
        var = torch.bincount(idx, weights=(values - means[idx]) ** 2, minlength=n_t) / counts
        stds = var.sqrt()
        it = iter(range(n_t))
        groups = []
        for g in self.groups:
            tensors = []
            for t in g.tensors:
                i = next(it)
                tensors.append(replace(t, mean=float(means[i]), std=float(stds[i])))
            groups.append(replace(g, tensors=tensors))
        return replace(self, groups=groups, stats_checkpoints=k)

    # ----------------------------------------------------------------------------- files
    def to_dict(self) -> dict:
        return {
            "format": LAYOUT_FORMAT,
            "version": LAYOUT_VERSION,
            "fingerprint": self.fingerprint,
            "block_size": self.block_size,
            "n_blocks": self.n_blocks,
            "n_params": self.n_params,
            "base_fingerprint": self.base_fingerprint,
            "stats_checkpoints": self.stats_checkpoints,
            "adapter_meta": self.adapter_meta,
            "groups": [
                {
                    "name": g.name,
                    "first_block": g.first_block,
                    "n_blocks": g.n_blocks,
                    "numel": g.numel,
                    "padding": g.padding,
                    "tensors": [
                        {"key": t.key, "role": t.role, "shape": list(t.shape), "dtype": t.dtype,
                         "offset": t.offset, "numel": t.numel, "mean": t.mean, "std": t.std}
                        for t in g.tensors
                    ],
                }
                for g in self.groups
            ],
            "adapter_config": self.adapter_config,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "layout") -> ChunkLayout:
        if not isinstance(d, dict) or d.get("format") != LAYOUT_FORMAT:
            raise WeightgenError(f"{source} is not a weightgen chunk layout (format {d.get('format')!r})"
                                 if isinstance(d, dict) else f"{source} is not a weightgen chunk layout")
        if d.get("version") != LAYOUT_VERSION:
            raise WeightgenError(f"{source} has layout version {d.get('version')!r}; this weightgen reads {LAYOUT_VERSION}")
        try:
            groups = [
                GroupSpec(
                    g["name"],
                    [TensorSpec(t["key"], t["role"], tuple(t["shape"]), t["dtype"], t["offset"],
                                float(t["mean"]), float(t["std"])) for t in g["tensors"]],
                    g["first_block"], g["n_blocks"], g["padding"],
                )
                for g in d["groups"]
            ]
            layout = cls(d["block_size"], groups, d.get("adapter_config", {}), d.get("base_fingerprint", ""),
                         d.get("stats_checkpoints", 0), d.get("adapter_meta", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise WeightgenError(f"{source} is malformed: {e!r}") from None
        if layout.fingerprint != d.get("fingerprint"):
            raise WeightgenError(
                f"{source} was edited or corrupted: fingerprint {d.get('fingerprint')!r} does not match "
                f"its tensors ({layout.fingerprint})"
            )
        return layout

    def save(self, out_dir: str | Path) -> Path:
        """Write out_dir/layout.json (atomically)."""
        path = Path(out_dir) / "layout.json"
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ChunkLayout:
        """Read a layout folder (or the layout.json file itself)."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / "layout.json"
        return cls.from_dict(read_json(path), source=str(path))
