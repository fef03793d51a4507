"""Generator / discriminator: configs, shapes, refusals, diffusers-folder round trip."""

import pytest
import torch

from gan.config import (
    BaseTrainConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from gan.discriminator import Discriminator
from gan.generator import Generator
from weightgen.errors import USER_ERRORS

TINY = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32)


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("n_downsample,size", [(1, 16), (2, 32), (3, 24)])
def test_generator_shapes_and_range(n_downsample, size):
    torch.manual_seed(0)
    g = Generator(base_channels=8, n_downsample=n_downsample, n_res_blocks=1, attention_heads=2, image_size=32)
    x = torch.rand(2, 3, size, size * 2) * 2 - 1
    y = g(x)
    assert y.shape == (2, 3, size, size * 2)
    assert y.abs().max() <= 1.0
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())


def test_discriminator_patch_logits():
    d = Discriminator(base_channels=8)
    x = torch.randn(2, 3, 64, 64)
    assert d(x, x).shape == (2, 1, 6, 6)
    with pytest.raises(USER_ERRORS, match="channels"):
        d(x, torch.randn(2, 1, 64, 64))


def test_default_param_counts():
    """Pinned so an accidental architecture change shows up (README figures depend on them)."""
    assert _params(Generator()) == 1_212_035
    assert _params(Discriminator()) == 695_777


@pytest.mark.parametrize("shape,match", [
    ((1, 3, 30, 32), "not divisible by 4"),
    ((1, 1, 32, 32), "expects 3 input channels, got 1"),
    ((3, 32, 32), r"\(B, C, H, W\)"),
])
def test_generator_refuses_bad_input(shape, match):
    g = Generator(**TINY)
    with pytest.raises(USER_ERRORS, match=match):
        g(torch.zeros(shape))


@pytest.mark.parametrize("cls,kwargs,match", [
    (GeneratorConfig, dict(image_size=30), "image_size. 30 is not divisible by"),
    (GeneratorConfig, dict(base_channels=6, attention_heads=5), "not divisible by `attention_heads` = 5"),
    (GeneratorConfig, dict(upsample_mode="transposed"), "'transposed'"),
    (GeneratorConfig, dict(n_downsample=0), "got 0"),
    (DiscriminatorConfig, dict(n_layers=-1), "got -1"),
    (LoraSettings, dict(rank=0), "`rank` should be a positive integer, got 0"),
    (LoraSettings, dict(rank_pattern={"x": 0}), "rank_pattern"),
    (LoraSettings, dict(target_modules=[]), "target_modules"),
    (GanTrainConfig, dict(mixed_precision="fp8"), "'fp8'"),
    (GanTrainConfig, dict(max_seconds=-5), "-5"),
    (GanTrainConfig, dict(betas=(0.5, 1.5)), "1.5"),
    (GanTrainConfig, dict(checkpoint_steps=[0]), "checkpoint_steps"),
])
def test_configs_echo_bad_values(cls, kwargs, match):
    with pytest.raises(USER_ERRORS, match=match):
        cls(**kwargs)


def test_generator_constructor_validates_like_its_config():
    with pytest.raises(USER_ERRORS, match=r"60 is not divisible by 2\*\*n_downsample = 8"):
        Generator(n_downsample=3, image_size=60)


def test_config_dict_round_trip():
    cfg = BaseTrainConfig(GeneratorConfig(**TINY), DiscriminatorConfig(base_channels=8),
                          GanTrainConfig(max_steps=3, max_seconds=0, checkpoint_steps=[2, 1]))
    assert cfg.train.max_seconds is None and cfg.train.checkpoint_steps == (1, 2)
    import json

    again = BaseTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(USER_ERRORS, match="unknown GanTrainConfig fields"):
        GanTrainConfig.from_dict({"steps": 3})


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    g, d = Generator(**TINY), Discriminator(base_channels=8)
    g.save_pretrained(tmp_path / "g")
    d.save_pretrained(tmp_path / "d")
    assert (tmp_path / "g" / "config.json").is_file()
    assert (tmp_path / "g" / "diffusion_pytorch_model.safetensors").is_file()
    g2, d2 = Generator.from_pretrained(tmp_path / "g"), Discriminator.from_pretrained(tmp_path / "d")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert g2.config.base_channels == 8
    torch.testing.assert_close(g2(x), g(x), rtol=0, atol=0)
    torch.testing.assert_close(d2(x, x), d(x, x), rtol=0, atol=0)
    from gan.lora import fingerprint, weights_hash

    assert fingerprint(g2) == fingerprint(g) and weights_hash(g2) == weights_hash(g)


def test_load_model_errors_are_one_line(tmp_path):
    from gan.base import load_base, load_model

    with pytest.raises(USER_ERRORS, match="Generator folder not found"):
        load_model(Generator, tmp_path / "nope")
    Generator(**TINY).save_pretrained(tmp_path / "g")
    (tmp_path / "g" / "config.json").write_text(
        (tmp_path / "g" / "config.json").read_text().replace('"base_channels": 8', '"base_channels": 16'))
    with pytest.raises(USER_ERRORS, match="cannot load Generator from .*expected shape"):
        load_model(Generator, tmp_path / "g")
    (tmp_path / "g" / "config.json").unlink()
    with pytest.raises(USER_ERRORS, match="cannot load Generator from .*config.json"):
        load_model(Generator, tmp_path / "g")
    with pytest.raises(USER_ERRORS, match="base folder not found"):
        load_base(tmp_path / "no_base")
