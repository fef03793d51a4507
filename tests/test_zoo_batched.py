"""The zoo's batched path: several concepts per pass, convergence stopping, the same folders, resume, CLI."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from gan.base import load_base
from gan.config import (
    BaseTrainConfig,
    ConvergenceConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from gan.convergence import late_steps
from weightgen.cli import main
from weightgen.errors import USER_ERRORS
from weightgen.pairs.synthetic import write_synthetic_pairs
from weightgen.zoo.base import build_base
from weightgen.zoo.build import build_zoo
from weightgen.zoo.config import BaseConfig, ZooConfig
from weightgen.zoo.plan import ZooConcept
from weightgen.zoo.store import check_entry, read_manifest

TINY_G = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32, residual=True)
TRAIN = ["warm sepia", "cold blue", "green tint"]
PLAN = [ZooConcept(t, "train") for t in TRAIN] + [ZooConcept("pink glow", "heldout")]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_synthetic_pairs(tmp_path_factory.mktemp("pairs"), [c.text for c in PLAN], n_train=8, n_test=4,
                                 image_size=32)


@pytest.fixture(scope="module")
def base(pairs, tmp_path_factory):
    """The base recipe's kind (residual G, spectral-norm D), trained for 20 steps so its head is not zero."""
    out = tmp_path_factory.mktemp("bases") / "base"
    build_base(BaseConfig(out=str(out), pairs=str(pairs), model=BaseTrainConfig(
        GeneratorConfig(**TINY_G), DiscriminatorConfig(base_channels=8, spectral_norm=True),
        GanTrainConfig(max_steps=20, eval_every=0, lr=2e-3))), TRAIN[:2], progress=False)
    return out


def tiny_config(zoo, base, pairs, **kw) -> ZooConfig:
    return ZooConfig(out=str(zoo), base=str(base), pairs=str(pairs), lora=LoraSettings(rank=2, rank_pattern={}),
                     train=GanTrainConfig(batch_size=4, max_steps=6, eval_every=3, lr=1e-2, lr_d=2e-4), k=2,
                     checkpoint_window=0.5, **kw)


def adapter(zoo: Path, cid: str, k: int) -> dict[str, torch.Tensor]:
    return load_file(str(zoo / cid / f"ckpt-{k}" / "adapter_model.safetensors"))


def test_batched_zoo_is_the_sequential_zoo(base, pairs, tmp_path):
    """3 concepts per pass (4 concepts: one slot is refilled) write the folders one at a time writes, same weights."""
    seq, bat = tmp_path / "seq", tmp_path / "bat"
    build_zoo(tiny_config(seq, base, pairs), PLAN, progress=False)
    report = build_zoo(tiny_config(bat, base, pairs, concepts_per_pass=3), PLAN, progress=True)
    assert report.built == [c.id for c in PLAN]
    ms, mb = read_manifest(seq), read_manifest(bat)
    assert mb["complete"] and list(mb["concepts"]) == list(ms["concepts"])
    files = lambda zoo: sorted(str(p.relative_to(zoo)) for p in zoo.glob("*/**/*") if p.is_file())  # noqa: E731
    assert files(bat) == files(seq)
    g, _ = load_base(base)
    init = None
    for c in PLAN:
        es, eb = (json.loads((z / c.id / "entry.json").read_text()) for z in (seq, bat))
        assert set(eb) == set(es) | {"concepts_per_pass"} and eb["concepts_per_pass"] == 3
        assert [ck["step"] for ck in eb["checkpoints"]] == [ck["step"] for ck in es["checkpoints"]] == [3, 6]
        assert [h["step"] for h in eb["history"]] == [h["step"] for h in es["history"]] == [0, 3, 6]
        assert eb["lora_params"] == es["lora_params"] and check_entry(bat, c, 2).ok
        for k in range(2):
            sides = [json.loads((z / c.id / f"ckpt-{k}" / "weightgen.json").read_text()) for z in (seq, bat)]
            assert set(sides[1]) == set(sides[0])
            assert {key: v for key, v in sides[1].items() if key != "metrics"} == {
                key: v for key, v in sides[0].items() if key != "metrics"}
            assert sides[1]["metrics"]["l1"] == pytest.approx(sides[0]["metrics"]["l1"], rel=1e-4)
            ws, wb = adapter(seq, c.id, k), adapter(bat, c.id, k)
            assert ws.keys() == wb.keys()
            for name in ws:
                torch.testing.assert_close(wb[name], ws[name], atol=2e-5, rtol=1e-4)
        # a plain peft adapter on the base, no code of ours
        model = PeftModel.from_pretrained(load_base(base)[0], str(bat / c.id / "ckpt-1"))
        assert sum("lora_" in n for n, _ in model.named_parameters()) == len(wb)
        b_norm = sum(float(v.abs().sum()) for n, v in wb.items() if "lora_B" in n)
        assert b_norm > 0  # B starts at zero: the LoRA trained
        if init is None:
            init = {n: v for n, v in wb.items() if "lora_A" in n}
    last = [adapter(bat, c.id, 1) for c in PLAN]
    assert all(any((a[n] - b[n]).abs().max() > 1e-3 for n in a) for i, a in enumerate(last) for b in last[:i])
    del g


def test_an_interrupted_batched_pass_resumes(base, pairs, tmp_path):
    zoo = tmp_path / "zoo"
    config = tiny_config(zoo, base, pairs, concepts_per_pass=2)

    def crash(concept, entry):
        raise KeyboardInterrupt  # killed right after the first concept of the pass was written

    with pytest.raises(KeyboardInterrupt):
        build_zoo(config, PLAN, progress=False, on_concept=crash)
    first = PLAN[0].id
    assert list(read_manifest(zoo)["concepts"]) == [first]  # the pass's other concept was in a slot: not listed
    assert sorted(p.name for p in zoo.iterdir() if p.is_dir()) == [first] and not list(zoo.glob(".*"))
    before = (zoo / first / "entry.json").stat().st_mtime_ns
    report = build_zoo(config, PLAN, progress=False)
    assert report.skipped == [first] and report.built == [c.id for c in PLAN[1:]]
    assert (zoo / first / "entry.json").stat().st_mtime_ns == before and read_manifest(zoo)["complete"]


def test_convergence_stops_a_plateaued_concept(base, pairs, tmp_path):
    """lr 1e-12: no LoRA moves, every validation L1 is flat, so each concept stops at min_steps, not max_steps."""
    zoo = tmp_path / "zoo"
    rule = ConvergenceConfig(every=2, patience=2, min_delta=0.01, min_steps=6, val_crops=4)
    config = tiny_config(zoo, base, pairs, concepts_per_pass=2, convergence=rule)
    config = replace(config, train=replace(config.train, max_steps=40, lr=1e-12, checkpoint_steps=()))
    build_zoo(config, PLAN[:2], progress=False)
    for c in PLAN[:2]:
        entry = json.loads((zoo / c.id / "entry.json").read_text())
        conv = entry["convergence"]
        assert conv["converged_step"] == 6 and conv["end_step"] == 12 and [s for s, _ in conv["checks"]] == [2, 4, 6]
        assert [ck["step"] for ck in entry["checkpoints"]] == list(late_steps(12, 2, 0.5)) == [6, 12]
        assert entry["history"][-1]["step"] == 12 < config.train.max_steps
    plan = json.loads((zoo / "plan.json").read_text())
    assert plan["settings"]["convergence"] == rule.to_dict()
    other = replace(config, convergence=replace(rule, patience=3))  # another rule: another zoo
    with pytest.raises(USER_ERRORS, match="other settings: convergence.patience=2 \\(now 3\\)"):
        build_zoo(other, PLAN[:2], progress=False)


def test_default_settings_are_unchanged(tmp_path):
    """A zoo built before the options existed still resumes: the default settings have no new keys."""
    config = ZooConfig(out="z", base="b", pairs="p")
    assert set(config.settings()) == {"lora", "train", "k", "checkpoint_window"} and not config.batched
    assert ZooConfig(out="z", base="b", pairs="p", concepts_per_pass=4).settings() == config.settings()
    for bad, match in [(dict(concepts_per_pass=0), "`concepts_per_pass` should be a positive integer"),
                       (dict(concepts_per_pass=2, train=GanTrainConfig(mixed_precision="fp16")), "supports mixed"),
                       (dict(convergence=ConvergenceConfig(min_steps=3)), "cannot place k=5"),
                       (dict(convergence={"every": 5}), "`convergence` should be a ConvergenceConfig")]:
        with pytest.raises(USER_ERRORS, match=match):
            ZooConfig(out="z", base="b", pairs="p", **bad)


def test_cli_builds_a_batched_converging_zoo(base, pairs, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    args = ["zoo", "build", "-o", zoo, "--base", base, "--pairs", pairs, "--concept", TRAIN[0], "--concept", TRAIN[1],
            "--heldout-concept", "pink glow", "--steps", 12, "--k", 2, "--checkpoint-window", 0.5, "--rank", 2,
            "--batch-size", 2, "--eval-every", 0, "--concepts-per-pass", 2, "--converge", "--check-every", 2,
            "--min-steps", 4, "--patience", 1, "--min-delta", 0.5, "--no-progress", "--no-build-pairs"]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    assert "3/3 concepts complete" in out.out
    m = read_manifest(zoo)
    for cid in m["concepts"]:
        entry = json.loads((zoo / cid / "entry.json").read_text())
        assert entry["concepts_per_pass"] == 2 and entry["convergence"]["converged_step"] == 4  # min_delta 0.5: flat
        assert [ck["step"] for ck in entry["checkpoints"]] == [4, 8]
