"""The pix2pix training loop on accelerate: device, mixed precision and multi-process come from there.

One loop serves every use: base training of a full generator on several concepts, LoRA training
with the base frozen (only parameters with requires_grad train), and pix2pix from scratch.
It stops at `max_steps` or when the training time passes `max_seconds` (evaluation and
checkpoints excluded), evaluates on the test pairs at the start, every `eval_every` steps, at
checkpoints and at the end, and returns a history of records
{"step", "seconds", "losses": {...means since the last record}, "metrics": {"l1", "psnr", "ssim"}}.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from accelerate import Accelerator
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column
from torch import nn

from gan.config import GanTrainConfig
from gan.data import PairedData
from gan.errors import GanError
from gan.losses import GAN_LOSSES, discriminator_losses, generator_losses
from gan.metrics import evaluate_pairs
from gan.train_state import load_state, save_state

EvalCallback = Callable[[int, dict], None]  # (step, record) after each evaluation, main process only
CheckpointFn = Callable[[int, nn.Module, dict], None]  # (step, unwrapped generator, record), main process only


def _has_accelerator() -> bool:
    api = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU, ...
    return bool(api.is_available()) if api is not None else torch.cuda.is_available()


class Pix2PixTrainer:
    def __init__(self, generator: nn.Module, discriminator: nn.Module, data: PairedData, config: GanTrainConfig,
                 callback: EvalCallback | None = None, checkpoint_fn: CheckpointFn | None = None,
                 progress: bool = True, accelerator: Accelerator | None = None, state_dir: str | None = None,
                 state_every: float = 300.0):
        """state_dir: resume from the training state there, if any, and save it every `state_every`
        training seconds and at the end (gan.train_state; single process)."""
        self.config, self.data, self.callback, self.checkpoint_fn = config, data, callback, checkpoint_fn
        self.state_dir, self.state_every = state_dir, state_every
        # cpu=True without an accelerator too: accelerate only sets up multi-process CPU (gloo) when told "cpu".
        cpu = config.cpu or not _has_accelerator()
        self.accelerator = accelerator or Accelerator(cpu=cpu, mixed_precision=config.mixed_precision)
        g_params = [p for p in generator.parameters() if p.requires_grad]
        if not g_params:
            raise GanError("the generator has no trainable parameters (is everything frozen?)")
        opt_g = torch.optim.Adam(g_params, lr=config.lr, betas=config.betas)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d or config.lr, betas=config.betas)
        self.generator, self.discriminator, self.opt_g, self.opt_d = self.accelerator.prepare(
            generator, discriminator, opt_g, opt_d)
        # The G step goes through the unwrapped D: no DDP gradient sync is expected for a frozen D.
        self._d_raw = self.accelerator.unwrap_model(self.discriminator)
        self.gan_loss = GAN_LOSSES[config.gan_mode]
        # Each process draws its own batches (seed + rank), so N processes see N different batches per step.
        self.sampler = data.sampler(config.batch_size, config.seed + self.accelerator.process_index, config.flip,
                                    device=self.accelerator.device)
        self.progress = progress and self.accelerator.is_main_process
        self.step, self.seconds = 0, 0.0
        self.history: list[dict] = []
        self._loss_sums: dict[str, float] = {}
        self._loss_count = 0
        self.resumed = load_state(state_dir, self) if state_dir is not None else None

    @property
    def unwrapped_generator(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.generator)

    def run_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """One pix2pix iteration: G(A) once, then a D update, then a G update with D frozen."""
        source, real = batch  # (B, 3, H, W) each, in [-1, 1]
        fake = self.generator(source)  # (B, 3, H, W)
        # 1. D: real pairs real, generated pairs fake.
        self.opt_d.zero_grad(set_to_none=True)
        d_losses = discriminator_losses(self.discriminator, source, real, fake, self.gan_loss,
                                        self.config.label_smoothing)
        self.accelerator.backward(d_losses["loss_D"])
        self.opt_d.step()
        # 2. G: fool the (frozen) D and match the target.
        self.opt_g.zero_grad(set_to_none=True)
        self._d_raw.requires_grad_(False)
        g_losses = generator_losses(self._d_raw, source, real, fake, self.gan_loss, self.config.lambda_l1)
        self.accelerator.backward(g_losses["loss_G"])
        self._d_raw.requires_grad_(True)
        self.opt_g.step()
        return {k: float(v.detach()) for k, v in {**d_losses, **g_losses}.items()}

    def evaluate(self) -> dict[str, float]:
        """L1 / PSNR / SSIM on the test pairs; each process takes a shard, the metrics sum across processes."""
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        return evaluate_pairs(self.unwrapped_generator, self.data.test_source[rank::world],
                              self.data.test_target[rank::world], batch_size=max(self.config.batch_size, 16),
                              device=self.accelerator.device)

    def record(self) -> dict:
        """Evaluate, append a history record (mean losses since the last record) and run the callback."""
        losses = {k: v / self._loss_count for k, v in self._loss_sums.items()} if self._loss_count else {}
        if losses and self.accelerator.num_processes > 1:
            reduced = self.accelerator.reduce(torch.tensor(list(losses.values()), device=self.accelerator.device),
                                              reduction="mean")
            losses = dict(zip(losses, reduced.tolist()))
        rec = {"step": self.step, "seconds": round(self.seconds, 3), "losses": losses, "metrics": self.evaluate()}
        self._loss_sums, self._loss_count = {}, 0
        self.history.append(rec)
        if self.callback and self.accelerator.is_main_process:
            self.callback(self.step, rec)
        return rec

    def save_checkpoint(self, rec: dict) -> None:
        if self.checkpoint_fn and self.accelerator.is_main_process:
            self.checkpoint_fn(self.step, self.unwrapped_generator, rec)
        self.accelerator.wait_for_everyone()

    def _out_of_time(self) -> bool:
        if self.config.max_seconds is None:
            return False
        # The main process decides, so every process stops at the same step (no hung collective).
        if self.accelerator.is_main_process and self.seconds >= self.config.max_seconds:
            self.accelerator.set_trigger()
        return self.accelerator.check_trigger()

    def run_loop(self) -> list[dict]:
        cfg = self.config
        self.generator.train()
        self.discriminator.train()
        if not self.history:
            self.record()  # step 0: the starting point every comparison needs
        saved_at = self.seconds
        with _progress_bar(cfg.max_steps, self.step, enabled=self.progress, max_seconds=cfg.max_seconds) as bar:
            while self.step < cfg.max_steps and not self._out_of_time():
                t0 = time.perf_counter()
                losses = self.run_step(next(self.sampler))
                self.seconds += time.perf_counter() - t0
                self.step += 1
                for k, v in losses.items():
                    self._loss_sums[k] = self._loss_sums.get(k, 0.0) + v
                self._loss_count += 1
                rec = None
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step in cfg.checkpoint_steps:
                    rec = self.record()
                if self.step in cfg.checkpoint_steps:
                    self.save_checkpoint(rec)
                bar(self.step, losses, rec, seconds=self.seconds)
                if self.state_dir is not None and self.seconds - saved_at >= self.state_every:
                    save_state(self.state_dir, self)
                    saved_at = self.seconds
        if self.history[-1]["step"] != self.step:
            self.record()
        if self.state_dir is not None:
            save_state(self.state_dir, self)
        return self.history


class _progress_bar:
    """rich progress bar showing losses and the last test L1 / PSNR; a no-op when disabled.

    With a time budget (`max_seconds`) the bar fills with training seconds ("12/60 s, step 85"),
    since the step cap is then only a safety limit and its total says nothing about the end.
    """

    def __init__(self, total: int, start: int, enabled: bool, max_seconds: float | None = None):
        self.enabled, self.total, self.start, self.max_seconds = enabled, total, start, max_seconds
        self.last_metrics: dict | None = None

    def __enter__(self):
        if self.enabled:
            if self.max_seconds:
                counter = TextColumn("{task.completed:.0f}/{task.total:.0f} s, step {task.fields[step]}",
                                     table_column=Column(min_width=20))
                total, completed = self.max_seconds, 0.0
            else:
                counter, total, completed = MofNCompleteColumn(), self.total, self.start
            # On a narrow terminal the bar shrinks and the description's tail (the losses) is cut, not the counter.
            self.progress = Progress(TextColumn("train", table_column=Column(min_width=5)), BarColumn(), counter,
                                     TimeElapsedColumn(table_column=Column(min_width=7)),
                                     TextColumn("{task.description}", table_column=Column(no_wrap=True)))
            self.progress.start()
            self.task = self.progress.add_task("", total=total, completed=completed, step=self.start)
        return self

    def __call__(self, step: int, losses: dict[str, float], rec: dict | None, seconds: float | None = None) -> None:
        if not self.enabled:
            return
        if rec is not None:
            self.last_metrics = rec["metrics"]
        text = f"D {losses['loss_D']:.3f}  G_GAN {losses['loss_G_GAN']:.3f}  G_L1 {losses['loss_G_L1']:.4f}"
        if self.last_metrics is not None:
            text = f"test L1 {self.last_metrics['l1']:.4f}  PSNR {self.last_metrics['psnr']:.2f} | " + text
        if self.max_seconds and seconds is not None:
            completed = min(seconds, self.max_seconds)
        else:
            completed = step
        self.progress.update(self.task, completed=completed, description=text, step=step)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()
