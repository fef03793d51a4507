"""`weightgen bench` on the tiny end-to-end world: the dense schedule, the validation-chosen oracle, the
budgets and their stop rule, the report's tables (the paper's among them), resume, shards and the CLI."""

import json
import math
import shutil

import pytest
import torch
from tiny_world import HELDOUT

from prompts.identity import concept_id
from weightgen.bench.config import METHODS, PRODUCT, TARGETS, BenchConfig
from weightgen.bench.runner import (
    evaluation_steps,
    heldout_concepts,
    run_bench,
    run_path,
    target_caps,
)
from weightgen.bench.stats import Hit, first_hit, ratio_interval
from weightgen.errors import USER_ERRORS

INF = math.inf
TINY = {"steps": 3, "eval_schedule": "1", "eval_pairs": 2, "full_every": 2, "max_steps": 9, "scratch_multiple": 3.0,
        "lora_multiple": 2.0, "val_crops": 4, "ddim_steps": 3, "batch_size": 4}


def _config(world, out, **kw) -> BenchConfig:
    return BenchConfig(zoo=str(world.zoo), out=str(out), generator=str(world.generator), **{**TINY, **kw})


def _runs(out, text):
    return {m: json.loads(run_path(out, concept_id(text), m).read_text())
            for m in METHODS if run_path(out, concept_id(text), m).is_file()}


@pytest.fixture(scope="module")
def full_bench(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "full"
    config = _config(tiny_world, out)
    summary = run_bench(config, progress=False)
    return out, summary, config


# -- the report ----------------------------------------------------------------------------------------------------

def test_full_bench_has_every_table_and_the_plots(full_bench):
    out, summary, _ = full_bench
    assert list(summary["methods"]) == list(METHODS) and summary["n_concepts"] == len(HELDOUT)
    md = (out / "bench.md").read_text()
    for m in METHODS:
        assert f"\n| {m} | " in md and summary["methods"][m]["n"] == len(HELDOUT)
    assert "| oracle (target) |" in md and "The claims" in md
    assert [c["baseline"] for c in summary["claims"]] == ["scratch", "zero", "nearest", "mean"]
    assert [c["goal"] for c in summary["claims"]] == [15.0, 4.6, 0.75, 0.75]
    assert all(c["status"] in ("met", "not met", "undetermined") for c in summary["claims"])
    # the paper's table beside the paper's figures
    assert "### The paper's table, beside the paper's figures" in md
    header = "| method | final L1 / style FD | time to target | speed-up vs pix2pix | speed-up vs E2GAN |"
    assert header in md
    for figure in ("659.8 s | 99.20 | 1.0x", "198.5 s | 93.86 | 3.3x | 1.0x", "43.3 s | 89.93 | 15.2x | 4.6x"):
        assert figure in md
    assert "| scratch (pix2pix) |" in md and "| zero (E2GAN) |" in md and "| generated (denoised weights (DW)) |" in md
    assert [r["method"] for r in summary["paper"]["table"]] == list(METHODS)
    # the zero-shot table, per target tables, the small batch's check, CPU time
    assert "### Zero-shot: gap recovered at step 0" in md and "| init | gap recovered, L1 | gap recovered, style |" in md
    assert summary["zero_shot"]["l1"]["zero"]["median"] == [0.0, 0.0]  # a zero-init LoRA is the base at step 0
    for t in ("the oracle's L1", "90% of the oracle's L1 gain", "the oracle's style distance",
              "90% of the oracle's style gain"):
        assert f"Target: {t}." in md
    assert set(summary["versus_generated"]) == set(TARGETS)
    assert "### Does the small eval batch track the full test set?" in md
    assert set(summary["tracking"]) == set(METHODS) and all(v["runs"] == 2 for v in summary["tracking"].values())
    assert "CPU-hours" in md and summary["cpu"]["runs"] == len(HELDOUT) * len(METHODS)
    assert summary["cpu"]["cpu_seconds"] >= summary["cpu"]["train_seconds"] > 0
    assert json.loads((out / "bench.json").read_text())["methods"].keys() == summary["methods"].keys()
    for name in ("curves_steps.png", "curves_seconds.png", "step0.png", "tracking.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _expected_stop(run, steps):
    """The first evaluated step past the common budget where every target is reached or at its cap."""
    for rec in run["history"]:
        s = rec["step"]
        if s >= steps and all(h["reached"] and h["steps"] <= s or s >= run["caps"][t] for t, h in run["hits"].items()):
            return s
    return run["history"][-1]["step"]


def test_runs_follow_the_dense_schedule_and_the_stop_rule(full_bench):
    out, _, config = full_bench
    for text in HELDOUT:
        runs = _runs(out, text)
        for m, r in runs.items():
            assert r["caps"] == target_caps(config, m, runs[PRODUCT]["hits"])
            points, full = evaluation_steps(config, r["caps"])
            steps = [h["step"] for h in r["history"]]
            assert steps == [0, *points[: len(steps) - 1]]  # every scheduled step, in order, until the run stopped
            assert r["last_step"] == steps[-1] == _expected_stop(r, config.steps)
            assert r["final_step"] == config.steps and r["final"] == r["history"][config.steps]["full"]
            assert [h["step"] for h in r["history"] if "full" in h] == [s for s in steps if s in full or s == steps[-1]]
            for name, t in r["oracle"]["targets"].items():  # hits on the eval set, every target
                assert r["hits"][name] == first_hit(r["history"], t["value"], r["init_seconds"], t["metric"]).to_dict()
            assert all("style" in h["metrics"] for h in r["history"])
        assert runs[PRODUCT]["last_step"] == config.steps  # the product never trains past the common budget


def test_bench_measures_what_it_claims(full_bench, tiny_world):
    """Step 0 is the init's own quality, the oracle is the validation-chosen checkpoint re-measured, scratch trains all."""
    from gan.metrics import evaluate_pairs
    from weightgen.chunks.adapters import read_adapter
    from weightgen.chunks.evaluate import AdapterEvaluator

    out, _, config = full_bench
    ev = AdapterEvaluator.from_zoo(tiny_world.zoo)
    cid = concept_id(HELDOUT[0])
    runs = _runs(out, HELDOUT[0])
    oracle = runs["zero"]["oracle"]
    assert all(r["oracle"] == oracle for r in runs.values())  # one target for every method
    # the checkpoint with the lowest validation score, among every zoo checkpoint, re-measured on the test pairs
    assert [c["path"] for c in oracle["checkpoints"]] == [p for p, _ in heldout_concepts(tiny_world.zoo)[0][0].checkpoints]
    for metric in ("l1", "style"):
        best = min(range(len(oracle["checkpoints"])), key=lambda i: (oracle["checkpoints"][i]["val"][metric], -i))
        assert oracle["chosen"][metric]["index"] == best
    chosen_sd, _ = read_adapter(tiny_world.zoo / oracle["chosen"]["l1"]["path"])
    assert oracle["test"]["l1"] == pytest.approx(ev.evaluate(cid, chosen_sd)["l1"])
    # the base is the zero-init LoRA's step 0, on the full test set and on the eval set (its first 2 pairs)
    base_full = ev.evaluate(cid, None)
    assert runs["zero"]["step0"]["l1"] == pytest.approx(base_full["l1"], rel=1e-5)
    assert oracle["base"]["test"]["l1"] == pytest.approx(base_full["l1"], rel=1e-5)
    pairs = ev.pairs(cid)
    with ev.model.disable_adapter():
        base_eval = evaluate_pairs(ev.model, pairs.test_source[:2], pairs.test_target[:2])
    assert runs["zero"]["history"][0]["metrics"]["l1"] == pytest.approx(base_eval["l1"], rel=1e-5)
    assert oracle["base"]["eval"]["l1"] == pytest.approx(base_eval["l1"], rel=1e-5)
    assert base_eval["l1"] != pytest.approx(base_full["l1"])  # the eval set really is the smaller batch
    # targets: the oracle's eval-set quality, and base - 0.9 (base - oracle)
    for metric in ("l1", "style"):
        b, o = oracle["base"]["eval"][metric], oracle["eval"][metric]
        assert oracle["targets"][f"oracle-{metric}"]["value"] == pytest.approx(o)
        assert oracle["targets"][f"gain-{metric}"]["value"] == pytest.approx(b - config.gain_fraction * (b - o))
    assert len({round(runs[m]["step0"]["l1"], 6) for m in ("zero", "mean", "nearest", "generated")}) == 4
    assert runs["nearest"]["init_info"]["nearest_concept"]
    assert runs["scratch"]["trained_params"] > 10 * runs["zero"]["trained_params"]
    assert runs["scratch"]["step0"]["l1"] != pytest.approx(runs["zero"]["step0"]["l1"])


def test_validation_not_test_chooses_the_oracle(tiny_world, tmp_path):
    """Validation targets that checkpoint A reproduces and test targets that B reproduces: A must be the oracle."""
    from gan.metrics import generate
    from gan.perceptual import StyleEmbedder
    from weightgen.bench.targets import LoraSlot, eval_sets, measure_oracle
    from weightgen.chunks.adapters import read_adapter
    from weightgen.chunks.evaluate import AdapterEvaluator

    concept = heldout_concepts(tiny_world.zoo)[0][0]
    (a_path, _), (b_path, _) = concept.checkpoints
    sd_a, config = read_adapter(tiny_world.zoo / a_path)
    sd_b, _ = read_adapter(tiny_world.zoo / b_path)
    pairs = AdapterEvaluator.from_zoo(tiny_world.zoo).pairs(concept.id)
    slot = LoraSlot(tiny_world.base, config)
    embedder = StyleEmbedder(threads=1)
    sets = eval_sets(pairs, 2, 4, seed=0)

    def outputs(sd, source):
        slot.score(sd, source[:1], source[:1], embedder)  # loads sd into the slot
        return generate(slot.model, source)

    sets.val_target = outputs(sd_a, sets.val_source)
    sets.test_target = outputs(sd_b, sets.test_source)
    sets.eval_target = sets.test_target[:2]
    checkpoints = [(tiny_world.zoo / p, p, s) for p, s in concept.checkpoints]
    oracle = measure_oracle(slot, embedder, sets, checkpoints, 0.9, "zoo")
    for metric in ("l1", "style"):
        assert oracle["chosen"][metric]["path"] == a_path and not oracle["chosen"][metric]["test_best"]
    a, b = oracle["checkpoints"]
    assert a["val"]["l1"] < 0.01 < b["val"]["l1"] and b["test"]["l1"] < 0.01 < a["test"]["l1"]
    assert oracle["test"]["l1"] == a["test"]["l1"]  # the target is A's test quality, not the test-best B's
    # and the other way round, the choice follows
    sets.val_target = outputs(sd_b, sets.val_source)
    assert measure_oracle(slot, embedder, sets, checkpoints, 0.9, "zoo")["chosen"]["l1"]["path"] == b_path


def test_evaluation_sets(tiny_world):
    from weightgen.bench.targets import eval_sets, validation_crops
    from weightgen.chunks.evaluate import AdapterEvaluator

    pairs = AdapterEvaluator.from_zoo(tiny_world.zoo).pairs(concept_id(HELDOUT[0]))
    sets = eval_sets(pairs, 2, 6, seed=0)
    assert torch.equal(sets.eval_source, pairs.test_source[:2]) and not sets.eval_is_full
    assert eval_sets(pairs, None, 6, seed=0).eval_is_full and eval_sets(pairs, 100, 6, seed=0).eval_is_full
    assert sets.val_source.shape == (6, *pairs.test_source.shape[1:]) and sets.val_source.dtype == torch.uint8
    again = validation_crops(pairs, 6, seed=0)
    assert torch.equal(again[0], sets.val_source) and torch.equal(again[1], sets.val_target)  # fixed
    # from the train canvases (these are 32x32 whole images: the crops are those images), never the test pairs
    for crop in sets.val_source:
        assert any(torch.equal(crop, img) for img in pairs.train_source)
        assert not any(torch.equal(crop, img) for img in pairs.test_source)


def test_a_baseline_trains_past_the_budget_to_a_multiple_of_the_product(full_bench, tiny_world, tmp_path):
    """A product at every target by step 2 gives scratch a budget of 3 x 2 = 6 steps; censored there, its ratio is >= 3."""
    out = tmp_path / "extended"
    shutil.copytree(full_bench[0], out)
    for text in HELDOUT:
        path = run_path(out, concept_id(text), PRODUCT)
        product = json.loads(path.read_text())
        product["hits"] = {t: {**h, "steps": 2, "reached": True, "seconds": 0.1} for t, h in product["hits"].items()}
        path.write_text(json.dumps(product))
        run_path(out, concept_id(text), "scratch").unlink()
    run_bench(_config(tiny_world, out, methods=("scratch",)), progress=False)
    assert any(_runs(out, t)["scratch"]["last_step"] > TINY["steps"] for t in HELDOUT)  # it did train past the budget
    for text in HELDOUT:
        runs = _runs(out, text)
        r = runs["scratch"]
        assert r["caps"] == dict.fromkeys(TARGETS, 6)
        assert r["last_step"] == _expected_stop(r, TINY["steps"])
        for h in r["hits"].values():
            if not h["reached"]:  # censored only at the budget the multiple sets, so its ratio is >= the multiple
                assert h["budget_steps"] == 6
                assert ratio_interval(Hit.from_dict(h), Hit(2, 0.1, 3, 0.1)) == (TINY["scratch_multiple"], INF)
        if not any(h["reached"] for h in r["hits"].values()):
            assert [h["step"] for h in r["history"]] == list(range(7))


# -- resume, shards, errors, the CLI ---------------------------------------------------------------------------

def test_interrupted_bench_resumes_and_keeps_finished_runs(tiny_world, tmp_path):
    cfg = _config(tiny_world, tmp_path / "b", methods=("scratch", "zero"))

    def boom(result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(cfg, progress=False, on_result=boom)
    done = sorted((tmp_path / "b" / "runs").glob("*/*.json"))
    assert len(done) == 1 and not (tmp_path / "b" / "bench.md").exists()
    before = (done[0].stat().st_mtime_ns, done[0].read_bytes())
    seen = []
    summary = run_bench(cfg, progress=True, on_result=seen.append)
    assert len(seen) == 3 and (done[0].stat().st_mtime_ns, done[0].read_bytes()) == before
    assert len(list((tmp_path / "b" / "runs").glob("*/*.json"))) == 4 and summary["n_concepts"] == 2
    assert run_bench(cfg, progress=False, on_result=seen.append)["methods"].keys() == {"scratch", "zero"}
    assert len(seen) == 3  # nothing left to run

    # another recipe on the same folder is refused; --overwrite starts over
    with pytest.raises(USER_ERRORS, match=r"steps=3 \(now 4\)"):
        run_bench(_config(tiny_world, tmp_path / "b", methods=("zero",), steps=4), progress=False)
    with pytest.raises(USER_ERRORS, match=r"eval_schedule='1' \(now '1:2,2'\)"):
        run_bench(_config(tiny_world, tmp_path / "b", methods=("zero",), eval_schedule="1:2,2"), progress=False)
    with pytest.raises(USER_ERRORS, match=r"lr=0.001 \(now 0.01\)"):
        run_bench(_config(tiny_world, tmp_path / "b", methods=("zero",), lr=1e-2), progress=False)
    summary = run_bench(_config(tiny_world, tmp_path / "b", methods=("zero",), steps=1, limit=1, overwrite=True),
                        progress=False)
    assert summary["n_concepts"] == 1 and len(list((tmp_path / "b" / "runs").glob("*/*.json"))) == 1
    # results of the old bench (version 1) are refused, not misread
    config = json.loads((tmp_path / "b" / "bench_config.json").read_text())
    (tmp_path / "b" / "bench_config.json").write_text(json.dumps({**config, "version": 1}))
    with pytest.raises(USER_ERRORS, match="old bench"):
        run_bench(_config(tiny_world, tmp_path / "b", methods=("zero",), steps=1, limit=1), progress=False)


def test_shards_together_equal_the_full_bench(full_bench, tiny_world, tmp_path):
    full_out = full_bench[0]
    out = tmp_path / "sharded"
    first = run_bench(_config(tiny_world, out, methods=("zero", "generated"), shard="0/2"), progress=False)
    assert first["n_concepts"] == 1
    both = run_bench(_config(tiny_world, out, methods=("zero", "generated"), shard="1/2"), progress=False)
    assert both["n_concepts"] == 2 and set(both["concepts"]) == {concept_id(t) for t in HELDOUT}
    for text in HELDOUT:  # deterministic: the same numbers as the unsharded bench
        for m in ("zero", "generated"):
            a = json.loads(run_path(out, concept_id(text), m).read_text())
            b = json.loads(run_path(full_out, concept_id(text), m).read_text())
            flat = lambda r: [h["metrics"][k] for h in r["history"] for k in ("l1", "psnr", "ssim", "style")]
            assert flat(a) == pytest.approx(flat(b))
            assert {t: h["steps"] for t, h in a["hits"].items()} == {t: h["steps"] for t, h in b["hits"].items()}
            assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]]


def test_bad_inputs_give_clear_errors(tiny_world, tmp_path):
    with pytest.raises(USER_ERRORS, match=r"unknown bench method\(s\) \['best'\]"):
        _config(tiny_world, tmp_path / "x", methods="zero,best")
    for shard in ("2/2", "a/b", "1", "-1/2"):
        with pytest.raises(USER_ERRORS, match="shard"):
            _config(tiny_world, tmp_path / "x", shard=shard)
    for bad in ({"steps": 0}, {"steps": -5}, {"eval_schedule": "0"}, {"limit": 0}, {"seconds": -1.0}, {"lr": 0},
                {"lora_multiple": 0.5}):
        with pytest.raises(USER_ERRORS, match=repr(next(iter(bad.values())))):
            _config(tiny_world, tmp_path / "x", **bad)
    with pytest.raises(USER_ERRORS, match="not held-out concepts of the zoo: \\['warm sepia'\\]"):
        run_bench(_config(tiny_world, tmp_path / "x", methods=("zero",), concepts=["warm sepia"]), progress=False)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    manifest = json.loads((tiny_world.zoo / "manifest.json").read_text())
    for info in manifest["concepts"].values():
        info["split"] = "train"
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(USER_ERRORS, match="no held-out concepts"):
        heldout_concepts(zoo)
    assert not (tmp_path / "x").exists()  # nothing written before the inputs check out


def test_cli_bench_and_report_only(full_bench, tiny_world, tmp_path, capsys):
    from weightgen.cli import main

    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as e:
        main(["bench", "--zoo", str(tiny_world.zoo), "--out", str(out), "--methods", "zero", "--limit", "1",
              "--steps", "2", "--eval-schedule", "1", "--eval-pairs", "0", "--max-steps", "4", "--val-crops", "2",
              "--no-progress"])
    assert e.value.code in (0, None)
    assert "| zero |" in capsys.readouterr().out and (out / "curves_steps.png").is_file()
    runs = list((out / "runs").glob("*/*.json"))
    assert len(runs) == 1
    run = json.loads(runs[0].read_text())
    assert run["tracking"] is None and run["oracle"]["eval_pairs"] == run["oracle"]["test_pairs"]  # 0 = every pair
    assert [h["step"] for h in run["history"]] == [0, 1, 2]
    report_copy = tmp_path / "copy"
    shutil.copytree(full_bench[0], report_copy)
    (report_copy / "bench.md").unlink()
    with pytest.raises(SystemExit) as e:
        main(["bench", "--out", str(report_copy), "--report-only"])
    assert e.value.code in (0, None) and "| generated-ddim |" in (report_copy / "bench.md").read_text()
    for args, message in ((["--methods", "best"], "unknown bench method"), (["--shard", "3/2"], "shard"),
                          (["--steps", "0"], "`steps` should be a positive integer, got 0"),
                          (["--eval-schedule", "1:50"], "eval_schedule should look like")):
        with pytest.raises(SystemExit) as e:
            main(["bench", "--zoo", str(tiny_world.zoo), "--out", str(tmp_path / "bad"), *args])
        assert e.value.code == 1 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", "--out", str(tmp_path / "bad")])
    assert e.value.code == 1 and "--zoo is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", "--out", str(tmp_path / "empty"), "--report-only"])
    assert e.value.code == 1 and "no bench in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    text = capsys.readouterr().out
    assert e.value.code in (0, None)
    for option in ("--shard", "--report-only", "--concepts-file", "--eval-schedule", "--scratch-multiple",
                   "--gain-fraction", "--reference-steps"):
        assert option in text
    assert all(f"{m}:" in text for m in METHODS)  # the methods are listed with their descriptions


def test_a_run_stops_once_past_the_budget_every_target_is_reached_or_capped():
    """The evaluation callback's stop rule, on fabricated L1 scores (the style target is reached at once)."""
    from gan.perceptual import StyleEmbedder
    from weightgen.bench.runner import _Evaluations, _Stop
    from weightgen.bench.targets import EvalSets

    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    sets = EvalSets(images[:2], images[:2], images, images, images[:1], images[:1])
    generator = torch.nn.Conv2d(3, 3, 1)
    targets = {"oracle-l1": {"metric": "l1", "value": 0.1}, "oracle-style": {"metric": "style", "value": 1e9}}
    embedder = StyleEmbedder(threads=1)

    def stop_step(l1s, caps, steps=3, full=frozenset({0, 2, 4})):
        evals = _Evaluations(generator, sets, embedder, targets, caps, steps, set(full))
        for step, l1 in enumerate(l1s):
            try:
                evals(step, {"step": step, "seconds": 0.0, "metrics": {"l1": l1}})
            except _Stop:
                assert [r["step"] for r in evals.records if "full" in r] == sorted({*full, step} & set(range(step + 1)))
                return step
        return None

    cap = {"oracle-l1": 6, "oracle-style": 3}
    assert stop_step([0.3, 0.05, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3], cap) == 3  # reached early: stops at the budget
    assert stop_step([0.3, 0.3, 0.3, 0.3, 0.3, 0.09, 0.3, 0.3], cap) == 5  # reached past it: stops there
    assert stop_step([0.3] * 9, cap) == 6  # never: stops at its cap, censored
    assert stop_step([0.3] * 9, {"oracle-l1": 3, "oracle-style": 3}) == 3  # no extension: the budget
