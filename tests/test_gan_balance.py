"""D/G balance options: one-sided label smoothing and the spectral-norm PatchGAN, off by default."""

import copy

import pytest
import torch
from torch import nn

from gan.base import load_base, save_base
from gan.config import BaseTrainConfig, DiscriminatorConfig, GanTrainConfig, GeneratorConfig
from gan.data import PairedData
from gan.discriminator import Discriminator
from gan.generator import Generator
from gan.losses import GAN_LOSSES, discriminator_losses, generator_losses
from gan.trainer import Pix2PixTrainer
from weightgen.errors import USER_ERRORS
from weightgen.pairs.synthetic import write_synthetic_pairs

TINY_G = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32)


class FixedLogits(nn.Module):
    """A stand-in D whose every patch logit is one learnable number, so the losses are known in closed form."""

    def __init__(self, logit: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(logit))

    def forward(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.logit.expand(len(source), 1, 4, 4)


def _x(seed=1):
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("mode", list(GAN_LOSSES))
def test_smoothing_lifts_a_confident_d_real_loss_and_nothing_else(mode):
    x = _x()
    confident = 4.0 if mode == "bce" else 1.0  # sigmoid(4) = 0.98; lsgan's real target is the raw score 1
    d = FixedLogits(confident)
    plain = discriminator_losses(d, x, x, x, GAN_LOSSES[mode])
    smooth = discriminator_losses(d, x, x, x, GAN_LOSSES[mode], label_smoothing=0.1)
    assert smooth["loss_D_real"] > plain["loss_D_real"] + 1e-3  # D is no longer rewarded for certainty
    torch.testing.assert_close(smooth["loss_D_fake"], plain["loss_D_fake"], rtol=0, atol=0)  # one-sided
    # ... and its gradient now pulls the real score down towards 0.9, where it pushed it up before.
    (grad_plain,) = torch.autograd.grad(plain["loss_D_real"], d.logit)
    (grad_smooth,) = torch.autograd.grad(smooth["loss_D_real"], d.logit)
    assert grad_plain <= 0 < grad_smooth


def test_smoothed_bce_real_loss_has_the_entropy_floor():
    x, p = _x(), 0.9
    at_target = FixedLogits(float(torch.logit(torch.tensor(p))))
    loss = discriminator_losses(at_target, x, x, x, GAN_LOSSES["bce"], label_smoothing=0.1)["loss_D_real"]
    floor = -(p * torch.log(torch.tensor(p)) + (1 - p) * torch.log(torch.tensor(1 - p)))  # H(0.9) = 0.325 nats
    torch.testing.assert_close(loss, floor, rtol=0, atol=1e-5)


def test_generator_target_is_never_smoothed():
    x = _x()
    loss = generator_losses(FixedLogits(4.0), x, x, x, GAN_LOSSES["bce"], lambda_l1=0.0)["loss_G_GAN"]
    torch.testing.assert_close(loss, nn.functional.softplus(torch.tensor(-4.0)), rtol=0, atol=1e-6)  # -log sigmoid(4)


@pytest.mark.parametrize("cls,kwargs,match", [
    (GanTrainConfig, dict(label_smoothing=0.5), r"`label_smoothing` should be in \[0, 0.5\), got 0.5"),
    (GanTrainConfig, dict(label_smoothing=-0.1), "got -0.1"),
    (GanTrainConfig, dict(label_smoothing="0.1"), "got '0.1'"),
    (GanTrainConfig, dict(label_smoothing=True), "got True"),
    (DiscriminatorConfig, dict(spectral_norm="yes"), "`spectral_norm` should be true or false, got 'yes'"),
    (Discriminator, dict(spectral_norm=1), "got 1"),
])
def test_bad_balance_values_are_refused_with_the_value(cls, kwargs, match):
    with pytest.raises(USER_ERRORS, match=match):
        cls(**kwargs)


def test_spectral_norm_d_wraps_every_conv_and_drops_instance_norm():
    d = Discriminator(base_channels=8, spectral_norm=True)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in d.modules())
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in Discriminator(base_channels=8).modules()) == 3  # default


def test_spectral_norm_base_round_trips_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    g, d = Generator(**TINY_G), Discriminator(base_channels=8, spectral_norm=True)
    x = _x()
    for _ in range(3):  # training forwards run power iterations: the saved u/v must be these, not fresh ones
        d(x, x)
    save_base(tmp_path / "base", g, d, {"concepts": []})
    _, d2 = load_base(tmp_path / "base")
    assert d2.config.spectral_norm is True
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in d2.modules())
    d.eval(), d2.eval()
    torch.testing.assert_close(d2(x, x), d(x, x), rtol=0, atol=0)
    d.train(), d2.train()  # the next power iteration starts from the same vectors too
    torch.testing.assert_close(d2(x, x), d(x, x), rtol=0, atol=0)
    torch.testing.assert_close(copy.deepcopy(d2)(x, x), d2(x, x), rtol=0, atol=0)  # the zoo deep-copies the base D


@pytest.mark.parametrize("mode,smoothing,sn", [("bce", 0.1, True), ("lsgan", 0.1, False), ("lsgan", 0.0, True)])
def test_trainer_runs_with_balance_options(tmp_path, mode, smoothing, sn):
    pairs = write_synthetic_pairs(tmp_path / "pairs", ["warm sepia"], n_train=8, n_test=2, image_size=32)
    config = BaseTrainConfig(GeneratorConfig(**TINY_G), DiscriminatorConfig(base_channels=8, spectral_norm=sn),
                             GanTrainConfig(max_steps=2, eval_every=0, gan_mode=mode, label_smoothing=smoothing,
                                            lr_d=5e-5))
    torch.manual_seed(0)
    g, d = Generator.from_gan_config(config.generator), Discriminator.from_gan_config(config.discriminator)
    before = copy.deepcopy(d.state_dict())
    trainer = Pix2PixTrainer(g, d, PairedData.load(pairs), config.train, progress=False)
    history = trainer.run_loop()
    losses = history[-1]["losses"]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    assert any(not torch.equal(before[k], v) for k, v in d.state_dict().items())  # D trained
