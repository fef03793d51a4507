"""pix2pix losses: a conditional GAN term plus lambda * L1, as loss dicts.

The two step functions follow pix2pix's backward_D / backward_G; the trainer calls backward on
the "loss_D" / "loss_G" entries and logs the rest.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _bce_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Vanilla GAN (pix2pix's default): sigmoid cross-entropy against all-ones or all-zeros patches."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def _lsgan_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN: smoother gradients when the discriminator wins easily."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.mse_loss(logits, target)


GanLoss = Callable[[torch.Tensor, bool], torch.Tensor]
GAN_LOSSES: dict[str, GanLoss] = {"bce": _bce_loss, "lsgan": _lsgan_loss}


def discriminator_losses(discriminator: nn.Module, source: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                         gan_loss: GanLoss) -> dict[str, torch.Tensor]:
    """pix2pix backward_D: real pairs should look real, generated pairs fake; halved so D learns slower than G."""
    # Fake: stop the gradient into G; this step only trains D.
    loss_fake = gan_loss(discriminator(source, fake.detach()), False)
    # Real
    loss_real = gan_loss(discriminator(source, real), True)
    return {"loss_D": 0.5 * (loss_fake + loss_real), "loss_D_fake": loss_fake, "loss_D_real": loss_real}


def generator_losses(discriminator: nn.Module, source: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                     gan_loss: GanLoss, lambda_l1: float) -> dict[str, torch.Tensor]:
    """pix2pix backward_G: first, G(A) should fake the discriminator; second, G(A) should equal B."""
    loss_gan = gan_loss(discriminator(source, fake), True)
    loss_l1 = F.l1_loss(fake, real)
    return {"loss_G": loss_gan + lambda_l1 * loss_l1, "loss_G_GAN": loss_gan, "loss_G_L1": loss_l1}
