"""Init kinds and the adapter evaluator on the tiny end-to-end world."""

import pytest
import torch
from tiny_world import HELDOUT, TRAIN

from weightgen.chunks.evaluate import AdapterEvaluator
from weightgen.errors import USER_ERRORS
from weightgen.finetune.config import INIT_KINDS
from weightgen.finetune.starts import (
    InitSources,
    ZooReference,
    describe_nearest,
    init_weights,
)
from weightgen.generator.pipeline import WeightGenPipeline
from weightgen.generator.validation import validation_fn


@pytest.fixture(scope="module")
def sources(tiny_world):
    pipe = WeightGenPipeline.from_pretrained(tiny_world.generator)
    ref = ZooReference.from_zoo(tiny_world.zoo, layout=pipe.layout)
    return InitSources(reference=ref, pipeline=pipe, ddim_steps=3)


@pytest.fixture(scope="module")
def evaluator(tiny_world):
    return AdapterEvaluator.from_zoo(tiny_world.zoo)


def test_every_kind_gives_weights_the_base_accepts(sources, evaluator):
    base = evaluator.evaluate(HELDOUT[0], None)
    for kind in INIT_KINDS:
        sd = init_weights(kind, HELDOUT[0], sources)
        if kind == "zero":
            assert sd is None
            continue
        sources.pipeline.layout.check_state_dict(sd, kind)
        m = evaluator.evaluate(HELDOUT[0], sd)
        assert set(m) == {"l1", "psnr", "ssim"} and m["l1"] != base["l1"], kind


def test_nearest_is_the_training_concept_itself_and_mean_is_the_zoo_mean(sources, tiny_world):
    ref = sources.reference
    assert ref.texts == TRAIN and ref.final.shape[0] == len(TRAIN)
    assert describe_nearest(TRAIN[2], sources)["nearest_concept"] == TRAIN[2]
    got = sources.pipeline.layout.to_blocks(init_weights("nearest", TRAIN[2], sources))
    assert torch.equal(got, ref.final[2])
    noisy = sources.pipeline.layout.to_blocks(init_weights("nearest-noise", TRAIN[2], sources))
    assert 0 < (noisy - got).norm() and torch.equal(
        noisy, sources.pipeline.layout.to_blocks(init_weights("nearest-noise", TRAIN[2], sources)))  # seeded
    assert torch.allclose(sources.pipeline.layout.to_blocks(init_weights("mean", "x", sources)), ref.mean)


def test_evaluator_matches_a_model_loaded_from_the_zoo_folder(evaluator, tiny_world):
    import copy

    from gan.base import load_base
    from gan.lora import load_adapter
    from gan.metrics import evaluate_pairs
    from weightgen.chunks.adapters import read_adapter

    folder = next((tiny_world.zoo).glob("pink-glow-*/ckpt-1"))
    sd, _ = read_adapter(folder)
    generator, _ = load_base(tiny_world.base)
    model = load_adapter(copy.deepcopy(generator), folder)
    pairs = evaluator.pairs(HELDOUT[0])
    assert evaluator.evaluate(HELDOUT[0], sd) == pytest.approx(evaluate_pairs(model, pairs.test_source,
                                                                              pairs.test_target))
    assert evaluator.evaluate(HELDOUT[0], None) == pytest.approx(evaluate_pairs(generator, pairs.test_source,
                                                                                pairs.test_target))


def test_reference_round_trip_and_bad_input(sources, tmp_path):
    ref = sources.reference
    loaded = ZooReference.load(ref.save(tmp_path / "ref"))
    assert loaded.texts == ref.texts and torch.equal(loaded.final, ref.final) and torch.equal(loaded.mean, ref.mean)
    with pytest.raises(USER_ERRORS, match="no zoo reference"):
        ZooReference.load(tmp_path / "nothing")
    with pytest.raises(USER_ERRORS, match="unknown init 'best'"):
        init_weights("best", "x", sources)
    with pytest.raises(USER_ERRORS, match="needs the training zoo"):
        init_weights("mean", "x", InitSources(pipeline=sources.pipeline))
    with pytest.raises(USER_ERRORS, match="needs a weight generator"):
        init_weights("generated", "x", InitSources(reference=ref))
    with pytest.raises(USER_ERRORS, match="empty concept"):
        init_weights("mean", "  ", sources)


def test_validation_callback_reports_generated_quality(sources, evaluator):
    validate = validation_fn(evaluator, HELDOUT)
    m = validate(7, lambda concepts: sources.pipeline.generate(list(concepts)))
    assert set(m) == {"val_l1", "val_psnr", "base_l1", "better_than_base"} and 0 < m["val_l1"] < 1


def test_cli_train_validates_on_the_zoos_heldout_concepts(tiny_world, tmp_path, capsys):
    import json

    from weightgen.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--chunks", str(tiny_world.chunks), "--out", str(tmp_path / "run"), "--steps", "4",
              "--batch-size", "16", "--model-size", "tiny", "--cpu", "--no-progress", "--validate-every", "2"])
    assert e.value.code in (0, None)
    assert "validation: val_l1" in capsys.readouterr().out
    log = [json.loads(line) for line in (tmp_path / "run" / "training" / "log.jsonl").read_text().splitlines()]
    validations = [r for r in log if "validation" in r]
    assert [r["step"] for r in validations] == [2, 4]
    assert 0 < validations[-1]["validation"]["val_l1"] < 1
    with pytest.raises(SystemExit) as e:
        main(["train", "--chunks", str(tiny_world.chunks), "--out", str(tmp_path / "run2"), "--steps", "2",
              "--model-size", "tiny", "--cpu", "--no-progress", "--validate", "--zoo", str(tmp_path / "nozoo")])
    assert e.value.code == 1 and "zoo manifest not found" in capsys.readouterr().err


def test_text_dropout_validation_split_and_guidance_sweep(tiny_world, tmp_path, capsys):
    import json

    from weightgen.cli import main
    from weightgen.generator.training import validation_concepts

    with pytest.raises(SystemExit) as e:
        main(["train", "--chunks", str(tiny_world.chunks), "--out", str(tmp_path / "run"), "--steps", "6",
              "--batch-size", "16", "--model-size", "tiny", "--cpu", "--no-progress", "--text-dropout", "0.3",
              "--val-concepts", "1", "--guidance-sweep", "0,0.5,1"])
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    info = json.loads((tmp_path / "run" / "generator" / "generator.json").read_text())
    val = validation_concepts(TRAIN, 1, 0)
    assert info["validation_concepts"] == val and val[0] not in info["concepts"] and len(info["concepts"]) == 3
    assert set(info["guidance_sweep"]) == {"0", "0.5", "1"}
    assert info["guidance_scale"] == min((float(k) for k in info["guidance_sweep"]),
                                         key=lambda k: info["guidance_sweep"][f"{k:g}"])
    assert "default guidance scale" in out
    pipe = WeightGenPipeline.from_pretrained(tmp_path / "run" / "generator")
    assert pipe.guidance_scale == info["guidance_scale"]
    plain, none, half = (pipe.generate_blocks(["pink glow"], guidance_scale=s) for s in (1.0, 0.0, 0.5))
    assert torch.allclose(half, (plain + none) / 2, atol=1e-4)  # single step, sample prediction: linear in scale
    with pytest.raises(USER_ERRORS, match="guidance scale must be >= 0"):
        pipe.generate_blocks(["pink glow"], guidance_scale=-1)
    with pytest.raises(SystemExit) as e:
        main(["train", "--chunks", str(tiny_world.chunks), "--out", str(tmp_path / "r2"), "--steps", "2",
              "--guidance-sweep", "0,1", "--no-validate"])
    assert e.value.code == 1 and "--guidance-sweep needs --text-dropout" in capsys.readouterr().err
