"""`weightgen bench` on the tiny end-to-end world, and its censored steps-to-target arithmetic."""

import json
import math
import shutil

import pytest
from tiny_world import HELDOUT

from prompts.identity import concept_id
from weightgen.bench.config import METHODS, BenchConfig
from weightgen.bench.report import claim_status, versus
from weightgen.bench.runner import heldout_concepts, run_bench, run_path
from weightgen.bench.stats import (
    Hit,
    compare_steps,
    first_hit,
    format_interval,
    median_interval,
    ratio_interval,
)
from weightgen.errors import USER_ERRORS

INF = math.inf
TINY = {"steps": 3, "eval_every": 1, "ddim_steps": 3, "batch_size": 4}


def _config(world, out, **kw) -> BenchConfig:
    return BenchConfig(zoo=str(world.zoo), out=str(out), generator=str(world.generator), **{**TINY, **kw})


@pytest.fixture(scope="module")
def full_bench(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "full"
    summary = run_bench(_config(tiny_world, out), progress=False)
    return out, summary


# -- steps-to-target arithmetic on synthetic histories ---------------------------------------------------------

def _history(l1s, every=10, seconds_per_step=0.5):
    return [{"step": i * every, "seconds": i * every * seconds_per_step, "metrics": {"l1": v}} for i, v in enumerate(l1s)]


def test_first_hit_finds_the_first_evaluation_at_or_below_the_target():
    hist = _history([0.30, 0.25, 0.20, 0.19, 0.21])
    hit = first_hit(hist, target_l1=0.20, init_seconds=1.5)
    assert (hit.steps, hit.seconds, hit.budget_steps, hit.budget_seconds) == (20, 11.5, 40, 21.5)
    assert first_hit(hist, 0.30).steps == 0  # the init is already there
    censored = first_hit(hist, 0.10, init_seconds=1.0)
    assert not censored.reached and censored.steps is None and censored.seconds is None
    assert censored.steps_interval() == (40, INF) and censored.seconds_interval() == (21.0, INF)
    assert Hit.from_dict(hit.to_dict()) == hit
    with pytest.raises(ValueError):
        first_hit([], 0.1)


def test_censored_medians_are_bounds():
    exact, cens = Hit(10, 1.0, 200, 20.0), Hit(None, None, 200, 20.0)
    assert median_interval([exact.steps_interval()] * 3) == (10, 10)
    # one of two censored: the median is at least (10 + 200) / 2
    assert format_interval(median_interval([exact.steps_interval(), cens.steps_interval()])) == ">105"
    assert format_interval(median_interval([cens.steps_interval()] * 3)) == ">200"
    assert format_interval(median_interval([exact.steps_interval()] * 2 + [cens.steps_interval()])) == "10"
    # censored at 100 (a seconds budget) between exact 50 and 150: the median lies in [100, 150]
    short = Hit(None, None, 100, 5.0)
    iv = median_interval([Hit(50, 1, 200, 9).steps_interval(), short.steps_interval(), Hit(150, 3, 200, 9).steps_interval()])
    assert iv == (100, 150) and format_interval(iv) == "100-150"


def test_ratios_and_comparisons_under_censoring():
    g20, s200, z60 = Hit(20, 1, 200, 9), Hit(None, None, 200, 9), Hit(60, 3, 200, 9)
    assert ratio_interval(z60, g20) == (3.0, 3.0)
    assert ratio_interval(s200, g20) == (10.0, INF)  # scratch needs > 200 steps: ratio >= 10
    assert ratio_interval(g20, s200) == (0.0, 0.1)  # the other way round: an upper bound
    assert ratio_interval(s200, s200) == (0.0, INF)
    at0 = Hit(0, 0.1, 200, 9)
    assert ratio_interval(z60, at0) == (60.0, INF) and ratio_interval(at0, at0) == (1.0, 1.0)
    assert format_interval(median_interval([(10.0, INF), (3.0, 3.0), (20.0, 20.0)]), 1, lower=">=") == "10.0-20.0"
    assert format_interval(median_interval([(10.0, INF), (12.0, INF), (3.0, 3.0)]), 1, lower=">=") == ">=10.0"
    assert [compare_steps(g20, z60), compare_steps(z60, g20), compare_steps(g20, Hit(20, 2, 200, 9))] == [
        "fewer", "more", "tie"]
    assert compare_steps(g20, s200) == "fewer" and compare_steps(s200, g20) == "more"
    assert compare_steps(s200, s200) == "both-censored"
    assert compare_steps(Hit(150, 1, 200, 9), Hit(None, None, 100, 9)) == "unknown"  # budgets differ


def _run(cid, method, hit):
    return {"concept_id": cid, "method": method, "hit": hit.to_dict()}


def test_claims_are_met_only_when_censoring_cannot_undo_them():
    results = {f"c{i}": {"generated": _run(f"c{i}", "generated", Hit(10, 1, 200, 9)),
                         "scratch": _run(f"c{i}", "scratch", Hit(None, None, 200, 9))} for i in range(4)}
    v = versus(results, "generated", "scratch")
    assert v["ratio"] == [20.0, INF] and v["counts"]["fewer"] == 4
    assert claim_status("ratio", 15.0, v) == (">=20.0x", "met")
    assert claim_status("ratio", 25.0, v)[1] == "undetermined"
    assert claim_status("fewer", 0.75, v)[1] == "met"
    results["c0"]["scratch"] = _run("c0", "scratch", Hit(10, 1, 200, 9))  # a tie
    results["c1"]["generated"] = _run("c1", "generated", Hit(None, None, 200, 9))  # neither reaches
    v = versus(results, "generated", "scratch")
    assert v["counts"] == {"fewer": 2, "tie": 1, "more": 0, "both-censored": 1, "unknown": 0}
    measured, status = claim_status("fewer", 0.75, v)
    assert status == "undetermined" and measured.startswith("2/4 (1 ties")  # 3/4 if the censored one is a win
    assert claim_status("fewer", 0.5, v)[1] == "met"
    results["c2"]["scratch"] = _run("c2", "scratch", Hit(5, 1, 200, 9))  # scratch is faster here
    v = versus(results, "generated", "scratch")
    assert claim_status("fewer", 0.75, v) == ("1/4 (1 ties, 1 more, 1 neither reached, 0 undecided)", "not met")


# -- the bench on the tiny world -------------------------------------------------------------------------------

def test_full_bench_has_every_method_row_and_the_plots(full_bench, tiny_world):
    out, summary = full_bench
    assert list(summary["methods"]) == list(METHODS) and summary["n_concepts"] == len(HELDOUT)
    md = (out / "bench.md").read_text()
    for m in METHODS:
        assert f"\n| {m} | " in md and summary["methods"][m]["n"] == len(HELDOUT)
    assert "| oracle (target) |" in md and "The claims" in md
    assert [c["baseline"] for c in summary["claims"]] == ["scratch", "zero", "nearest", "mean"]
    assert all(c["status"] in ("met", "not met", "undetermined") for c in summary["claims"])
    assert json.loads((out / "bench.json").read_text())["methods"].keys() == summary["methods"].keys()
    for name in ("curves_steps.png", "curves_seconds.png", "step0.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for text in HELDOUT:
        for m in METHODS:
            r = json.loads(run_path(out, concept_id(text), m).read_text())
            assert [h["step"] for h in r["history"]] == [0, 1, 2, 3]
            assert r["hit"] == first_hit(r["history"], r["oracle"]["metrics"]["l1"], r["init_seconds"]).to_dict()


def test_bench_measures_what_it_claims(full_bench, tiny_world):
    """Step-0 quality is the init's own, the target is the oracle's re-measured quality, scratch trains all of G."""
    from weightgen.chunks.adapters import read_adapter
    from weightgen.chunks.evaluate import AdapterEvaluator

    out, _ = full_bench
    ev = AdapterEvaluator.from_zoo(tiny_world.zoo)
    cid = concept_id(HELDOUT[0])
    runs = {m: json.loads(run_path(out, cid, m).read_text()) for m in METHODS}
    oracle_sd, _ = read_adapter(tiny_world.zoo / runs["zero"]["oracle"]["path"])
    assert runs["zero"]["oracle"]["metrics"]["l1"] == pytest.approx(ev.evaluate(cid, oracle_sd)["l1"])
    assert runs["zero"]["oracle"]["path"].endswith("ckpt-1")  # the last zoo checkpoint
    assert runs["zero"]["step0"]["l1"] == pytest.approx(ev.evaluate(cid, None)["l1"], rel=1e-5)  # the base itself
    assert len({round(runs[m]["step0"]["l1"], 6) for m in ("zero", "mean", "nearest", "generated")}) == 4
    assert runs["nearest"]["init_info"]["nearest_concept"]
    assert runs["scratch"]["trained_params"] > 10 * runs["zero"]["trained_params"]
    assert runs["scratch"]["step0"]["l1"] != pytest.approx(runs["zero"]["step0"]["l1"])


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
    with pytest.raises(USER_ERRORS, match=r"lr=0.001 \(now 0.01\)"):
        run_bench(_config(tiny_world, tmp_path / "b", methods=("zero",), lr=1e-2), progress=False)
    summary = run_bench(_config(tiny_world, tmp_path / "b", methods=("zero",), steps=1, limit=1, overwrite=True),
                        progress=False)
    assert summary["n_concepts"] == 1 and len(list((tmp_path / "b" / "runs").glob("*/*.json"))) == 1


def test_shards_together_equal_the_full_bench(full_bench, tiny_world, tmp_path):
    full_out, _ = full_bench
    out = tmp_path / "sharded"
    first = run_bench(_config(tiny_world, out, methods=("zero",), shard="0/2"), progress=False)
    assert first["n_concepts"] == 1
    both = run_bench(_config(tiny_world, out, methods=("zero",), shard="1/2"), progress=False)
    assert both["n_concepts"] == 2 and set(both["concepts"]) == {concept_id(t) for t in HELDOUT}
    for text in HELDOUT:  # deterministic: the same numbers as the unsharded bench
        a = json.loads(run_path(out, concept_id(text), "zero").read_text())
        b = json.loads(run_path(full_out, concept_id(text), "zero").read_text())
        flat = lambda r: [h["metrics"][k] for h in r["history"] for k in ("l1", "psnr", "ssim")]
        assert flat(a) == pytest.approx(flat(b))


def test_bad_inputs_give_clear_errors(tiny_world, tmp_path):
    with pytest.raises(USER_ERRORS, match=r"unknown bench method\(s\) \['best'\]"):
        _config(tiny_world, tmp_path / "x", methods="zero,best")
    for shard in ("2/2", "a/b", "1", "-1/2"):
        with pytest.raises(USER_ERRORS, match="shard"):
            _config(tiny_world, tmp_path / "x", shard=shard)
    for bad in ({"steps": 0}, {"steps": -5}, {"eval_every": 0}, {"limit": 0}, {"seconds": -1.0}, {"lr": 0}):
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
              "--steps", "2", "--eval-every", "1", "--no-progress"])
    assert e.value.code in (0, None)
    assert "| zero |" in capsys.readouterr().out and (out / "curves_steps.png").is_file()
    assert len(list((out / "runs").glob("*/*.json"))) == 1
    report_copy = tmp_path / "copy"
    shutil.copytree(full_bench[0], report_copy)
    (report_copy / "bench.md").unlink()
    with pytest.raises(SystemExit) as e:
        main(["bench", "--out", str(report_copy), "--report-only"])
    assert e.value.code in (0, None) and "| generated-ddim |" in (report_copy / "bench.md").read_text()
    for args, message in ((["--methods", "best"], "unknown bench method"), (["--shard", "3/2"], "shard"),
                          (["--steps", "0"], "`steps` should be a positive integer, got 0")):
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
    assert e.value.code in (0, None) and "--shard" in text and "--report-only" in text
    assert all(f"{m}:" in text for m in METHODS)  # the methods are listed with their descriptions
