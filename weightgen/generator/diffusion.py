"""The noise process over weight blocks: training loss and sampling, on diffusers schedulers.

DDPMScheduler owns the forward process (betas, add_noise, v targets) for training; sampling uses
DDIMScheduler's alpha table. The network only maps (x_t, t, chunk index, text) -> model output;
this module decides what that output means (`prediction_type`) and how to step with it.

Single-step generation (the paper's and `init`'s default) starts from pure noise at `t_start`,
with no data at all, and reads the clean blocks off one network call. With `prediction_type=
"sample"` that call returns the model's estimate of E[x0 | text, chunk index] directly; with
"epsilon" x0 must be recovered as (x_t - sqrt(1-a) eps) / sqrt(a), which at t=999 amplifies the
network's error ~150x, hence "sample" is the default here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from weightgen.generator.config import PREDICTION_TYPES, DiffusionConfig


class WeightDiffusion:
    """Training loss and samplers for a WeightUNet1D under one DiffusionConfig."""

    def __init__(self, config: DiffusionConfig):
        self.config = config
        common = dict(
            num_train_timesteps=config.num_train_timesteps,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type,
            clip_sample=False,  # normalized weights are not images in [-1, 1]
        )
        self.train_scheduler = DDPMScheduler(**common)
        # trailing spacing starts at T-1, which matches our t_start default (and lets tests compare)
        self.sample_scheduler = DDIMScheduler(**common, timestep_spacing="trailing", set_alpha_to_one=True)
        self.alphas_cumprod = self.sample_scheduler.alphas_cumprod  # (T,)

    # ---- training -------------------------------------------------------------------------

    def training_losses(
        self, model, x0: torch.Tensor, model_kwargs: dict, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Noise clean blocks x0 (B, C, b) at uniform random t and score the network's output.

        Returns {"loss": scalar to backprop, "mse_x0": the error on the clean blocks implied by
        the output, comparable across prediction types}.
        """
        B, device = x0.shape[0], x0.device
        if self.config.input_noise > 0:  # p-diff: a little noise on the data makes the map robust
            x0 = x0 + self.config.input_noise * torch.randn(x0.shape, generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        t = torch.randint(0, self.config.num_train_timesteps, (B,), generator=generator, device=device)
        x_t = self.train_scheduler.add_noise(x0, noise, t)
        out = model(x_t, t, **model_kwargs)  # (B, C, b)
        target = self._target(x0, noise, t)
        loss = F.mse_loss(out.float(), target.float())
        with torch.no_grad():
            x0_hat, _ = self.split_output(out.float(), x_t.float(), t)
            mse_x0 = F.mse_loss(x0_hat, x0.float())
        return {"loss": loss, "mse_x0": mse_x0}

    def _target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kind = self.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "sample":
            return x0
        if kind == "v_prediction":
            return self.train_scheduler.get_velocity(x0, noise, t)
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {kind!r}")

    def split_output(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from the network output at timesteps t (B,), per prediction type."""
        a = self.alphas_cumprod.to(x_t.device)[t].to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))  # (B, 1, 1)
        sa, s1a = a.sqrt(), (1 - a).sqrt()
        kind = self.config.prediction_type
        if kind == "epsilon":
            return (x_t - s1a * out) / sa, out
        if kind == "sample":
            return out, (x_t - sa * out) / s1a
        if kind == "v_prediction":
            return sa * x_t - s1a * out, sa * out + s1a * x_t
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {kind!r}")

    # ---- sampling -------------------------------------------------------------------------

    def timesteps(self, steps: int, t_start: int | None = None) -> list[int]:
        """The `steps` timesteps a sampler visits, from t_start down, evenly spaced ("trailing")."""
        T = self.config.num_train_timesteps
        t_start = self.config.t_start if t_start is None else t_start
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if not 0 <= t_start < T:
            raise ValueError(f"t_start must be in [0, {T}), got {t_start!r}")
        if steps > t_start + 1:
            raise ValueError(f"steps={steps} is more than the {t_start + 1} timesteps below t_start={t_start}")
        stride = (t_start + 1) / steps
        return [round(t_start + 1 - k * stride) - 1 for k in range(steps)]

    def sample(
        self,
        model,
        noise: torch.Tensor,
        model_kwargs: dict,
        steps: int = 1,
        t_start: int | None = None,
    ) -> torch.Tensor:
        """Clean blocks (B, C, b) from pure noise x_t (B, C, b) placed at t_start.

        steps=1: one network call, x0 read off its output (single-step generation).
        steps>1: deterministic DDIM (eta=0) over `timesteps(steps, t_start)`. The update
        x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) eps_hat is written out on the DDIM
        scheduler's alpha table because DDIMScheduler.step derives the previous timestep from a
        fixed stride ending at T-1; with t_start = T-1 both give the same trajectory (tested).
        The caller draws `noise`, so its seeding (per concept) stays the caller's decision.
        """
        ts = self.timesteps(steps, t_start)
        x = noise
        alphas = self.alphas_cumprod.to(noise.device)
        for k, t in enumerate(ts):
            t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            with torch.no_grad():
                out = model(x, t_batch, **model_kwargs)
            x0_hat, eps_hat = self.split_output(out.float(), x.float(), t_batch)
            if k == len(ts) - 1:
                return x0_hat
            a_prev = alphas[ts[k + 1]]
            x = (a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps_hat).to(noise.dtype)
        raise AssertionError("unreachable: timesteps() returns at least one step")
