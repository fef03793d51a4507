"""The batched LoRA path: slot layers, grouped discriminators, the multi-slot trainer, convergence schedules."""

import copy

import pytest
import torch

from gan.base import build_models
from gan.config import (
    BaseTrainConfig,
    ConvergenceConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from gan.convergence import ConvergenceSchedule, FixedSchedule, Plateau, late_steps, run_length
from gan.data import PairedData
from gan.errors import GanError
from gan.lora import add_lora
from gan.lora_training import train_lora
from gan.multi_lora import MultiLoraGenerator, multi_discriminate
from gan.multi_trainer import MultiLoraTrainer, SlotJob
from prompts.identity import concept_id
from weightgen.pairs.synthetic import write_synthetic_pairs

TEXTS = ["warm sepia", "cold blue", "green tint"]
TINY_G = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32, residual=True)
SETTINGS = LoraSettings(rank=2, rank_pattern={})
TRAIN = GanTrainConfig(batch_size=4, max_steps=6, eval_every=3, lr=1e-2, lr_d=2e-4, checkpoint_steps=(3, 6))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_synthetic_pairs(tmp_path_factory.mktemp("pairs"), TEXTS, n_train=8, n_test=4, image_size=32)


def tiny_models(spectral_norm: bool = True):
    g, d = build_models(BaseTrainConfig(GeneratorConfig(**TINY_G), DiscriminatorConfig(base_channels=8,
                                                                                        spectral_norm=spectral_norm)))
    with torch.no_grad():  # a residual G starts with a zero head, which would hide every LoRA delta
        g.head.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return g, d


def data_of(pairs, text) -> PairedData:
    return PairedData.load(pairs, [concept_id(text)])


def lora_weights(peft_model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("grouped", [False, True], ids=["slot-by-slot", "grouped"])
def test_slot_forward_is_each_slots_own_peft_forward(grouped):
    g, _ = tiny_models()
    peft = add_lora(copy.deepcopy(g), SETTINGS)
    multi = MultiLoraGenerator(peft, grouped)
    loras = [multi.new_lora() for _ in range(3)]
    gen = torch.Generator().manual_seed(0)
    for lora in loras:  # B is zero at init: give every slot its own delta
        for _, b in lora.values():
            b.data.normal_(0, 0.1, generator=gen)
    x = torch.rand(3 * 2, 3, 32, 32, generator=gen) * 2 - 1
    out = multi(x, loras)
    outputs = []
    for c, lora in enumerate(loras):
        own = multi.export(lora, copy.deepcopy(peft))(x[2 * c:2 * c + 2])
        torch.testing.assert_close(out[2 * c:2 * c + 2], own, atol=1e-5, rtol=1e-5)
        outputs.append(own)
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3  # the slots really differ
    with pytest.raises(GanError, match="cannot be split over 3 LoRA slots"):
        multi(x[:5], loras)


@pytest.mark.parametrize("grouped", [False, True], ids=["slot-by-slot", "grouped"])
@pytest.mark.parametrize("spectral_norm", [True, False])
def test_batched_discriminators_are_each_slots_own(spectral_norm, grouped):
    _, d = tiny_models(spectral_norm)
    slots = [copy.deepcopy(d) for _ in range(3)]
    for i, disc in enumerate(slots[1:]):  # different weights per slot
        with torch.no_grad():
            for p in disc.parameters():
                p.add_(0.01 * (i + 1))
    alone = copy.deepcopy(slots)
    gen = torch.Generator().manual_seed(0)
    source, image = (torch.rand(6, 3, 32, 32, generator=gen) for _ in range(2))
    logits = multi_discriminate(slots, source, image, grouped)
    for c in range(3):
        torch.testing.assert_close(logits[2 * c:2 * c + 2], alone[c](source[2 * c:2 * c + 2], image[2 * c:2 * c + 2]),
                                   atol=1e-5, rtol=1e-5)
        # spectral norm's power iteration ran once in each slot's own module, as in its own forward
        for mine, own in zip(slots[c].buffers(), alone[c].buffers()):
            torch.testing.assert_close(mine, own)


@pytest.mark.parametrize("n_slots,grouped", [(1, None), (3, None), (3, True)])
def test_a_pass_trains_each_concept_as_if_alone(pairs, n_slots, grouped):
    """Same seeds: each slot's LoRA, losses and test metrics match the sequential trainer's (float rounding aside)."""
    g, d = tiny_models()
    trainer = MultiLoraTrainer(add_lora(copy.deepcopy(g), SETTINGS), d, TRAIN, slots=n_slots, grouped=grouped)
    jobs = [SlotJob(t, data_of(pairs, t)) for t in TEXTS]
    results = list(trainer.run(jobs, lambda: FixedSchedule(TRAIN.max_steps, TRAIN.checkpoint_steps)))
    assert [r.job.name for r in results] == TEXTS
    for r in results:
        model, history = train_lora(copy.deepcopy(g), copy.deepcopy(d), r.job.data, SETTINGS, TRAIN, progress=False)
        mine = lora_weights(trainer.generator.export(r.checkpoints[-1].lora, add_lora(copy.deepcopy(g), SETTINGS)))
        own = lora_weights(model)
        assert mine.keys() == own.keys()
        for name in own:
            torch.testing.assert_close(mine[name], own[name], atol=2e-5, rtol=1e-4)
        assert [h["step"] for h in r.history] == [h["step"] for h in history] == [0, 3, 6]
        assert [c.step for c in r.checkpoints] == [3, 6]
        for a, b in zip(r.history, history):
            assert a["losses"].keys() == b["losses"].keys()
            for key in a["losses"]:
                assert a["losses"][key] == pytest.approx(b["losses"][key], rel=1e-4)
            assert a["metrics"]["l1"] == pytest.approx(b["metrics"]["l1"], rel=1e-4)


def test_slots_learn_their_own_concepts(pairs):
    g, d = tiny_models()
    train = GanTrainConfig(batch_size=4, max_steps=30, eval_every=0, lr=1e-2, lr_d=2e-4, checkpoint_steps=(30,))
    trainer = MultiLoraTrainer(add_lora(copy.deepcopy(g), SETTINGS), d, train, slots=3)
    results = list(trainer.run([SlotJob(t, data_of(pairs, t)) for t in TEXTS],
                               lambda: FixedSchedule(train.max_steps, train.checkpoint_steps)))
    init = trainer.generator.new_lora()
    finals = []
    for r in results:
        assert r.history[-1]["metrics"]["l1"] < 0.8 * r.history[0]["metrics"]["l1"], r.history  # test L1 went down
        final = torch.cat([t.flatten() for pair in r.checkpoints[-1].lora.values() for t in pair])
        assert (final - torch.cat([t.detach().flatten() for pair in init.values() for t in pair])).abs().max() > 1e-2
        finals.append(final)
    assert min((finals[i] - finals[j]).abs().max() for i in range(3) for j in range(i)) > 1e-2


def test_a_freed_slot_takes_the_next_concept(pairs):
    """Runs of 2, 6 and 3 steps through 2 slots: the third starts when the first ends, each as if trained alone."""
    g, d = tiny_models()
    train = GanTrainConfig(batch_size=4, max_steps=5, eval_every=0, lr=1e-2, lr_d=2e-4)
    ends = iter([2, 6, 3])
    trainer = MultiLoraTrainer(add_lora(copy.deepcopy(g), SETTINGS), d, train, slots=2)
    schedule = lambda: (lambda end: FixedSchedule(end, (end,)))(next(ends))  # noqa: E731
    results = list(trainer.run([SlotJob(t, data_of(pairs, t)) for t in TEXTS], schedule))
    assert [(r.job.name, r.history[-1]["step"]) for r in results] == [(TEXTS[0], 2), (TEXTS[2], 3), (TEXTS[1], 6)]
    for r, steps in zip(results, [2, 3, 6]):
        alone = GanTrainConfig(batch_size=4, max_steps=steps, eval_every=0, lr=1e-2, lr_d=2e-4)
        model, _ = train_lora(copy.deepcopy(g), copy.deepcopy(d), r.job.data, SETTINGS, alone, progress=False)
        mine = lora_weights(trainer.generator.export(r.checkpoints[-1].lora, add_lora(copy.deepcopy(g), SETTINGS)))
        for name, own in lora_weights(model).items():
            torch.testing.assert_close(mine[name], own, atol=2e-5, rtol=1e-4)


def test_a_plateaued_concept_stops_early(pairs):
    """A LoRA that cannot move (lr 1e-12) has a flat validation L1: it converges at min_steps, K checkpoints after."""
    g, d = tiny_models()
    rule = ConvergenceConfig(every=2, patience=2, min_delta=0.01, min_steps=6, val_crops=4)
    frozen = GanTrainConfig(batch_size=4, max_steps=40, eval_every=0, lr=1e-12, lr_d=2e-4)
    trainer = MultiLoraTrainer(add_lora(copy.deepcopy(g), SETTINGS), d, frozen, slots=2, val_crops=4)
    [r] = list(trainer.run([SlotJob(TEXTS[0], data_of(pairs, TEXTS[0]))],
                           lambda: ConvergenceSchedule(rule, 40, 3, 0.25)))
    assert r.converged_step == 6 and [s for s, _ in r.checks] == [2, 4, 6]
    assert r.history[-1]["step"] == 8 == run_length(6, 0.25)  # the last 25% of the run starts at the converged step
    assert [c.step for c in r.checkpoints] == list(late_steps(8, 3, 0.25)) == [6, 7, 8]


def test_plateau_and_schedules():
    plateau = Plateau(patience=2, min_delta=0.1)
    assert [plateau.update(v) for v in [1.0, 0.8, 0.75, 0.74, 0.5, 0.49, 0.48]] == [
        False, False, False, True, False, False, True]  # 0.75 and 0.74 are < 10% better than 0.8
    rule = ConvergenceConfig(every=10, patience=2, min_delta=0.0, min_steps=30)
    s = ConvergenceSchedule(rule, 400, 5, 0.25)
    for step in (10, 20, 30):
        assert s.needs_check(step) and not s.needs_check(step + 1)
        s.observe(step, 1.0)  # flat from the start, but not converged before min_steps
    assert s.converged_step == 30 and s.end == 40 and s.checkpoint_steps == (30, 32, 35, 38, 40)
    assert not s.needs_check(40)
    with pytest.raises(GanError, match="already converged"):
        s.observe(40, 1.0)
    never = ConvergenceSchedule(rule, 400, 5, 0.25)
    value = 1.0
    for step in range(10, 301, 10):
        value *= 0.5  # always improving: stopped at the cap, which is the fixed schedule
        never.observe(step, value)
    assert never.converged_step == 300 and never.end == 400 and never.checkpoint_steps == late_steps(400, 5, 0.25)
    assert FixedSchedule(400, (300, 400)).end == 400
    with pytest.raises(GanError, match="cannot place k=5"):
        ConvergenceSchedule(ConvergenceConfig(min_steps=2), 400, 5, 0.25)
    for bad, match in [(dict(every=0), "`every`"), (dict(min_delta=1.0), "`min_delta`"),
                       (dict(val_crops=0), "`val_crops`")]:
        with pytest.raises(GanError, match=match):
            ConvergenceConfig(**bad)
