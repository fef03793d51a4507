"""Chunk layout and dataset on tiny zoos of real peft adapters (Conv2d + Linear + a saved norm)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from weightgen.chunks.adapters import read_adapter, write_adapter
from weightgen.chunks.config import validate_block_size
from weightgen.chunks.dataset import build_chunk_dataset, load_chunk_dataset
from weightgen.chunks.layout import ChunkLayout
from weightgen.chunks.stats import chunk_stats
from weightgen.errors import USER_ERRORS

# Group sizes of Tiny with r=2: conv 54+16=70, conv2 144+16=160, fc 16+8=24, norm 8+8=16.
BLOCK = 16
N_BLOCKS = 5 + 10 + 2 + 1
TRAIN = {"van-gogh-aaaa": "van gogh style", "pencil-bbbb": "pencil sketch", "snow-cccc": "snowy winter"}
HELDOUT = {"sepia-dddd": "sepia photo"}
K = 2


class Tiny(nn.Module):
    def __init__(self, fc_out: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, fc_out)

    def forward(self, x):  # (B, 3, H, W) -> (B, fc_out)
        x = self.conv2(torch.relu(self.norm(self.conv(x))))
        return self.fc(x.mean((2, 3)))


def base_model(fc_out: int = 4) -> Tiny:
    torch.manual_seed(0)
    return Tiny(fc_out)


def peft_model(r: int = 2, fc_out: int = 4):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["conv", "conv2", "fc"], modules_to_save=["norm"])
    return get_peft_model(base_model(fc_out), config)


def save_checkpoint(model, out_dir, seed: int, center_seed: int, base_hash: str = "w1") -> None:
    """Concept `center_seed` plus checkpoint noise; lora_A and lora_B on very different scales."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    sd = get_peft_model_state_dict(model)
    g_center = torch.Generator().manual_seed(center_seed)
    g_noise = torch.Generator().manual_seed(seed)
    new = {}
    for key, t in sd.items():
        scale = 0.3 if "lora_A" in key else 0.02 if "lora_B" in key else 0.1
        offset = 1.0 if key.endswith("norm.weight") else 0.0
        center = torch.randn(t.shape, generator=g_center) * scale + offset
        new[key] = center + 0.2 * scale * torch.randn(t.shape, generator=g_noise)
    set_peft_model_state_dict(model, new)
    model.save_pretrained(str(out_dir))
    sidecar = {"format": "weightgen-gan-adapter", "version": 1, "base_fingerprint": "abc123",
               "base_weights_hash": base_hash, "step": seed}  # like gan.lora.save_adapter writes
    (out_dir / "weightgen.json").write_text(json.dumps(sidecar))


def make_zoo(root, r: int = 2) -> None:
    model = peft_model(r)
    concepts = {}
    for i, (cid, text) in enumerate({**TRAIN, **HELDOUT}.items()):
        split = "train" if cid in TRAIN else "heldout"
        ckpts = []
        for k in range(K if split == "train" else 1):
            rel = f"{cid}/ckpt-{k}"
            save_checkpoint(model, root / rel, seed=100 * i + k, center_seed=i)
            ckpts.append({"path": rel, "step": 10 * (k + 1), "metrics": {"l1": 0.1}})
        concepts[cid] = {"text": text, "split": split, "checkpoints": ckpts}
    manifest = {"format": "weightgen-zoo", "version": 1, "base": "base", "base_fingerprint": "abc123",
                "lora": {"r": r}, "concepts": concepts}
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    make_zoo(root)
    return root


@pytest.fixture(scope="module")
def dataset(zoo, tmp_path_factory):
    return build_chunk_dataset(zoo, tmp_path_factory.mktemp("chunks") / "ds", block_size=BLOCK, progress=False)


def copy_zoo(zoo, tmp_path):
    dst = tmp_path / "zoo"
    shutil.copytree(zoo, dst)
    return dst


# ------------------------------------------------------------------------------------ layout


def test_layout_groups_blocks_and_padding(zoo):
    sd, config = read_adapter(zoo / "van-gogh-aaaa/ckpt-0")
    layout = ChunkLayout.from_state_dict(sd, BLOCK, config)
    assert [g.name for g in layout.groups] == ["conv", "conv2", "fc", "norm"]
    assert [t.role for t in layout.groups[0].tensors] == ["lora_A", "lora_B"]
    assert [(g.first_block, g.n_blocks, g.padding) for g in layout.groups] == [(0, 5, 10), (5, 10, 0), (15, 2, 8), (17, 1, 0)]
    assert layout.n_blocks == N_BLOCKS and layout.n_params == 70 + 160 + 24 + 16
    assert layout.block_group.tolist() == [0] * 5 + [1] * 10 + [2] * 2 + [3]
    info = layout.block_info(4)  # last block of conv: 6 values of lora_B, then 10 zeros
    assert info == {"group": "conv", "tensors": [{"key": "base_model.model.conv.lora_B.weight", "start": 10,
                                                   "stop": 16, "at": 0}], "padding": 10}


def test_round_trip_is_bit_exact(zoo, tmp_path):
    sd, config = read_adapter(zoo / "pencil-bbbb/ckpt-1")
    layout = ChunkLayout.from_state_dict(sd, BLOCK, config)
    blocks = layout.to_blocks(sd)
    assert blocks.shape == (N_BLOCKS, BLOCK) and blocks.dtype == torch.float32
    assert (blocks[4, 6:] == 0).all() and (blocks[16, 8:] == 0).all()  # padding
    back = layout.from_blocks(blocks)
    assert back.keys() == sd.keys()
    for key in sd:
        assert back[key].dtype == sd[key].dtype and torch.equal(back[key], sd[key]), key
    write_adapter(back, config, tmp_path / "out", extra_meta={"concept": "pencil sketch"})
    again, config2 = read_adapter(tmp_path / "out")
    assert config2 == config and all(torch.equal(again[k], sd[k]) for k in sd)
    assert json.loads((tmp_path / "out/weightgen.json").read_text()) == {"concept": "pencil sketch"}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_round_trip_half_precision(zoo, dtype):
    sd, _ = read_adapter(zoo / "snow-cccc/ckpt-0")
    sd = {k: v.to(dtype) for k, v in sd.items()}
    layout = ChunkLayout.from_state_dict(sd, BLOCK)
    back = layout.from_blocks(layout.to_blocks(sd))
    assert all(back[k].dtype == dtype and torch.equal(back[k], sd[k]) for k in sd)


def test_layout_save_load_and_tamper(zoo, tmp_path):
    sd, config = read_adapter(zoo / "snow-cccc/ckpt-0")
    layout = ChunkLayout.from_state_dict(sd, BLOCK, config, "base-fp")
    layout.save(tmp_path)
    assert ChunkLayout.load(tmp_path) == layout
    assert ChunkLayout.from_state_dict(sd, 2 * BLOCK).fingerprint != layout.fingerprint
    d = json.loads((tmp_path / "layout.json").read_text())
    d["groups"][0]["tensors"][0]["shape"] = [3, 3, 3, 3]
    (tmp_path / "layout.json").write_text(json.dumps(d))
    with pytest.raises(USER_ERRORS, match="edited or corrupted"):
        ChunkLayout.load(tmp_path)


@pytest.mark.parametrize("bad, message", [
    (0, "at least 8"), (-256, "at least 8"), (7, "at least 8"), (256.5, "integer"), ("256", "integer"),
    (True, "integer"), (1024, "over twice the largest group \\(160 values\\)"),
])
def test_bad_block_size(zoo, bad, message):
    sd, _ = read_adapter(zoo / "snow-cccc/ckpt-0")
    with pytest.raises(USER_ERRORS, match=message):
        ChunkLayout.from_state_dict(sd, bad)
    assert validate_block_size(256) == 256


def test_from_blocks_refuses_other_block_size(zoo):
    sd, _ = read_adapter(zoo / "snow-cccc/ckpt-0")
    layout = ChunkLayout.from_state_dict(sd, BLOCK)
    other = ChunkLayout.from_state_dict(sd, 32).to_blocks(sd)
    with pytest.raises(USER_ERRORS, match="width 32, but the layout's block size is 16"):
        layout.from_blocks(other)
    with pytest.raises(USER_ERRORS, match="hold 17 blocks"):
        layout.from_blocks(layout.to_blocks(sd)[:-1])


def test_write_adapter_refuses_nan_and_existing_folder(zoo, tmp_path):
    sd, config = read_adapter(zoo / "snow-cccc/ckpt-0")
    bad = dict(sd)
    bad["base_model.model.fc.lora_B.weight"] = torch.full((4, 2), float("nan"))
    with pytest.raises(USER_ERRORS, match="fc.lora_B.weight.*NaN"):
        write_adapter(bad, config, tmp_path / "nan")
    assert not (tmp_path / "nan").exists()
    write_adapter(sd, config, tmp_path / "ok")
    with pytest.raises(USER_ERRORS, match="already exists"):
        write_adapter(sd, config, tmp_path / "ok")
    write_adapter(sd, config, tmp_path / "ok", overwrite=True)


# ------------------------------------------------------------------------------------ dataset


def test_dataset_shapes_indices_and_stats(zoo, dataset):
    data = load_chunk_dataset(dataset)
    n_ckpt = len(TRAIN) * K
    assert data.blocks.shape == (n_ckpt * N_BLOCKS, BLOCK) and data.blocks.dtype == torch.float32
    assert data.concepts == list(TRAIN.values()) and data.concept_ids == list(TRAIN)  # held-out left out
    assert data.block_index.tolist() == list(range(N_BLOCKS)) * n_ckpt
    assert data.concept_index.tolist() == [c for c in range(len(TRAIN)) for _ in range(K * N_BLOCKS)]
    assert data.checkpoint_index.tolist() == [i for i in range(n_ckpt) for _ in range(N_BLOCKS)]
    assert data.checkpoints[1] == "van-gogh-aaaa/ckpt-1"
    layout = data.layout
    assert layout.base_fingerprint == "abc123" and layout.stats_checkpoints == n_ckpt
    assert layout.adapter_config["r"] == 2
    assert layout.adapter_meta == {"format": "weightgen-gan-adapter", "version": 1, "base_fingerprint": "abc123",
                                   "base_weights_hash": "w1"}
    # per-tensor standardization: every tensor has mean 0 / std 1 over the zoo, padding stays 0
    rows = data.blocks.view(n_ckpt, N_BLOCKS * BLOCK)
    for i, t in enumerate(layout.tensors):
        values = rows[:, layout._tensor_map == i]
        assert abs(float(values.mean())) < 1e-5 and abs(float(values.std(unbiased=False)) - 1) < 1e-4, t.key
    assert (rows[:, layout._tensor_map < 0] == 0).all()
    a, b = (next(t for t in layout.tensors if t.key.endswith(f"conv2.lora_{x}.weight")) for x in "AB")
    assert a.std > 5 * b.std  # why the statistics are per tensor, not per group


def test_normalized_round_trip_within_1e6(zoo, dataset):
    data = load_chunk_dataset(dataset)
    for i, path in enumerate(data.checkpoints):
        sd, _ = read_adapter(zoo / path)
        rows = data.blocks[data.checkpoint_index == i]
        back = data.layout.from_blocks(data.layout.denormalize(rows))
        assert max(float((back[k] - sd[k]).abs().max()) for k in sd) < 1e-6
        # the block_index form used by the generator's training batches agrees
        picked = torch.tensor([3, 0, 17])
        assert torch.equal(data.layout.denormalize(rows[picked], picked), data.layout.denormalize(rows)[picked])


def test_written_adapter_loads_in_peft_with_identical_outputs(zoo, dataset, tmp_path):
    from peft import PeftModel

    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ref_dir = zoo / "van-gogh-aaaa/ckpt-1"
    with torch.no_grad():
        ref = PeftModel.from_pretrained(base_model(), str(ref_dir)).eval()(x)
        sd, config = read_adapter(ref_dir)
        layout = ChunkLayout.from_state_dict(sd, BLOCK, config)
        write_adapter(layout.from_blocks(layout.to_blocks(sd)), config, tmp_path / "exact")
        exact = PeftModel.from_pretrained(base_model(), str(tmp_path / "exact")).eval()(x)
        data = load_chunk_dataset(dataset)
        rows = data.blocks[data.checkpoint_index == 1]
        write_adapter(data.layout.from_blocks(data.layout.denormalize(rows)), data.layout.adapter_config,
                      tmp_path / "denorm")
        denorm = PeftModel.from_pretrained(base_model(), str(tmp_path / "denorm")).eval()(x)
        zero = base_model()(x)
    assert torch.equal(exact, ref)
    assert torch.allclose(denorm, ref, atol=1e-5)
    assert not torch.allclose(zero, ref, atol=1e-3)  # the adapter really changes the model


def test_stats_separate_concepts(zoo):
    stats = chunk_stats(zoo, block_size=BLOCK)
    assert stats["n_checkpoints"] == len(TRAIN) * K and stats["n_blocks"] == N_BLOCKS
    assert stats["total_params"] == 270 and stats["total_lora_params"] == 254
    assert [g["name"] for g in stats["groups"]] == ["conv", "conv2", "fc", "norm"]
    for space in ("raw", "normalized"):
        d = stats[f"distances_{space}"]
        assert d["between_concept_l2"] > 3 * d["within_concept_l2"] > 0


# ------------------------------------------------------------------------------------ refusals


def _replace_ckpt(zoo, rel, r=2, fc_out=4):
    shutil.rmtree(zoo / rel)
    save_checkpoint(peft_model(r, fc_out), zoo / rel, seed=7, center_seed=1)


def test_refuses_other_rank(zoo, tmp_path):
    z = copy_zoo(zoo, tmp_path)
    _replace_ckpt(z, "pencil-bbbb/ckpt-1", r=4)
    with pytest.raises(USER_ERRORS, match="checkpoint pencil-bbbb/ckpt-1: LoRA rank r=4, layout expects r=2"):
        build_chunk_dataset(z, tmp_path / "out", block_size=BLOCK, progress=False)
    assert not (tmp_path / "out").exists()


def test_refuses_other_architecture(zoo, tmp_path):
    z = copy_zoo(zoo, tmp_path)
    _replace_ckpt(z, "snow-cccc/ckpt-0", fc_out=5)
    with pytest.raises(USER_ERRORS,
                       match=r"checkpoint snow-cccc/ckpt-0: lora_B of layer fc has shape \(5, 2\), layout expects \(4, 2\)"):
        build_chunk_dataset(z, tmp_path / "out", block_size=BLOCK, progress=False)


def test_refuses_adapters_of_another_base(zoo, tmp_path):
    z = copy_zoo(zoo, tmp_path)
    shutil.rmtree(z / "snow-cccc/ckpt-1")
    save_checkpoint(peft_model(), z / "snow-cccc/ckpt-1", seed=7, center_seed=1, base_hash="w2")
    with pytest.raises(USER_ERRORS, match="snow-cccc/ckpt-1: trained for base_weights_hash 'w2'.*'w1'"):
        build_chunk_dataset(z, tmp_path / "out", block_size=BLOCK, progress=False)


def test_refuses_missing_layer(zoo, tmp_path):
    z = copy_zoo(zoo, tmp_path)
    sd, config = read_adapter(z / "snow-cccc/ckpt-0")
    del sd["base_model.model.fc.lora_A.weight"]
    write_adapter(sd, config, z / "snow-cccc/ckpt-0", overwrite=True)
    with pytest.raises(USER_ERRORS, match="snow-cccc/ckpt-0: different architecture: missing 1 key.*fc.lora_A"):
        build_chunk_dataset(z, tmp_path / "out", block_size=BLOCK, progress=False)


def test_corrupt_adapter_file_is_named(zoo, tmp_path):
    z = copy_zoo(zoo, tmp_path)
    (z / "pencil-bbbb/ckpt-0/adapter_model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(USER_ERRORS, match="corrupt weights file .*pencil-bbbb/ckpt-0/adapter_model.safetensors"):
        build_chunk_dataset(z, tmp_path / "out", block_size=BLOCK, progress=False)
    assert not (tmp_path / "out").exists()
    (z / "pencil-bbbb/ckpt-0/adapter_model.safetensors").unlink()
    with pytest.raises(USER_ERRORS, match="missing weights file: .*pencil-bbbb/ckpt-0"):
        build_chunk_dataset(z, tmp_path / "out", block_size=BLOCK, progress=False)


def test_load_refuses_layout_of_other_block_size(zoo, dataset, tmp_path):
    other = build_chunk_dataset(zoo, tmp_path / "b32", block_size=32, progress=False)
    mixed = tmp_path / "mixed"
    shutil.copytree(dataset, mixed)
    shutil.copy(other / "layout.json", mixed / "layout.json")
    with pytest.raises(USER_ERRORS, match="blocks of shape \\(108, 16\\), but layout.json has block size 32"):
        load_chunk_dataset(mixed)


def test_bad_zoo_manifest(tmp_path):
    with pytest.raises(USER_ERRORS, match="zoo folder not found"):
        build_chunk_dataset(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "weightgen-zoo", "version": 1, "concepts": {}}))
    with pytest.raises(USER_ERRORS, match="no 'train' checkpoints"):
        build_chunk_dataset(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------------------------ CLI


def test_cli_chunks(zoo, tmp_path, capsys):
    from weightgen.cli import main

    with pytest.raises(SystemExit) as e:
        main(["chunks", "--zoo", str(zoo), "--out", str(tmp_path / "ds"), "--block-size", "16", "--stats"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "6 checkpoints x 18 blocks of 16 = 108 blocks from 3 concepts" in out
    assert "same concept" in out and "conv2" in out
    assert load_chunk_dataset(tmp_path / "ds").blocks.shape == (108, 16)

    with pytest.raises(SystemExit) as e:
        main(["chunks", "--zoo", str(zoo), "--out", str(tmp_path / "bad"), "--block-size", "4"])
    assert e.value.code == 1
    assert "error: block size must be at least 8, got 4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["chunks", "--zoo", str(zoo), "--out", str(tmp_path / "ds")])
    assert e.value.code == 1 and "already exists" in capsys.readouterr().err
