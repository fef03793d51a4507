"""The weight generator's network: a text-conditioned 1D UNet over blocks of LoRA weights.

Each input is one block of `block_size` flattened, normalized LoRA values. What the network must
know besides the noisy block is *which* block it is (the chunk index n) and *which* concept (the
text). Following Gong et al. (ECCV'24): every ResBlock gets emb = emb_t + emb_n (sinusoidal
timestep and chunk-index encodings, each through an MLP), every transformer block
cross-attends to the text token features. 3 encoder stages with downsampling, a middle
transformer, a mirrored decoder with skip connections.

Two CPU-speed choices (both in the config): the input conv reads `patch_size` values per
position (a 256-value block becomes 32 positions at patch 8), and text keys/values are computed
once per *concept* and shared by all its blocks via `text_index`, since `init` denoises all N
blocks of many concepts in one batch.

Beyond the paper (each can be switched off in the config): per-chunk memory that costs no
compute - a learned vector per chunk index added to emb_n, a learned output block per index, and
a per-index basis mixed linearly by the text. On a synthetic zoo (scripts/bench_init.py quality)
the plain UNet at CPU size stayed at the zoo mean, with these it gets well below it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ResBlock1D(nn.Module):
    """GroupNorm -> SiLU -> Conv1d, twice; the embedding enters as a scale/shift between them."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        # scale/shift (FiLM) rather than a plain add: the chunk index must steer every channel.
        self.emb_proj = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, L)
        scale, shift = self.emb_proj(F.silu(emb))[..., None].chunk(2, dim=1)  # (B, out, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))  # (B, out, L)
        return self.skip(x) + h


class Transformer1D(nn.Module):
    """Self-attention over positions, cross-attention to the text tokens, MLP; pre-norm residuals."""

    def __init__(self, ch: int, heads: int, text_dim: int, mlp_ratio: int = 2):
        super().__init__()
        if ch % heads:
            raise ValueError(f"channels must be divisible by num_heads, got {ch} and {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.attn_out = nn.Linear(ch, ch)
        self.norm2 = nn.LayerNorm(ch)
        self.q_text = nn.Linear(ch, ch)
        self.kv_text = nn.Linear(text_dim, 2 * ch)
        self.cross_out = nn.Linear(ch, ch)
        self.norm3 = nn.LayerNorm(ch)
        self.mlp = nn.Sequential(nn.Linear(ch, mlp_ratio * ch), nn.GELU(), nn.Linear(mlp_ratio * ch, ch))

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, L, C = t.shape
        return t.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, H, L, C/H)

    def forward(
        self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, text_index: torch.Tensor
    ) -> torch.Tensor:
        B, C, L = x.shape
        h = x.transpose(1, 2)  # (B, L, C)

        # 1. self-attention across the positions of one block
        q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)
        a = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))  # (B, H, L, C/H)
        h = h + self.attn_out(a.transpose(1, 2).reshape(B, L, C))

        # 2. cross-attention to the concept's text tokens; keys/values once per concept (U of them)
        k, v = self.kv_text(text).chunk(2, dim=-1)  # (U, T, C) each
        k, v = self._split(k)[text_index], self._split(v)[text_index]  # (B, H, T, C/H)
        mask = text_mask[text_index][:, None, None, :]  # (B, 1, 1, T) True = attend
        q = self._split(self.q_text(self.norm2(h)))  # (B, H, L, C/H)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = h + self.cross_out(a.transpose(1, 2).reshape(B, L, C))

        # 3. position-wise MLP
        h = h + self.mlp(self.norm3(h))
        return h.transpose(1, 2)  # (B, C, L)


class WeightUNet1D(ModelMixin, ConfigMixin):
    """Predicts (noise | clean block | v) for a batch of noisy weight blocks.

    Args:
        block_size: values per block (b); must be divisible by patch_size * 2**(stages-1).
        in_channels: channels of a block (1: a block is a flat run of weights).
        patch_size: values read per position by the input conv (1 = the paper's full resolution).
        channels: width of each encoder stage; its length is the number of stages (3 in the paper).
        layers_per_stage: ResBlocks per encoder stage (the decoder mirrors it).
        attention_stages: which stages carry a transformer block (the middle always does);
            None: only the deepest.
        num_heads: attention heads in every transformer block.
        text_dim: width of the text encoder's token features (384 for MiniLM, 512/768 for CLIP).
        max_chunk_index: chunk indices must be below this; the trainer sets it to the layout's
            block count (it also sizes the per-chunk tables below).
        index_table: also learn a free vector per chunk index, added to emb_n. Sinusoids of nearby
            indices are alike, yet neighbouring blocks hold unrelated weights; a table lets the
            network tell them apart sharply at no compute cost.
        index_template: learn one output block per chunk index, added to the output (with
            prediction_type="sample" it absorbs the zoo's mean block, e.g. the shared LoRA-A init,
            so the network spends its capacity on what differs between concepts).
        chunk_text_rank: learn, per chunk index, a basis of this many output blocks, mixed by a
            linear map of the pooled text (0 disables). A zoo's concept-to-concept variation is
            largely linear in a few directions per block; this head holds those directions at
            no compute cost (a generator that must memorize N*rank*b numbers through its convs
            needs many more parameters, and time, than the CPU budget allows).
        text_in_emb: also add the masked mean of the text tokens to the ResBlock embedding, so
            stages without attention see the concept too.
        norm_groups: GroupNorm groups in ResBlocks.
        dropout: dropout inside ResBlocks.
    """

    @register_to_config
    def __init__(
        self,
        block_size: int = 256,
        in_channels: int = 1,
        patch_size: int = 8,
        channels: tuple[int, ...] = (32, 48, 64),
        layers_per_stage: int = 1,
        attention_stages: tuple[bool, ...] | None = (False, False, True),
        num_heads: int = 4,
        text_dim: int = 384,
        max_chunk_index: int = 512,
        index_table: bool = True,
        index_template: bool = True,
        chunk_text_rank: int = 16,
        text_in_emb: bool = True,
        norm_groups: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        channels = tuple(channels)
        n_stages = len(channels)
        if attention_stages is None:  # no attention at the longest sequence: it costs the most
            attention_stages = (False,) * (n_stages - 1) + (True,)
        attention_stages = tuple(attention_stages)
        if n_stages < 1 or any(c <= 0 or c % norm_groups for c in channels):
            raise ValueError(f"channels must be positive multiples of norm_groups={norm_groups}, got {channels}")
        if len(attention_stages) != n_stages:
            raise ValueError(f"attention_stages needs one flag per stage ({n_stages}), got {attention_stages}")
        if block_size <= 0 or patch_size <= 0 or block_size % (patch_size * 2 ** (n_stages - 1)):
            raise ValueError(
                f"block_size must be divisible by patch_size * 2**(stages-1) = "
                f"{patch_size * 2 ** (n_stages - 1)}, got block_size={block_size}"
            )
        if layers_per_stage < 1:
            raise ValueError(f"layers_per_stage must be >= 1, got {layers_per_stage}")
        if max_chunk_index < 1:
            raise ValueError(f"max_chunk_index must be >= 1, got {max_chunk_index}")

        if chunk_text_rank < 0:
            raise ValueError(f"chunk_text_rank must be >= 0, got {chunk_text_rank}")

        c0 = channels[0]
        emb_dim = 4 * c0
        # 1. conditioning: timestep and chunk index share the sinusoid recipe, not the MLP
        self.time_proj = Timesteps(c0, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_mlp = TimestepEmbedding(c0, emb_dim)
        self.index_proj = Timesteps(c0, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.index_mlp = TimestepEmbedding(c0, emb_dim)
        self.text_mlp = TimestepEmbedding(text_dim, emb_dim) if text_in_emb else None
        # per-chunk memory (see the Args): zero-init, so training starts from the plain UNet
        self.chunk_table = nn.Embedding(max_chunk_index, emb_dim) if index_table else None
        if self.chunk_table is not None:
            nn.init.zeros_(self.chunk_table.weight)
        self.chunk_template = nn.Parameter(torch.zeros(max_chunk_index, in_channels, block_size)) if index_template else None
        self.chunk_text_proj = nn.Linear(text_dim, chunk_text_rank) if chunk_text_rank else None
        self.chunk_basis = (
            nn.Parameter(torch.zeros(max_chunk_index, chunk_text_rank, in_channels * block_size))
            if chunk_text_rank else None
        )

        def res(i: int, o: int) -> ResBlock1D:
            return ResBlock1D(i, o, emb_dim, norm_groups, dropout)

        def attn(ch: int) -> Transformer1D:
            return Transformer1D(ch, num_heads, text_dim)

        # 2. encoder
        self.conv_in = nn.Conv1d(in_channels, c0, kernel_size=patch_size, stride=patch_size)
        self.down_res, self.down_attn, self.down = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        prev = c0
        for i, ch in enumerate(channels):
            self.down_res.append(nn.ModuleList([res(prev if j == 0 else ch, ch) for j in range(layers_per_stage)]))
            self.down_attn.append(attn(ch) if attention_stages[i] else nn.Identity())
            self.down.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1) if i < n_stages - 1 else nn.Identity())
            prev = ch

        # 3. middle
        self.mid_res1, self.mid_attn, self.mid_res2 = res(prev, prev), attn(prev), res(prev, prev)

        # 4. decoder, mirrored; the first ResBlock of each stage takes the skip concatenated
        self.up_res, self.up_attn, self.up = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(n_stages)):
            ch = channels[i]
            self.up_res.append(nn.ModuleList([res(prev + ch if j == 0 else ch, ch) for j in range(layers_per_stage)]))
            self.up_attn.append(attn(ch) if attention_stages[i] else nn.Identity())
            self.up.append(nn.Conv1d(ch, ch, 3, padding=1) if i > 0 else nn.Identity())
            prev = ch

        # 5. output: back to patch_size values per position; zero-init so training starts from 0
        self.norm_out = nn.GroupNorm(norm_groups, c0)
        self.conv_out = nn.Conv1d(c0, in_channels * patch_size, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        block_index: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        text_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            sample: (B, C_in, b) noisy blocks.
            timestep: (B,) or a scalar diffusion step.
            block_index: (B,) chunk index of each block in the layout.
            text_tokens: (U, T, D) token features of U concepts; text_mask: (U, T) bool, True = token.
            text_index: (B,) row of text_tokens for each block; None means U == B, one row each.
        Returns:
            (B, C_in, b) the model output, read according to the scheduler's prediction type.
        """
        cfg = self.config
        B, C_in, b = sample.shape
        if b != cfg.block_size or C_in != cfg.in_channels:
            raise ValueError(f"expected blocks of shape (B, {cfg.in_channels}, {cfg.block_size}), got {tuple(sample.shape)}")
        if block_index.min() < 0 or block_index.max() >= cfg.max_chunk_index:
            raise ValueError(f"chunk index out of range [0, {cfg.max_chunk_index}): max {int(block_index.max())}")
        if text_index is None:
            text_index = torch.arange(B, device=sample.device)
        text_mask = text_mask.bool()
        timestep = torch.as_tensor(timestep, device=sample.device).expand(B)

        # 1. embeddings: emb = emb_t + emb_n (+ pooled text)
        dtype = self.conv_in.weight.dtype
        emb = self.time_mlp(self.time_proj(timestep).to(dtype))  # (B, E)
        emb = emb + self.index_mlp(self.index_proj(block_index).to(dtype))  # (B, E)
        if self.chunk_table is not None:
            emb = emb + self.chunk_table(block_index)  # (B, E)
        m = text_mask[..., None].to(text_tokens.dtype)  # (U, T, 1)
        pooled = (text_tokens * m).sum(1) / m.sum(1).clamp(min=1)  # (U, D)
        if self.text_mlp is not None:
            emb = emb + self.text_mlp(pooled)[text_index]  # (B, E)
        ctx = (text_tokens, text_mask, text_index)

        # 2. encoder
        h = self.conv_in(sample)  # (B, c0, b / patch)
        skips = []
        for stage, attn, down in zip(self.down_res, self.down_attn, self.down):
            for block in stage:
                h = block(h, emb)
            h = attn(h, *ctx) if isinstance(attn, Transformer1D) else h
            skips.append(h)  # (B, ch_i, L_i)
            h = down(h)  # (B, ch_i, L_i / 2) except after the last stage

        # 3. middle
        h = self.mid_attn(self.mid_res1(h, emb), *ctx)
        h = self.mid_res2(h, emb)  # (B, ch_last, L_last)

        # 4. decoder with skips
        for stage, attn, up in zip(self.up_res, self.up_attn, self.up):
            h = torch.cat([h, skips.pop()], dim=1)  # (B, ch_prev + ch_i, L_i)
            for block in stage:
                h = block(h, emb)
            h = attn(h, *ctx) if isinstance(attn, Transformer1D) else h
            if isinstance(up, nn.Conv1d):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))  # (B, ch_i, 2 L_i)

        # 5. output: (B, C_in * p, L) -> (B, C_in, b), the exact inverse of conv_in's patching
        out = self.conv_out(F.silu(self.norm_out(h)))
        L = out.shape[-1]
        out = out.view(B, C_in, cfg.patch_size, L).transpose(2, 3).reshape(B, C_in, b)
        if self.chunk_template is not None:
            out = out + self.chunk_template[block_index]  # (B, C_in, b)
        if self.chunk_basis is not None:
            coef = self.chunk_text_proj(pooled)[text_index]  # (B, R)
            linear = torch.bmm(coef[:, None, :], self.chunk_basis[block_index])  # (B, 1, C_in * b)
            out = out + linear.view(B, C_in, b)
        return out
