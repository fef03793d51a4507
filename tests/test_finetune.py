"""`weightgen finetune` on the tiny end-to-end world: every init kind, the best adapter on disk, bad input."""

import shutil

import pytest
import torch
from PIL import Image
from tiny_world import HELDOUT, TRAIN

from gan.io import read_json, write_json
from weightgen.errors import USER_ERRORS
from weightgen.finetune.config import INIT_KINDS
from weightgen.finetune.job import FinetuneConfig, finetune, lora_state

CONCEPT = HELDOUT[0]


def _config(world, out, **overrides) -> FinetuneConfig:
    """A tiny run: 3 steps, an evaluation at each, on the world's own pairs (its base works at 32x32)."""
    kwargs = dict(concept=CONCEPT, seconds=30, out=str(out), base=str(world.base), generator=str(world.generator),
                  zoo=str(world.zoo), pairs=str(world.pairs), max_steps=3, eval_every=1, threads=1, ddim_steps=2)
    return FinetuneConfig(**{**kwargs, **overrides})


def _zoo_adapter(world, concept: str = CONCEPT):
    return next(world.zoo.glob(f"{concept.replace(' ', '-')}-*/ckpt-0"))


def _test_l1(world, adapter_dir) -> float:
    from gan.base import load_base
    from gan.data import PairedData
    from gan.lora import load_adapter
    from gan.metrics import evaluate_pairs

    generator, _ = load_base(world.base)
    pairs = PairedData.load(world.pairs, [CONCEPT]).concepts[0]
    return evaluate_pairs(load_adapter(generator, adapter_dir), pairs.test_source, pairs.test_target)["l1"]


@pytest.mark.parametrize("init", [*INIT_KINDS, "adapter"])
def test_finetune_from_each_init_keeps_the_best_adapter(tiny_world, tmp_path, init):
    from peft import PeftModel

    from gan.base import load_base

    init_arg = str(_zoo_adapter(tiny_world)) if init == "adapter" else init
    summary = finetune(_config(tiny_world, tmp_path / "ft", init=init_arg), progress=False)
    out = tmp_path / "ft"
    history = read_json(out / "history.json")
    assert [r["step"] for r in history] == [0, 1, 2, 3] and summary["steps"] == 3
    l1s = [r["metrics"]["l1"] for r in history]
    assert summary["best"]["metrics"]["l1"] == min(l1s) and summary["step0"]["l1"] == l1s[0]
    assert summary["init_kind"] == init and summary["files"]["adapter"] == str(out / "adapter")

    # The adapter on disk is the best evaluation's: it loads in plain peft and in gan.lora, and scores that L1.
    meta = read_json(out / "adapter" / "weightgen.json")
    assert meta["concept"] == CONCEPT and meta["init"] == init_arg and meta["metrics"]["l1"] == min(l1s)
    assert meta["step"] == history[l1s.index(min(l1s))]["step"] and meta["init_metrics"]["l1"] == l1s[0]
    assert _test_l1(tiny_world, out / "adapter") == pytest.approx(min(l1s), abs=1e-5)
    generator, _ = load_base(tiny_world.base)
    assert isinstance(PeftModel.from_pretrained(generator, str(out / "adapter")), PeftModel)

    # Where each kind starts: zero is the base itself, an adapter folder its own quality.
    if init == "zero":
        from gan.data import PairedData
        from gan.metrics import evaluate_pairs

        pairs = PairedData.load(tiny_world.pairs, [CONCEPT]).concepts[0]
        base, _ = load_base(tiny_world.base)
        assert l1s[0] == pytest.approx(evaluate_pairs(base, pairs.test_source, pairs.test_target)["l1"], abs=1e-6)
    if init == "adapter":
        assert l1s[0] == pytest.approx(_test_l1(tiny_world, init_arg), abs=1e-5)
    if init in ("nearest", "nearest-noise"):
        assert summary["init_info"]["nearest_concept"] in TRAIN
    if init.startswith("generated"):
        assert summary["init_seconds"] > 0

    curve, grid = Image.open(out / "curve.png"), Image.open(out / "grid.png")
    assert curve.size[0] > 300
    assert grid.size[0] == 5 * (32 * 2 + 2) + 2  # source | target | base | init | fine-tuned, 32 px scaled 2x


def test_lora_state_is_what_peft_saves(tiny_world):
    from peft.utils import get_peft_model_state_dict

    from gan.base import load_base
    from gan.config import LoraSettings
    from gan.lora import add_lora

    generator, _ = load_base(tiny_world.base)
    model = add_lora(generator, LoraSettings(rank=2))
    expected = get_peft_model_state_dict(model)
    got = lora_state(generator)
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)


def test_best_adapter_keeps_the_lowest_l1_not_the_last(tiny_world, tmp_path):
    from gan.base import load_base
    from gan.lora import lora_from_state_dict
    from weightgen.chunks.adapters import read_adapter
    from weightgen.finetune.job import BestAdapter

    _, adapter_config = read_adapter(_zoo_adapter(tiny_world))
    generator, _ = load_base(tiny_world.base)
    lora_from_state_dict(generator, adapter_config, None)
    best = BestAdapter(generator, tmp_path, adapter_config, {"concept": CONCEPT})
    for step, (l1, value) in enumerate([(0.5, 0.0), (0.3, 1.0), (0.4, 2.0)]):
        with torch.no_grad():
            for name, p in generator.named_parameters():
                if "lora_B" in name:
                    p.fill_(value)
        best(step, {"step": step, "seconds": float(step), "metrics": {"l1": l1}})
    sd, _ = read_adapter(tmp_path / "adapter")
    assert all(torch.all(t == 1.0) for k, t in sd.items() if "lora_B" in k)
    assert all(torch.all(t == 0.0) for k, t in best.init_state.items() if "lora_B" in k)
    meta = read_json(tmp_path / "adapter" / "weightgen.json")
    assert (meta["step"], meta["metrics"], meta["init_metrics"]) == (1, {"l1": 0.3}, {"l1": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


@pytest.mark.parametrize("overrides, message", [
    (dict(seconds=0), "time budget must be > 0 seconds, got 0"),
    (dict(seconds=-5.0), "got -5.0"),
    (dict(concept="   "), "concept must not be empty"),
    (dict(init="best"), "unknown init: 'best'; choose one of generated, generated-ddim, zero"),
    (dict(init="no/such/adapter"), "adapter folder not found: 'no/such/adapter'"),
    (dict(reference="ref"), "a zoo reference or a zoo, not both"),
    (dict(eval_every=0), "eval_every must be >= 1"),
    (dict(editor="magic"), "unknown editor 'magic'"),
    (dict(ddim_steps=1), "ddim_steps must be >= 2"),
])
def test_bad_config_is_refused_with_the_value(tiny_world, tmp_path, overrides, message):
    with pytest.raises(USER_ERRORS, match=message.replace("(", r"\(").replace(")", r"\)")):
        _config(tiny_world, tmp_path, **overrides)


def test_adapter_for_another_base_is_refused_before_any_work(tiny_world, tmp_path):
    other = tmp_path / "other-adapter"
    shutil.copytree(_zoo_adapter(tiny_world), other)
    meta = read_json(other / "weightgen.json")
    write_json(other / "weightgen.json", {**meta, "base_fingerprint": "0123456789abcdef"})
    out = tmp_path / "ft"
    with pytest.raises(USER_ERRORS, match="trained for base 0123456789abcdef"):
        finetune(_config(tiny_world, out, init=str(other), pairs=None), progress=False)
    assert not (out / "pairs").exists() and not (out / "adapter").exists()


def test_missing_generator_and_reference_are_clear(tiny_world, tmp_path):
    with pytest.raises(USER_ERRORS, match="generator folder not found"):
        finetune(_config(tiny_world, tmp_path / "a", generator=str(tmp_path / "nothing")), progress=False)
    with pytest.raises(USER_ERRORS, match="no zoo reference"):
        finetune(_config(tiny_world, tmp_path / "b", init="mean", zoo=None, reference=str(tmp_path / "none")),
                 progress=False)


def test_editor_failure_is_one_line(tiny_world, tmp_path, monkeypatch):
    from weightgen.pairs import editors

    class Broken:
        name = "broken"

        def describe(self):
            return {"name": "broken"}

        def edit(self, sources, concept, seed=None):
            raise RuntimeError("out of memory while editing\n(a long traceback-ish tail)")

    monkeypatch.setitem(editors.REGISTRY, "broken", lambda **options: Broken())
    with pytest.raises(USER_ERRORS) as err:
        finetune(_config(tiny_world, tmp_path / "ft", init="zero", pairs=None, editor="broken", n_train=2, n_test=1),
                 progress=False)
    assert str(err.value) == ("editor 'broken' could not make pairs for 'pink glow': "
                              "RuntimeError: out of memory while editing")


def test_interrupt_keeps_the_best_adapter_loadable(tiny_world, tmp_path):
    out = tmp_path / "ft"

    def interrupt(step, record):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(_config(tiny_world, out, init="zero", max_steps=50), progress=False, callback=interrupt)
    history = read_json(out / "history.json")
    assert [r["step"] for r in history] == [0, 1]
    best = min(r["metrics"]["l1"] for r in history)
    assert read_json(out / "adapter" / "weightgen.json")["metrics"]["l1"] == best
    assert _test_l1(tiny_world, out / "adapter") == pytest.approx(best, abs=1e-5)
    assert read_json(out / "summary.json")["interrupted"] is True
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "history.json", "summary.json"]  # no temporaries
    with pytest.raises(USER_ERRORS, match="already holds a fine-tuned adapter"):
        finetune(_config(tiny_world, out, init="zero"), progress=False)


def test_cli_builds_pairs_refuses_a_finished_out_and_overwrites(tiny_world, tmp_path, capsys):
    from weightgen.cli import main

    out = tmp_path / "ft"
    args = ["finetune", "--concept", "Pink  Glow", "--seconds", "30", "--init", "zero", "--out", str(out),
            "--base", str(tiny_world.base), "--generator", str(tiny_world.generator), "--n-train", "4",
            "--n-test", "2", "--max-steps", "2", "--eval-every", "1", "--threads", "1"]

    def run(extra=()):
        with pytest.raises(SystemExit) as exit_:
            main([*args, *extra])
        return exit_.value.code, capsys.readouterr()

    code, io = run()
    assert code == 0, io.err
    assert "test L1" in io.out and str(out / "adapter") in io.out
    summary = read_json(out / "summary.json")
    assert summary["concept"] == "Pink Glow" and summary["pairs"] == str(out / "pairs")
    assert summary["init_info"] == {"lora_shape_from": "generator"}  # zero gets the generator's LoRA shape
    pairs_file = next((out / "pairs").glob("*/pairs.safetensors"))
    built = pairs_file.stat().st_mtime_ns

    code, io = run()
    assert code == 1 and "error:" in io.err and "already holds a fine-tuned adapter" in io.err
    code, io = run(["--overwrite"])
    assert code == 0, io.err
    assert pairs_file.stat().st_mtime_ns == built  # the pairs were reused, not rebuilt
    code, io = run(["--seconds", "0"])
    assert code == 1 and "time budget must be > 0" in io.err


def test_pairs_at_another_image_size_are_refused(tiny_world, tmp_path):
    from weightgen.pairs.synthetic import write_synthetic_pairs

    small = write_synthetic_pairs(tmp_path / "pairs16", [CONCEPT], n_train=2, n_test=1, image_size=16)
    with pytest.raises(USER_ERRORS, match="are 16x16, the base GAN works at 32x32"):
        finetune(_config(tiny_world, tmp_path / "ft", init="zero", pairs=str(small)), progress=False)
    with pytest.raises(USER_ERRORS, match="'icy teal' is not in the pairs folder"):
        finetune(_config(tiny_world, tmp_path / "ft", init="zero", pairs=str(small), concept=HELDOUT[1]),
                 progress=False)


def test_the_base_follows_the_init(tmp_path):
    from weightgen.finetune.job import resolve_base
    from weightgen.shipped import DEFAULT_BASE_DIR

    gen = tmp_path / "generator"
    (gen / "base").mkdir(parents=True)
    (gen / "generator.json").write_text("{}")
    for init in ("generated", "generated-ddim", "mean", "nearest", "nearest-noise"):
        assert resolve_base(FinetuneConfig(concept="x", init=init, generator=str(gen))) == gen / "base"
    assert resolve_base(FinetuneConfig(concept="x", init="zero", generator=str(gen))) == DEFAULT_BASE_DIR
    assert resolve_base(FinetuneConfig(concept="x", init="mean", generator=str(gen), zoo=str(tmp_path))) == DEFAULT_BASE_DIR
    given = FinetuneConfig(concept="x", init="generated", generator=str(gen), base=str(tmp_path / "mine"))
    assert resolve_base(given) == tmp_path / "mine"
    (gen / "base").rmdir()  # a generator without its own base: the shipped one
    assert resolve_base(FinetuneConfig(concept="x", init="generated", generator=str(gen))) == DEFAULT_BASE_DIR
