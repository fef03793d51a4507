"""Train many concepts' LoRAs on one frozen base, C at a time: one batched pix2pix step for every slot.

    trainer = MultiLoraTrainer(add_lora(base_g, settings), base_d, config, slots=8)
    for result in trainer.run(jobs, lambda: FixedSchedule(config.max_steps, config.checkpoint_steps)):
        ...  # result.checkpoints: each checkpoint's LoRA and test record; result.history: as Pix2PixTrainer's

A slot is one concept with everything the sequential path (gan.lora_training.train_lora on
gan.trainer.Pix2PixTrainer, single process) gives it: the LoRA from the shared init, its own copy
of the base D, an Adam for each, its own batch stream (seed `config.seed`, as that trainer draws
on one process), its own step count, evaluations, checkpoints and stopping rule. Only the passes
are shared: one generator forward over every slot's batch (gan.multi_lora), one grouped pass of
their discriminators. Each slot's loss is the mean over its own batch and the slots' losses are
summed, so each slot's gradient is its own loss's: a slot trains as it would alone, up to float
rounding (grouped convolutions sum in another order).

When a slot's run ends (its schedule, gan.convergence) its result is yielded and the next job takes
the slot, so slots stay full while concepts stop at different steps. Nothing is written to disk
here: the caller saves a result (gan.multi_lora's `export` + gan.lora.save_adapter) when it comes.
Records are those of Pix2PixTrainer ({"step", "seconds", "losses", "metrics"}), evaluated on the
slot's test pairs at step 0, every `eval_every` steps, at checkpoints and at the end; "seconds"
is the slot's share of the pass's training time (a step of C slots counts 1/C to each).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from peft import PeftModel
from torch import nn

from gan.config import GanTrainConfig
from gan.data import PairedData, PairSampler, to_float
from gan.errors import GanError
from gan.losses import GAN_LOSSES, discriminator_loss_terms, generator_loss_terms
from gan.metrics import PairedMetrics
from gan.multi_lora import MultiLoraGenerator, SlotLora, multi_discriminate

VAL_SEED = 7919  # the validation crops' windows: fixed, and apart from the batch stream's seed
LOSS_KEYS = ("loss_D", "loss_D_fake", "loss_D_real", "loss_G", "loss_G_GAN", "loss_G_L1")


class Schedule(Protocol):
    """When a slot checks convergence, saves checkpoints and ends (gan.convergence)."""

    end: int | None  # None until known
    checkpoint_steps: tuple[int, ...]
    converged_step: int | None
    checks: list[tuple[int, float]]  # (step, validation L1) of each convergence check

    def needs_check(self, step: int) -> bool: ...

    def observe(self, step: int, value: float) -> None: ...


@dataclass
class SlotJob:
    """One concept to train: a name for the caller and its pairs (one concept's PairedData)."""

    name: str
    data: PairedData


@dataclass
class SlotCheckpoint:
    step: int
    lora: SlotLora  # detached CPU copies, peft's shapes
    record: dict  # the history record at this step (its test metrics go in the adapter's sidecar)


@dataclass
class SlotResult:
    job: SlotJob
    history: list[dict]
    checkpoints: list[SlotCheckpoint]
    converged_step: int | None  # None: a fixed schedule
    checks: list[tuple[int, float]]  # (step, validation L1) of a convergence schedule
    seconds: float  # this slot's share of the pass's wall time (training and evaluation)


@dataclass
class _Slot:
    job: SlotJob
    lora: SlotLora
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sampler: PairSampler
    schedule: Schedule
    val: tuple[torch.Tensor, torch.Tensor] | None  # fixed crops of the train canvases, float, on the device
    step: int = 0
    seconds: float = 0.0  # training share
    wall: float = 0.0  # training + evaluation share
    history: list[dict] = field(default_factory=list)
    checkpoints: list[SlotCheckpoint] = field(default_factory=list)
    loss_sums: dict[str, float] = field(default_factory=dict)
    loss_count: int = 0

    @property
    def done(self) -> bool:
        return self.schedule.end is not None and self.step >= self.schedule.end


def _device(cpu: bool) -> torch.device:
    """The accelerator when there is one and `cpu` is off (as accelerate picks it), else the CPU."""
    api = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU, ...
    if cpu or not (api.is_available() if api is not None else torch.cuda.is_available()):
        return torch.device("cpu")
    return api.current_accelerator() if api is not None else torch.device("cuda")


class MultiLoraTrainer:
    def __init__(self, peft_model: PeftModel, discriminator: nn.Module, config: GanTrainConfig, slots: int,
                 val_crops: int = 0, callback: Callable[[str, int, dict], None] | None = None,
                 grouped: bool | None = None):
        """peft_model: the base generator with the LoRA init every slot starts from (gan.lora.add_lora);
        discriminator: the base D each slot copies; val_crops: fixed crops of the train canvases per slot
        for a convergence schedule's checks (0: none); callback(job name, step, record) after each record;
        grouped: the slots' convs as grouped convolutions, or slot by slot (None: by device, gan.multi_lora)."""
        if not isinstance(slots, int) or slots < 1:
            raise GanError(f"`slots` should be a positive integer, got {slots!r}")
        if config.mixed_precision == "fp16":
            raise GanError("the batched LoRA path supports mixed_precision 'no' or 'bf16' (fp16 needs a loss "
                           "scaler per slot)")
        self.config, self.n_slots, self.val_crops, self.callback = config, slots, val_crops, callback
        self.device = _device(config.cpu)
        self.grouped = grouped
        self.generator = MultiLoraGenerator(peft_model, grouped).to(self.device)
        self.base_d = discriminator
        self.gan_loss = GAN_LOSSES[config.gan_mode]

    def _autocast(self):
        if self.config.mixed_precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- slots ------------------------------------------------------------------------------------------------------

    def start_slot(self, job: SlotJob, schedule: Schedule) -> _Slot:
        """A fresh slot for `job` (run() fills its slots with these; a benchmark can time run_step on them)."""
        cfg, device = self.config, self.device
        lora = self.generator.new_lora(device)
        disc = copy.deepcopy(self.base_d).to(device).train()
        opt_g = torch.optim.Adam([t for pair in lora.values() for t in pair], lr=cfg.lr, betas=cfg.betas)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d or cfg.lr, betas=cfg.betas)
        val = None
        if self.val_crops:
            src, tgt = job.data.fixed_train_crops(self.val_crops, VAL_SEED)
            val = (src.to(device), tgt.to(device))
        sampler = job.data.sampler(cfg.batch_size, cfg.seed, cfg.flip, device=device)
        return _Slot(job, lora, disc, opt_g, opt_d, sampler, schedule, val)

    def run(self, jobs: Iterable[SlotJob], schedule: Callable[[], Schedule]) -> Iterator[SlotResult]:
        """Train every job, `slots` at a time; yields each job's result as soon as its run ends."""
        queue, slots = iter(jobs), []
        while True:
            started = []
            while len(slots) < self.n_slots and (job := next(queue, None)) is not None:
                started.append(self.start_slot(job, schedule()))
            if started:
                self._record(started)  # step 0: the base's output, the start every comparison needs
                slots += started
            if not slots:
                return
            self._train_step(slots)
            self._after_step(slots)
            for slot in [s for s in slots if s.done]:
                slots.remove(slot)
                if slot.history[-1]["step"] != slot.step:
                    self._record([slot])
                yield SlotResult(slot.job, slot.history, slot.checkpoints, slot.schedule.converged_step,
                                 list(slot.schedule.checks), slot.wall)

    def _after_step(self, slots: list[_Slot]) -> None:
        """Per slot, in the sequential trainer's order: convergence check, evaluation, checkpoint."""
        cfg = self.config
        checking = [s for s in slots if s.schedule.needs_check(s.step)]
        if checking:
            for s, value in zip(checking, self._val_l1(checking)):
                s.schedule.observe(s.step, value)
                if any(step < s.step for step in s.schedule.checkpoint_steps):  # a schedule bug, not a user's
                    raise RuntimeError(f"{s.job.name}: checkpoint steps {s.schedule.checkpoint_steps} were set "
                                       f"at step {s.step}, after some of them")
        due = [s for s in slots if (cfg.eval_every and s.step % cfg.eval_every == 0)
               or s.step in s.schedule.checkpoint_steps]
        if due:
            self._record(due)
        for s in slots:
            if s.step in s.schedule.checkpoint_steps:
                lora = {name: (a.detach().cpu().clone(), b.detach().cpu().clone()) for name, (a, b) in s.lora.items()}
                s.checkpoints.append(SlotCheckpoint(s.step, lora, s.history[-1]))

    # -- one batched pix2pix step -----------------------------------------------------------------------------------

    def _train_step(self, slots: list[_Slot]) -> None:
        t0 = time.perf_counter()
        losses = self.run_step(slots)
        share = (time.perf_counter() - t0) / len(slots)
        for s, slot_losses in zip(slots, losses):
            s.step += 1
            s.seconds += share
            s.wall += share
            for k, v in slot_losses.items():
                s.loss_sums[k] = s.loss_sums.get(k, 0.0) + v
            s.loss_count += 1

    def run_step(self, slots: list[_Slot]) -> list[dict[str, float]]:
        """One pix2pix iteration of every slot: G(A) once for all, then each D's update, then each LoRA's."""
        cfg, c = self.config, len(slots)
        batches = [next(s.sampler) for s in slots]
        source = torch.cat([b[0] for b in batches])  # (C*B, 3, H, W), slot-major
        real = torch.cat([b[1] for b in batches])  # (C*B, 3, H, W)
        discriminators = [s.discriminator for s in slots]
        with self._autocast():
            fake = self.generator(source, [s.lora for s in slots]).float()  # (C*B, 3, H, W)
        # 1. D: real pairs real, generated pairs fake; each slot's D on its own pairs.
        for s in slots:
            s.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            fake_logits = multi_discriminate(discriminators, source, fake.detach(), self.grouped).float()
            real_logits = multi_discriminate(discriminators, source, real, self.grouped).float()
        d_terms = [discriminator_loss_terms(f, r, self.gan_loss, cfg.label_smoothing)
                   for f, r in zip(fake_logits.chunk(c), real_logits.chunk(c))]
        torch.stack([t["loss_D"] for t in d_terms]).sum().backward()
        for s in slots:
            s.opt_d.step()
        # 2. G: fool each (frozen) D and match the targets.
        for s in slots:
            s.opt_g.zero_grad(set_to_none=True)
            s.discriminator.requires_grad_(False)
        with self._autocast():
            logits = multi_discriminate(discriminators, source, fake, self.grouped).float()
        g_terms = [generator_loss_terms(l, r, f, self.gan_loss, cfg.lambda_l1)
                   for l, r, f in zip(logits.chunk(c), real.chunk(c), fake.chunk(c))]
        torch.stack([t["loss_G"] for t in g_terms]).sum().backward()
        for s in slots:
            s.discriminator.requires_grad_(True)
            s.opt_g.step()
        values = torch.stack([torch.stack([d[k] for k in LOSS_KEYS[:3]] + [g[k] for k in LOSS_KEYS[3:]])
                              for d, g in zip(d_terms, g_terms)]).detach().cpu().tolist()  # (C, 6), one sync
        return [dict(zip(LOSS_KEYS, row)) for row in values]

    # -- evaluation -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _outputs(self, slots: list[_Slot], sources: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each slot's G(source) (float [-1, 1], equal counts per slot), in eval mode, one batched pass."""
        self.generator.eval()
        try:
            out = self.generator(torch.cat(sources), [s.lora for s in slots])
        finally:
            self.generator.train()
        return list(out.chunk(len(slots)))

    def _by_size(self, slots: list[_Slot], size: Callable[[_Slot], int]) -> list[list[_Slot]]:
        groups: dict[int, list[_Slot]] = {}
        for s in slots:
            groups.setdefault(size(s), []).append(s)
        return list(groups.values())

    def _record(self, slots: list[_Slot]) -> None:
        """Test L1 / PSNR / SSIM of each slot (batched), a history record each, then the callback."""
        t0 = time.perf_counter()
        metrics: dict[int, dict] = {}
        for group in self._by_size(slots, lambda s: s.job.data.n_test):
            sources = [to_float(s.job.data.test_source.to(self.device)) for s in group]
            for s, fake in zip(group, self._outputs(group, sources)):
                m = PairedMetrics(self.device)
                m.update(fake, to_float(s.job.data.test_target.to(self.device)))
                metrics[id(s)] = m.compute()
        share = (time.perf_counter() - t0) / len(slots)
        for s in slots:
            s.wall += share
            losses = {k: v / s.loss_count for k, v in s.loss_sums.items()} if s.loss_count else {}
            rec = {"step": s.step, "seconds": round(s.seconds, 3), "losses": losses, "metrics": metrics[id(s)]}
            s.loss_sums, s.loss_count = {}, 0
            s.history.append(rec)
            if self.callback is not None:
                self.callback(s.job.name, s.step, rec)

    def _val_l1(self, slots: list[_Slot]) -> list[float]:
        """Each slot's L1 ([0, 1] units, as the test L1) on its fixed crops of its train canvases."""
        if any(s.val is None for s in slots):
            raise GanError("a convergence schedule needs validation crops: build the trainer with val_crops > 0")
        t0 = time.perf_counter()
        values: dict[int, float] = {}
        for group in self._by_size(slots, lambda s: len(s.val[0])):  # type: ignore[index]
            for s, fake in zip(group, self._outputs(group, [s.val[0] for s in group])):  # type: ignore[index]
                values[id(s)] = float((fake.clamp(-1, 1) - s.val[1]).abs().mean() / 2)  # type: ignore[index]
        share = (time.perf_counter() - t0) / len(slots)
        for s in slots:
            s.wall += share
        return [values[id(s)] for s in slots]
