"""Training: LoRA lowers test L1, budgets and checkpoints, the base folder, and the CLI verbs' errors."""

import json

import pytest
import torch

from gan.base import load_base, read_base_meta, train_base
from gan.config import (
    BaseTrainConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from gan.data import PairedData, read_manifest
from gan.discriminator import Discriminator
from gan.generator import Generator
from gan.lora import load_adapter
from gan.lora_training import adapter_checkpoints, train_lora
from weightgen.cli import main
from weightgen.errors import USER_ERRORS
from weightgen.pairs.synthetic import write_synthetic_pairs

TINY_G = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_synthetic_pairs(tmp_path_factory.mktemp("pairs"), ["warm sepia", "cold blue"], n_train=16, n_test=4,
                                 image_size=32)


@pytest.fixture(scope="module")
def base_dir(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("bases") / "base"
    config = BaseTrainConfig(GeneratorConfig(**TINY_G, image_size=32), DiscriminatorConfig(base_channels=8),
                             GanTrainConfig(max_steps=4, eval_every=2, lr=1e-3))
    history = train_base(pairs, ["warm sepia"], config, out, progress=False)
    assert [r["step"] for r in history] == [0, 2, 4]
    return out


def _tiny_models(seed=0):
    torch.manual_seed(seed)
    return Generator(**TINY_G, image_size=32), Discriminator(base_channels=8)


def test_lora_training_lowers_test_l1(pairs):
    data = PairedData.load(pairs, ["cold blue"])
    g, d = _tiny_models()
    calls = []
    model, history = train_lora(g, d, data, LoraSettings(rank=4), GanTrainConfig(max_steps=30, eval_every=10, lr=1e-2,
                                                                              lr_d=2e-4),
                                callback=lambda step, rec: calls.append(step), progress=False)
    assert [r["step"] for r in history] == [0, 10, 20, 30] and calls == [0, 10, 20, 30]
    first, last = history[0]["metrics"], history[-1]["metrics"]
    assert last["l1"] < 0.8 * first["l1"], history
    assert last["psnr"] > first["psnr"]
    assert set(history[-1]["losses"]) == {"loss_D", "loss_D_fake", "loss_D_real", "loss_G", "loss_G_GAN", "loss_G_L1"}
    assert history[-1]["seconds"] > history[1]["seconds"] > 0
    # only the LoRA moved: the frozen base weights are those of a fresh generator with the same seed
    fresh, _ = _tiny_models()
    base = model.get_base_model()
    assert torch.equal(base.res[0].conv1.base_layer.weight, fresh.res[0].conv1.weight)


def test_time_budget_and_checkpoints(pairs, tmp_path):
    data = PairedData.load(pairs, ["cold blue"])
    g, d = _tiny_models()
    config = GanTrainConfig(max_steps=10_000, max_seconds=0.3, eval_every=0, checkpoint_steps=(1, 2), lr=1e-3)
    model, history = train_lora(g, d, data, LoraSettings(rank=2), config,
                                checkpoint_fn=adapter_checkpoints(tmp_path / "zoo", {"concept": "cold blue"}),
                                progress=False)
    last = history[-1]
    assert 2 <= last["step"] < 10_000 and last["seconds"] >= 0.3
    assert [r["step"] for r in history][:3] == [0, 1, 2]  # checkpoints are evaluated so they carry metrics
    meta = json.loads((tmp_path / "zoo" / "ckpt-1" / "weightgen.json").read_text())
    assert meta["step"] == 2 and meta["concept"] == "cold blue" and "l1" in meta["metrics"]
    fresh, _ = _tiny_models()
    loaded = load_adapter(fresh, tmp_path / "zoo" / "ckpt-1")
    assert not (tmp_path / "zoo" / "ckpt-2").exists()
    assert loaded.peft_config["default"].r == 2


def test_base_folder(base_dir, pairs):
    g, d = load_base(base_dir)
    meta = read_base_meta(base_dir)
    assert meta["format"] == "weightgen-gan-base" and meta["concepts"][0]["text"] == "warm sepia"
    assert meta["config"]["generator"]["base_channels"] == 8 and len(meta["history"]) == 3
    x = torch.zeros(1, 3, 32, 32)
    assert g(x).shape == (1, 3, 32, 32) and d(x, x).dim() == 4
    with pytest.raises(USER_ERRORS, match="already exists"):
        train_base(pairs, None, BaseTrainConfig(), base_dir, progress=False)


def test_train_base_refuses_images_of_the_wrong_size(tmp_path):
    root = write_synthetic_pairs(tmp_path / "p", ["a"], n_train=2, n_test=1, image_size=20)
    config = BaseTrainConfig(GeneratorConfig(**{**TINY_G, "n_downsample": 3}, image_size=32))
    with pytest.raises(USER_ERRORS, match="20x20, not divisible by 8"):
        train_base(root, None, config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code, capsys.readouterr()


def test_cli_train_lora_and_eval(base_dir, pairs, tmp_path, capsys):
    code, out = _cli(["train-lora", base_dir, pairs, "cold blue", "--out", tmp_path / "a", "--steps", 2,
                      "--eval-every", 0, "--rank", 2], capsys)
    assert code == 0, out.err
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file() and (tmp_path / "a" / "before_after.png").is_file()
    meta = json.loads((tmp_path / "a" / "weightgen.json").read_text())
    assert meta["step"] == 2 and meta["concept_text"] == "cold blue" and "base_metrics" in meta
    code, out = _cli(["eval", base_dir, pairs, "cold blue", "--adapter", tmp_path / "a", "--json"], capsys)
    assert code == 0, out.err
    scores = json.loads(out.out.strip().splitlines()[-1])
    assert scores["l1"] == pytest.approx(meta["metrics"]["l1"], abs=1e-6)
    assert scores["style"] > 0 and scores["style_fd"] >= 0  # the style distance beside L1, Fréchet over the test set
    code, out = _cli(["eval", base_dir, pairs, "cold blue", "--no-style"], capsys)
    assert code == 0 and "style" not in out.out and "L1" in out.out


def test_cli_errors_exit_nonzero(base_dir, pairs, tmp_path, capsys):
    cid = next(iter(read_manifest(pairs)["concepts"]))
    # an adapter for a different base architecture
    other = tmp_path / "other"
    config = BaseTrainConfig(GeneratorConfig(**{**TINY_G, "base_channels": 4}, image_size=32),
                             DiscriminatorConfig(base_channels=4), GanTrainConfig(max_steps=1, eval_every=0))
    train_base(pairs, [cid], config, other, progress=False)
    code, _ = _cli(["train-lora", other, pairs, cid, "--out", tmp_path / "a_other", "--steps", 1, "--eval-every", 0],
                   capsys)
    assert code == 0
    bad_size = write_synthetic_pairs(tmp_path / "odd", ["x"], n_train=2, n_test=1, image_size=30)
    corrupt = tmp_path / "corrupt"
    import shutil

    shutil.copytree(base_dir, corrupt)
    (corrupt / "generator" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    cases = [
        (["train-lora", tmp_path / "no_base", pairs, cid, "--out", tmp_path / "x"], "base folder not found"),
        (["train-lora", base_dir, pairs, "no such concept", "--out", tmp_path / "x"], "'no such concept' is not in"),
        (["train-lora", corrupt, pairs, cid, "--out", tmp_path / "x"], "cannot load Generator from"),
        (["eval", base_dir, pairs, cid, "--adapter", tmp_path / "a_other"], "was trained for base"),
        (["eval", base_dir, pairs, cid, "--adapter", tmp_path / "nothing"], "adapter folder not found"),
        (["eval", base_dir, tmp_path / "no_pairs", cid], "pairs folder not found"),
        (["train-base", bad_size, "--out", tmp_path / "x", "--steps", 1], "`image_size` 30 is not divisible by"),
        (["train-base", pairs, "--out", base_dir, "--steps", 1], "already exists"),
    ]
    for args, message in cases:
        code, out = _cli(args, capsys)
        assert code == 1, (args, out)
        assert out.err.startswith("error: ") and message in out.err, (args, out.err)
        assert len(out.err.strip().splitlines()) == 1, out.err
    assert not (tmp_path / "x").exists()
