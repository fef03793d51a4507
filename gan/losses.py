"""pix2pix losses: a conditional GAN term plus lambda * L1, as loss dicts.

The two step functions follow pix2pix's backward_D / backward_G; the trainer calls backward on
the "loss_D" / "loss_G" entries and logs the rest. Their `*_terms` halves start from D's patch
logits, for the batched trainer (gan.multi_trainer), which runs every slot's D in one pass.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _bce_loss(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Vanilla GAN (pix2pix's default): sigmoid cross-entropy against patches all equal to `target`."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _lsgan_loss(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares GAN: smoother gradients when the discriminator wins easily."""
    return F.mse_loss(logits, torch.full_like(logits, target))


# (patch logits, target value: 1 = real, 0 = fake) -> loss
GanLoss = Callable[[torch.Tensor, float], torch.Tensor]
GAN_LOSSES: dict[str, GanLoss] = {"bce": _bce_loss, "lsgan": _lsgan_loss}
REAL, FAKE = 1.0, 0.0


def discriminator_losses(discriminator: nn.Module, source: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                         gan_loss: GanLoss, label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """pix2pix backward_D: real pairs should look real, generated pairs fake; halved so D learns slower than G.

    `label_smoothing` > 0 is one-sided label smoothing (Salimans et al. 2016): real pairs aim at
    1 - label_smoothing, so D is never rewarded for certainty about them and cannot drive its loss to 0.
    Fake targets stay 0, since smoothing them would reward D for letting bad samples pass.
    """
    # Fake first (stop the gradient into G: this step only trains D), then real.
    fake_logits = discriminator(source, fake.detach())
    return discriminator_loss_terms(fake_logits, discriminator(source, real), gan_loss, label_smoothing)


def discriminator_loss_terms(fake_logits: torch.Tensor, real_logits: torch.Tensor, gan_loss: GanLoss,
                             label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """`discriminator_losses` from D's patch logits on the (source, fake) and (source, real) pairs."""
    loss_fake = gan_loss(fake_logits, FAKE)
    loss_real = gan_loss(real_logits, REAL - label_smoothing)
    return {"loss_D": 0.5 * (loss_fake + loss_real), "loss_D_fake": loss_fake, "loss_D_real": loss_real}


def generator_losses(discriminator: nn.Module, source: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                     gan_loss: GanLoss, lambda_l1: float) -> dict[str, torch.Tensor]:
    """pix2pix backward_G: first, G(A) should fake the discriminator; second, G(A) should equal B."""
    return generator_loss_terms(discriminator(source, fake), real, fake, gan_loss, lambda_l1)


def generator_loss_terms(fake_logits: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, gan_loss: GanLoss,
                         lambda_l1: float) -> dict[str, torch.Tensor]:
    """`generator_losses` from D's patch logits on the (source, fake) pairs."""
    loss_gan = gan_loss(fake_logits, REAL)  # G aims at 1, never smoothed
    loss_l1 = F.l1_loss(fake, real)
    return {"loss_G": loss_gan + lambda_l1 * loss_l1, "loss_G_GAN": loss_gan, "loss_G_L1": loss_l1}
