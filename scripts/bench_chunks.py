"""Chunk stage on a synthetic zoo shaped like the real one: the default gan.Generator with its default
LoRA (gan.config.LoraSettings), 64 training concepts x K=5 checkpoints of random LoRA weights
(concept centre + checkpoint noise), written with peft save_pretrained. Measures layout size and
`weightgen chunks` wall time (build + stats). Usage: python bench_chunks.py [block_size]"""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict

from gan.config import LoraSettings
from gan.generator import Generator
from gan.lora import add_lora
from weightgen.chunks.dataset import build_chunk_dataset, load_chunk_dataset
from weightgen.chunks.stats import chunk_stats

block = int(sys.argv[1]) if len(sys.argv) > 1 else 256
root = Path(tempfile.mkdtemp())
torch.manual_seed(0)
model = add_lora(Generator(), LoraSettings())
template = get_peft_model_state_dict(model)
concepts = {}
t0 = time.perf_counter()
for c in range(64):
    gc = torch.Generator().manual_seed(c)
    centre = {k: torch.randn(v.shape, generator=gc) * (0.1 if "lora_A" in k else 0.01) for k, v in template.items()}
    ckpts = []
    for k in range(5):
        gn = torch.Generator().manual_seed(1000 * c + k)
        set_peft_model_state_dict(model, {n: v + 0.2 * v.std() * torch.randn(v.shape, generator=gn) for n, v in centre.items()})
        rel = f"c{c}/ckpt-{k}"
        model.save_pretrained(str(root / rel))
        ckpts.append({"path": rel, "step": k})
    concepts[f"c{c}"] = {"text": f"concept {c}", "split": "train", "checkpoints": ckpts}
(root / "manifest.json").write_text(json.dumps({"format": "weightgen-zoo", "version": 1, "concepts": concepts}))
print(f"wrote synthetic zoo (320 adapters) in {time.perf_counter() - t0:.1f} s")
t0 = time.perf_counter()
out = build_chunk_dataset(root, root / "chunks", block_size=block, progress=False)
t_build = time.perf_counter() - t0
t0 = time.perf_counter()
data = load_chunk_dataset(out)
t_load = time.perf_counter() - t0
t0 = time.perf_counter()
stats = chunk_stats(root, block_size=block)
t_stats = time.perf_counter() - t0
lay = data.layout
print(f"block size {block}: {len(lay.groups)} groups, {lay.n_params} values/adapter "
      f"({stats['total_lora_params']} LoRA), N={lay.n_blocks} blocks, padding {stats['padding_fraction']:.1%}; "
      f"dataset {tuple(data.blocks.shape)}, {(out / 'chunks.safetensors').stat().st_size / 2**20:.1f} MiB")
print(f"build {t_build:.2f} s, load {t_load:.2f} s, stats {t_stats:.2f} s")
print("distances (normalized):", {k: round(v, 3) for k, v in stats["distances_normalized"].items()})
shutil.rmtree(root)
