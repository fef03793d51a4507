"""The diffusion editor: diffusers' StableDiffusionInstructPix2PixPipeline, batched and seeded.

This is the paper's data engine (a diffusion model edits real photos per concept). Its weights
come from a local folder or the Hugging Face cache; with HF_HUB_OFFLINE=1 nothing is downloaded.
`save_tiny_random_pipeline` writes a tiny random pipeline of the same architecture (as diffusers'
own tests build it) so the code path runs, and is tested, on machines without the real weights.
diffusers' pipelines, transformers and open_clip are imported where used: an optional backend that
costs seconds to import should not slow the default (procedural) editor.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from prompts.identity import normalize_concept
from weightgen.errors import WeightgenError
from weightgen.pairs.editors.config import InstructPix2PixConfig
from weightgen.pairs.editors.images import from_float_images, to_float_images


class InstructPix2PixEditor:
    name = "instruct-pix2pix"

    def __init__(self, config: InstructPix2PixConfig | None = None, pipeline: Any = None, **overrides):
        if config is not None and overrides:
            raise WeightgenError(f"pass either a config or keyword options, not both: {sorted(overrides)}")
        self.config = config or InstructPix2PixConfig(**overrides)
        device = self.config.device
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.pipe = pipeline if pipeline is not None else load_pipeline(self.config.model, self.device)
        self.pipe.set_progress_bar_config(disable=True)

    def describe(self) -> dict:
        return {"name": self.name, **asdict(self.config)}

    @torch.no_grad()
    def edit(self, sources: Any, concept: str, seed: int | None = None) -> Any:
        """(N, 3, H, W) uint8 or float [0, 1] -> edited images of the same shape and kind.

        Image i is denoised from a generator seeded with (seed, i), so results do not depend on
        the batch size.
        """
        cfg = self.config
        x, was_uint8 = to_float_images(sources)
        n, _, h, w = x.shape
        instruction = cfg.prompt_template.format(concept=normalize_concept(concept))
        seed = cfg.seed if seed is None else int(seed)
        gen_device = "cpu" if self.device == "mps" else self.device
        outs = []
        for start in range(0, n, cfg.batch_size):
            chunk = x[start : start + cfg.batch_size]
            work = F.interpolate(chunk, size=(cfg.work_size, cfg.work_size), mode="bicubic", align_corners=False)
            generators = [
                torch.Generator(device=gen_device).manual_seed(seed * 1_000_003 + start + i) for i in range(len(chunk))
            ]
            result = self.pipe(
                prompt=[instruction] * len(chunk),
                image=work.clamp(0, 1).to(self.device, self.pipe.unet.dtype),
                num_inference_steps=cfg.steps,
                guidance_scale=cfg.guidance_scale,
                image_guidance_scale=cfg.image_guidance_scale,
                generator=generators,
                output_type="pt",
            ).images  # (b, 3, work, work) in [0, 1]
            outs.append(
                F.interpolate(result.float().cpu(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            )
        return from_float_images(torch.cat(outs) if outs else x, was_uint8)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def load_pipeline(model: str, device: str = "cpu"):
    """The pipeline from a local folder or a hub id (local cache only when HF_HUB_OFFLINE=1)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    local = Path(model).expanduser()
    looks_like_path = local.is_absolute() or model.startswith((".", "~")) or local.exists()
    if looks_like_path and not local.is_dir():
        raise WeightgenError(f"instruct-pix2pix model folder not found: {model}")
    try:
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            str(local) if local.is_dir() else model,
            safety_checker=None,
            requires_safety_checker=False,
            local_files_only=local.is_dir() or _offline(),
        )
    except (OSError, ValueError) as e:
        if local.is_dir():
            where = "the folder"
        else:
            where = "the local Hugging Face cache (HF_HUB_OFFLINE=1)" if _offline() else "the hub"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightgenError(f"cannot load instruct-pix2pix model {model!r} from {where}: {reason}") from None
    if device.startswith("cuda"):  # half precision on GPU, as the model is meant to run
        return pipe.to(device, torch.float16)
    return pipe.to(device)  # float32 on CPU, where fp16 is slow


# ------------------------------------------------------------------ tiny pipeline for tests


def clip_tokenizer_from_open_clip(out_dir: str | Path):
    """A transformers CLIPTokenizer (49408 tokens) built from the BPE merges open_clip ships.

    CLIP's vocabulary is a pure function of its merges file: 256 byte symbols, the same with an
    end-of-word mark, one token per merge, then the two special tokens. Writing vocab.json and
    merges.txt from it gives the real CLIP tokenizer without any download.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer.from_pretrained(str(out), model_max_length=77)


def save_tiny_random_pipeline(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random InstructPix2Pix pipeline folder (diffusers' fast-test components).

    UNet with 8 input channels (noisy latents + source-image latents), a 2-block VAE, a 5-layer
    CLIP text encoder of width 32 over the full CLIP vocabulary, a PNDM scheduler.
    """
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=49408,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = clip_tokenizer_from_open_clip(tmp)
        pipe = StableDiffusionInstructPix2PixPipeline(
            unet=unet,
            scheduler=PNDMScheduler(skip_prk_steps=True),
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(str(out_dir))
    return Path(out_dir)
