"""E2GAN-style pix2pix generator: the network whose LoRA weights weightgen learns to write.

Stem conv -> strided-conv downsampling -> ResNet blocks -> one transformer block (self-attention)
at the bottleneck -> resize + conv upsampling -> tanh.

Two options, both off by default (so existing checkpoints keep their exact architecture and outputs):
- `skips`: U-Net skips. Each down stage's output is concatenated onto the input of its mirrored up
  stage (same resolution, before the resize), whose own 3x3 conv takes the wider input; the stem's
  features are concatenated onto the head's input. Concatenation into the existing convs adds no
  module, so the names below (and LoRA's target patterns) are unchanged and the widened up convs
  are still adapted, and the conv can weigh encoder detail against decoder context per channel.
- `residual`: the network predicts a change to the source: output = clamp(source + head(h), -1, 1),
  with the gradient passed straight through the clamp (so overshooting pixels still learn), and a
  zero-initialised head, so a fresh generator is the identity.
 Upsampling is resize + Conv2d, never
ConvTranspose2d, because peft cannot put a LoRA on a transposed conv. Padding is zeros everywhere
so a merged LoRA gives exactly the unmerged output (peft's LoRA convs pad with zeros).

Module names are chosen for LoRA targeting (see gan.config.DEFAULT_LORA_TARGETS):
down.{i}.conv, res.{i}.conv1/conv2, attn.to_q/to_k/to_v/to_out, attn.mlp.0/2, up.{i}.conv, head.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from gan.config import GeneratorConfig
from gan.errors import GanError


def _norm(x: torch.Tensor) -> torch.Tensor:
    """Instance norm without affine parameters (pix2pix's choice): nothing to LoRA, nothing to drift."""
    return F.instance_norm(x)


class DownBlock(nn.Module):
    """Halve the resolution, double the channels: 3x3 conv, stride 2."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(_norm(self.conv(x)))


class UpBlock(nn.Module):
    """Double the resolution by resizing, then a 3x3 conv (instead of ConvTranspose2d)."""

    def __init__(self, c_in: int, c_out: int, mode: str, c_skip: int = 0):
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(c_in + c_skip, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:  # U-Net skip: (B, c_in + c_skip, h, w), concatenated before the resize
            x = torch.cat([x, skip], dim=1)
        align = {} if self.mode == "nearest" else {"align_corners": False}
        x = F.interpolate(x, scale_factor=2.0, mode=self.mode, **align)
        return F.relu(_norm(self.conv(x)))


class ResBlock(nn.Module):
    """pix2pix ResNet block: x + norm(conv(relu(norm(conv(x)))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(_norm(self.conv1(x)))
        return x + _norm(self.conv2(h))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP over the bottleneck's pixels; plain Linear layers so peft can adapt them."""

    def __init__(self, channels: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, mlp_ratio * channels), nn.GELU(),
                                 nn.Linear(mlp_ratio * channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, L, C), L = H*W
        # 1. self-attention
        y = self.norm1(tokens)
        q, k, v = (proj(y).view(b, h * w, self.heads, c // self.heads).transpose(1, 2)
                   for proj in (self.to_q, self.to_k, self.to_v))  # (B, heads, L, C/heads)
        attn = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, C/heads)
        tokens = tokens + self.to_out(attn.transpose(1, 2).reshape(b, h * w, c))  # (B, L, C)
        # 2. MLP
        tokens = tokens + self.mlp(self.norm2(tokens))  # (B, L, C)
        return tokens.transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)


class Generator(ModelMixin, ConfigMixin):
    """Image-to-image generator mapping a source image in [-1, 1] to an edited image in [-1, 1].

    Saved and loaded as a diffusers-style folder (config.json + diffusion_pytorch_model.safetensors)
    with `save_pretrained` / `from_pretrained`. The arguments are those of `gan.config.GeneratorConfig`,
    which validates them.
    """

    # gan.lora.fingerprint ignores these options at these values: the architecture is then the one
    # checkpoints made before the options existed have.
    fingerprint_neutral: ClassVar[dict] = {"skips": False, "residual": False}

    @register_to_config
    def __init__(self, in_channels: int = 3, out_channels: int = 3, base_channels: int = 32,
                 n_downsample: int = 2, n_res_blocks: int = 3, attention_heads: int = 4, mlp_ratio: int = 2,
                 upsample_mode: str = "nearest", image_size: int = 64, skips: bool = False, residual: bool = False):
        super().__init__()
        cfg = GeneratorConfig(in_channels, out_channels, base_channels, n_downsample, n_res_blocks,
                              attention_heads, mlp_ratio, upsample_mode, image_size,  # type: ignore[arg-type]
                              skips, residual)
        widths = [base_channels * 2**i for i in range(n_downsample + 1)]  # stem width ... bottleneck width
        self.stem = nn.Conv2d(in_channels, base_channels, 7, padding=3)
        self.down = nn.ModuleList(DownBlock(widths[i], widths[i + 1]) for i in range(n_downsample))
        self.res = nn.ModuleList(ResBlock(cfg.bottleneck_channels) for _ in range(n_res_blocks))
        self.attn = TransformerBlock(cfg.bottleneck_channels, attention_heads, mlp_ratio)
        # With skips, up stage i also takes down stage i's output (widths[i + 1] channels), the head the stem's.
        self.up = nn.ModuleList(UpBlock(widths[i + 1], widths[i], upsample_mode, widths[i + 1] if skips else 0)
                                for i in reversed(range(n_downsample)))
        self.head = nn.Conv2d(base_channels * (2 if skips else 1), out_channels, 7, padding=3)
        if residual:  # start as the identity: zero change to the source (after the RNG draws, so the rest matches)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @classmethod
    def from_gan_config(cls, config: GeneratorConfig) -> "Generator":
        return cls(**config.to_dict())

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse inputs the network would silently mangle (odd sizes would be cropped by the strides)."""
        cfg = self.config
        if x.dim() != 4:
            raise GanError(f"generator input should be (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise GanError(f"generator expects {cfg.in_channels} input channels, got {x.shape[1]} "
                                 f"(input shape {tuple(x.shape)})")
        factor = 2**cfg.n_downsample
        if x.shape[2] % factor or x.shape[3] % factor:
            raise GanError(f"image size {x.shape[2]}x{x.shape[3]} is not divisible by {factor} "
                                 f"(2**n_downsample); resize or crop the images")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        # 1. stem: (B, C_in, H, W) -> (B, c, H, W)
        h = F.relu(_norm(self.stem(x)))
        skips = [h]  # the stem's and each down stage's output, for the U-Net skips
        # 2. downsample: -> (B, c * 2**n, H / 2**n, W / 2**n)
        for block in self.down:
            h = block(h)
            skips.append(h)
        # 3. ResNet blocks, then one transformer block at the bottleneck (same shape)
        for block in self.res:
            h = block(h)
        h = self.attn(h)
        # 4. upsample back: -> (B, c, H, W); with skips, up stage k joins down stage n - 1 - k's output
        use_skips = self.config.skips
        for k, block in enumerate(self.up):
            h = block(h, skips[len(self.up) - k] if use_skips else None)
        if use_skips:
            h = torch.cat([h, skips[0]], dim=1)  # (B, 2c, H, W): the stem's features to the head
        # 5. head: -> (B, C_out, H, W) in [-1, 1]
        if not self.config.residual:
            return torch.tanh(self.head(h))
        # residual: source + change, clamped to the image range; straight-through so clamped pixels keep a gradient
        out = x + self.head(h)
        return out + (out.clamp(-1.0, 1.0) - out).detach()
