"""PatchGAN discriminator (pix2pix): a real/fake logit per overlapping patch of a (source, image) pair.

Conditioning on the source is what makes it a *conditional* GAN: the discriminator judges whether
the image is a plausible edit of that source, not merely a plausible image.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn.utils import parametrizations

from gan.config import DiscriminatorConfig
from gan.errors import GanError


class Discriminator(ModelMixin, ConfigMixin):
    """C64-C128-C256-C512 PatchGAN (widths scaled by base_channels), instance norm, LeakyReLU 0.2.

    With `spectral_norm` every Conv2d is spectrally normalised (torch's parametrization: one power
    iteration per training forward, its u/v vectors saved as buffers) and the instance norms are
    dropped, the SN-PatchGAN convention (Yu et al. 2019): spectral norm already bounds each layer's
    gain, and per-image normalisation on top would undo that bound.
    """

    @register_to_config
    def __init__(self, source_channels: int = 3, image_channels: int = 3, base_channels: int = 32, n_layers: int = 3,
                 spectral_norm: bool = False):
        super().__init__()
        DiscriminatorConfig(source_channels, image_channels, base_channels, n_layers, spectral_norm)  # validates

        def conv(c_in: int, c_out: int, stride: int) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)
            return parametrizations.spectral_norm(layer) if spectral_norm else layer

        layers: list[nn.Module] = [conv(source_channels + image_channels, base_channels, 2), nn.LeakyReLU(0.2)]
        c = base_channels
        for i in range(1, n_layers + 1):
            c_out = base_channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1  # the last widening layer keeps the resolution (pix2pix)
            norm = [] if spectral_norm else [nn.InstanceNorm2d(c_out)]
            layers += [conv(c, c_out, stride), *norm, nn.LeakyReLU(0.2)]
            c = c_out
        layers.append(conv(c, 1, 1))
        self.net = nn.Sequential(*layers)

    @classmethod
    def from_gan_config(cls, config: DiscriminatorConfig) -> "Discriminator":
        return cls(**config.to_dict())

    def forward(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if source.dim() != 4 or image.dim() != 4 or source.shape[0] != image.shape[0] or source.shape[2:] != image.shape[2:]:
            raise GanError(f"discriminator needs (B, C, H, W) source and image of the same size, "
                                 f"got {tuple(source.shape)} and {tuple(image.shape)}")
        if source.shape[1] != cfg.source_channels or image.shape[1] != cfg.image_channels:
            raise GanError(f"discriminator expects {cfg.source_channels}+{cfg.image_channels} channels, "
                                 f"got {source.shape[1]}+{image.shape[1]}")
        x = torch.cat([source, image], dim=1)  # (B, C_s + C_i, H, W)
        return self.net(x)  # (B, 1, h, w) patch logits

