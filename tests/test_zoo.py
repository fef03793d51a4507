"""The zoo stage: base on representative concepts, manifest format, resume, damage, disk full, bad input, CLI."""

import errno
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gan.config import (
    BaseTrainConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from prompts.identity import concept_id
from weightgen.cli import main
from weightgen.errors import USER_ERRORS
from weightgen.pairs.synthetic import write_synthetic_pairs
from weightgen.zoo.base import build_base
from weightgen.zoo.build import build_zoo
from weightgen.zoo.config import BaseConfig, ZooConfig, checkpoint_steps
from weightgen.zoo.plan import (
    ZooConcept,
    check_plan,
    pick_representative,
    plan_from_prompt_set,
)
from weightgen.zoo.store import check_entry, read_manifest

TINY_G = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32)
TRAIN = ["warm sepia", "cold blue", "green tint"]
HELDOUT = ["pink glow"]
PLAN = [ZooConcept(t, "train") for t in TRAIN] + [ZooConcept(t, "heldout") for t in HELDOUT]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_synthetic_pairs(tmp_path_factory.mktemp("pairs"), TRAIN + HELDOUT, n_train=8, n_test=4, image_size=32)


@pytest.fixture(scope="module")
def base(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("bases") / "base"
    config = BaseConfig(out=str(out), pairs=str(pairs), model=BaseTrainConfig(
        GeneratorConfig(**TINY_G), DiscriminatorConfig(base_channels=8), GanTrainConfig(max_steps=2, eval_every=0)))
    history = build_base(config, TRAIN[:2], progress=False)
    assert [r["step"] for r in history] == [0, 2]
    meta = json.loads((out / "weightgen.json").read_text())
    assert [c["text"] for c in meta["concepts"]] == TRAIN[:2]
    return out


def tiny_config(zoo, base, pairs, **kw) -> ZooConfig:
    return ZooConfig(out=str(zoo), base=str(base), pairs=str(pairs), lora=LoraSettings(rank=2, rank_pattern={}),
                     train=GanTrainConfig(batch_size=4, max_steps=4, eval_every=0, lr=1e-2, lr_d=2e-4), k=2,
                     checkpoint_window=0.5, **kw)


def entry_files(zoo: Path) -> dict[str, float]:
    return {str(p.relative_to(zoo)): p.stat().st_mtime_ns for p in zoo.glob("*/**/*") if p.is_file()}


def test_build_writes_the_manifest_chunks_reads(base, pairs, tmp_path):
    from gan.base import load_base
    from gan.lora import load_adapter
    from weightgen.chunks.dataset import build_chunk_dataset, load_chunk_dataset

    zoo = tmp_path / "zoo"
    report = build_zoo(tiny_config(zoo, base, pairs), PLAN, progress=True)
    assert report.built == [c.id for c in PLAN] and report.skipped == [] and report.rebuilt == []
    m = read_manifest(zoo)
    assert m["format"] == "weightgen-zoo" and m["version"] == 1 and m["complete"]
    assert Path(m["base"]) == base.resolve() and len(m["base_fingerprint"]) == 16
    assert m["lora"]["rank"] == 2 and list(m["concepts"]) == [c.id for c in PLAN]
    held = m["concepts"][concept_id("pink glow")]
    assert held["split"] == "heldout" and held["text"] == "pink glow"
    for cid, info in m["concepts"].items():
        assert [ck["step"] for ck in info["checkpoints"]] == [2, 4]  # the last 50% of 4 steps, k=2
        for i, ck in enumerate(info["checkpoints"]):
            assert ck["path"] == f"{cid}/ckpt-{i}" and set(ck["metrics"]) == {"l1", "psnr", "ssim"}
            meta = json.loads((zoo / ck["path"] / "weightgen.json").read_text())
            assert meta["concept"] == cid and meta["step"] == ck["step"] and meta["seed"] == 0
            assert meta["lora_init_seed"] == 0 and meta["metrics"] == ck["metrics"]
    g, _ = load_base(base)  # a standard peft adapter on the base
    load_adapter(g, zoo / m["concepts"][cid]["checkpoints"][0]["path"])
    assert not list(zoo.glob(".*.tmp"))
    # weightgen.chunks reads the train split only: held-out LoRAs are never generator data.
    data = load_chunk_dataset(build_chunk_dataset(zoo, tmp_path / "chunks", block_size=64, progress=False))
    assert data.concepts == TRAIN and int(data.checkpoint_index.max()) == 2 * len(TRAIN) - 1
    hashes = [json.loads((zoo / cid / "entry.json").read_text())["checkpoints"][0]["sha256"] for cid in m["concepts"]]
    assert len(set(hashes)) == len(hashes)  # one init seed, but each concept's LoRA learned its own edit


def test_resume_after_an_interrupt_skips_done_concepts(base, pairs, tmp_path):
    zoo = tmp_path / "zoo"
    config = tiny_config(zoo, base, pairs)

    def crash(concept, entry):
        raise KeyboardInterrupt  # the run dies right after the first concept is complete

    with pytest.raises(KeyboardInterrupt):
        build_zoo(config, PLAN, progress=False, on_concept=crash)
    first = PLAN[0].id
    assert list(read_manifest(zoo)["concepts"]) == [first]  # the manifest already lists what is complete
    before = entry_files(zoo)
    report = build_zoo(config, PLAN, progress=False)
    assert report.skipped == [first] and report.built == [c.id for c in PLAN[1:]]
    after = entry_files(zoo)
    assert {k: v for k, v in after.items() if k.startswith(first)} == before  # the finished concept was not touched
    assert list(read_manifest(zoo)["concepts"]) == [c.id for c in PLAN]
    again = build_zoo(config, PLAN, progress=False)  # nothing left: nothing trained, nothing duplicated
    assert again.built == [] and len(again.skipped) == len(PLAN) and entry_files(zoo) == after


def test_corrupt_adapter_is_reported_and_rebuilt(base, pairs, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    config = tiny_config(zoo, base, pairs)
    build_zoo(config, PLAN[:2], progress=False)
    victim = PLAN[1].id
    weights = zoo / victim / "ckpt-1" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    assert "corrupt" in check_entry(zoo, PLAN[1], 2).problem
    with pytest.raises(SystemExit) as exc:
        main(["zoo", "status", str(zoo)])
    assert exc.value.code == 0 and f"damaged: {victim}" in capsys.readouterr().out
    messages = []
    report = build_zoo(config, PLAN[:2], progress=False, log=messages.append)
    assert report.rebuilt == [victim] and report.built == [victim] and report.skipped == [PLAN[0].id]
    assert any(m.startswith(f"error: zoo concept {victim}: checkpoint {victim}/ckpt-1") and "corrupt" in m
               for m in messages)
    assert check_entry(zoo, PLAN[1], 2).ok and len(read_manifest(zoo)["concepts"]) == 2


def test_disk_full_leaves_nothing_half_written(base, pairs, tmp_path, monkeypatch):
    import gan.lora

    zoo = tmp_path / "zoo"
    config = tiny_config(zoo, base, pairs)
    real_write = gan.lora.write_json

    def full_disk(path, obj):  # the second concept's first adapter sidecar hits a full disk
        if PLAN[1].id in json.dumps(obj):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, obj)

    monkeypatch.setattr(gan.lora, "write_json", full_disk)
    with pytest.raises(USER_ERRORS, match=f"disk full while writing zoo concept {PLAN[1].id}"):
        build_zoo(config, PLAN[:3], progress=False)
    assert not (zoo / PLAN[1].id).exists() and not list(zoo.glob(".*"))  # no temporaries, no partial folder
    assert list(read_manifest(zoo)["concepts"]) == [PLAN[0].id]
    monkeypatch.setattr(gan.lora, "write_json", real_write)
    report = build_zoo(config, PLAN[:3], progress=False)
    assert report.built == [PLAN[1].id, PLAN[2].id] and read_manifest(zoo)["complete"]


def test_changed_settings_are_refused_then_overwritten(base, pairs, tmp_path):
    zoo = tmp_path / "zoo"
    build_zoo(tiny_config(zoo, base, pairs), PLAN[:1], progress=False)
    other = tiny_config(zoo, base, pairs)
    other = replace(other, train=replace(other.train, max_steps=6, checkpoint_steps=()))
    with pytest.raises(USER_ERRORS, match="other settings: train.checkpoint_steps.*train.max_steps=4 \\(now 6\\)"):
        build_zoo(other, PLAN[:1], progress=False)
    report = build_zoo(replace(other, overwrite=True), PLAN[:1], progress=False)
    assert report.built == [PLAN[0].id]
    assert [ck["step"] for ck in read_manifest(zoo)["concepts"][PLAN[0].id]["checkpoints"]] == [3, 6]


def test_missing_pairs_and_base_are_clear_errors(base, pairs, tmp_path):
    with pytest.raises(USER_ERRORS, match=r"1 concept\(s\) have no pairs in .*'van gogh style'.*--no-build-pairs"):
        build_zoo(tiny_config(tmp_path / "z", base, pairs, build_pairs=False), [ZooConcept("van gogh style")],
                  progress=False)
    with pytest.raises(USER_ERRORS, match="base folder not found: .*nope"):
        build_zoo(tiny_config(tmp_path / "z", tmp_path / "nope", pairs), PLAN, progress=False)
    assert not (tmp_path / "z").exists()


def test_cli_builds_missing_pairs_on_the_fly(base, tmp_path, capsys):
    pairs = tmp_path / "pairs"  # empty: the procedural editor builds them at the base's 32x32
    args = ["zoo", "build", "-o", tmp_path / "zoo", "--base", base, "--pairs", pairs, "--concept", "pencil sketch",
            "--heldout-concept", "at night", "--steps", 2, "--k", 1, "--rank", 2, "--batch-size", 2,
            "--eval-every", 0, "--image-size", 32, "--n-pairs-train", 4, "--n-pairs-test", 2, "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    assert "2/2 concepts complete" in out.out
    assert set(json.loads((pairs / "manifest.json").read_text())["concepts"]) == {concept_id("pencil sketch"),
                                                                                  concept_id("at night")}
    m = read_manifest(tmp_path / "zoo")
    assert {v["split"] for v in m["concepts"].values()} == {"train", "heldout"}
    with pytest.raises(SystemExit) as exc:  # a missing base: one error line, exit 1
        main([str(a) for a in args[:5] + [tmp_path / "nope"] + args[6:]])
    assert exc.value.code == 1 and "error: base folder not found" in capsys.readouterr().err


def test_checkpoint_steps_and_config_validation(tmp_path):
    assert checkpoint_steps(400, 5, 0.25) == (300, 325, 350, 375, 400)
    assert checkpoint_steps(10, 1, 0.1) == (10,)
    with pytest.raises(USER_ERRORS, match="cannot place k=5 distinct checkpoints"):
        checkpoint_steps(4, 5, 0.25)
    ok = dict(out="z", base="b", pairs="p")
    assert ZooConfig(**ok).train.checkpoint_steps == (300, 325, 350, 375, 400)
    for bad, match in [(dict(k=0), "`k` should be a positive integer, got 0"),
                       (dict(checkpoint_window=0.0), "`checkpoint_window` should be in"),
                       (dict(splits=("test",)), "`splits` should be"),
                       (dict(threads=0), "`threads` should be"),
                       (dict(train=GanTrainConfig(max_seconds=5)), "time budget")]:
        with pytest.raises(USER_ERRORS, match=match):
            ZooConfig(**ok, **bad)
    with pytest.raises(USER_ERRORS, match="listed in both splits"):
        check_plan([ZooConcept("Van  Gogh"), ZooConcept("van gogh", "heldout")])
    with pytest.raises(USER_ERRORS, match="split should be one of"):
        ZooConcept("x", "test")


class HashEncoder:
    """A stand-in text encoder: clustered embeddings (the text's first word picks the cluster)."""

    def embed(self, texts):
        out = []
        for t in texts:
            g = torch.Generator().manual_seed(sum(map(ord, t.split()[0])))
            center = torch.randn(16, generator=g) * 5
            out.append(center + torch.randn(16, generator=torch.Generator().manual_seed(sum(map(ord, t)))) * 0.1)
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)


def test_representative_pick_covers_the_clusters():
    from prompts.concepts import Concept, PromptSet

    words = ["ink", "oil", "neon"]
    texts = [f"{w} style {i}" for w in words for i in range(4)]
    picked = pick_representative(texts, 3, HashEncoder())
    assert sorted(t.split()[0] for t in picked) == sorted(words)  # one per cluster
    assert picked == [t for t in texts if t in picked]  # prompt-set order kept
    assert pick_representative(texts, None) == texts and pick_representative(texts, 99) == texts
    ps = PromptSet([Concept(t, "style") for t in texts] + [Concept(f"held {i}", "style", split="heldout")
                                                           for i in range(3)])
    plan = plan_from_prompt_set(ps, 3, 2, HashEncoder())
    assert [c.split for c in plan] == ["train"] * 3 + ["heldout"] * 2
    assert all(c.text.startswith("held") for c in plan[3:])
    with pytest.raises(USER_ERRORS, match="asked for 5 heldout concepts, the prompt set has only 3"):
        plan_from_prompt_set(ps, 3, 5, HashEncoder())
    assert np.isfinite(HashEncoder().embed(["a b"]).numpy()).all()


@pytest.mark.slow
def test_cli_base_on_representative_concepts_of_the_shipped_prompt_set(tmp_path, capsys):
    from prompts import load_prompt_set

    args = ["zoo", "base", "-o", tmp_path / "base", "--pairs", tmp_path / "pairs", "--n-concepts", 2, "--steps", 1,
            "--eval-every", 0, "--base-channels", 8, "--image-size", 32, "--n-pairs-train", 4, "--n-pairs-test", 2]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    meta = json.loads((tmp_path / "base" / "weightgen.json").read_text())
    texts = [c["text"] for c in meta["concepts"]]
    train = {c.text: c for c in load_prompt_set().train}
    assert len(texts) == 2 and all(t in train and not train[t].components for t in texts)  # single training concepts
    assert meta["config"]["generator"]["image_size"] == 32
