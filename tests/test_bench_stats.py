"""The bench's arithmetic without any training: censored steps-to-target, paired ratios, bootstrap intervals,
rank correlation, the gap recovered, the evaluation schedule and the budgets."""

import math

import numpy as np
import pytest

from weightgen.bench.config import (
    TARGETS,
    BenchConfig,
    Target,
    parse_schedule,
    schedule_steps,
)
from weightgen.bench.paper import PAPER_ROWS, paper_speedup
from weightgen.bench.report import claim_status, versus
from weightgen.bench.runner import evaluation_steps, target_caps
from weightgen.bench.stats import (
    Hit,
    bootstrap_interval,
    compare_steps,
    first_hit,
    format_ci,
    format_interval,
    gap_recovered,
    median_band,
    median_interval,
    ratio_interval,
    spearman,
    summarize_intervals,
)
from weightgen.errors import USER_ERRORS

INF = math.inf


def _history(l1s, every=10, seconds_per_step=0.5, styles=None):
    styles = styles or [1.0] * len(l1s)
    return [{"step": i * every, "seconds": i * every * seconds_per_step, "metrics": {"l1": v, "style": s}}
            for i, (v, s) in enumerate(zip(l1s, styles))]


def test_first_hit_finds_the_first_evaluation_at_or_below_the_target():
    hist = _history([0.30, 0.25, 0.20, 0.19, 0.21], styles=[3.0, 2.0, 2.5, 1.0, 1.5])
    hit = first_hit(hist, target=0.20, init_seconds=1.5)
    assert (hit.steps, hit.seconds, hit.budget_steps, hit.budget_seconds) == (20, 11.5, 40, 21.5)
    assert first_hit(hist, 0.30).steps == 0  # the init is already there
    assert first_hit(hist, 1.2, metric="style").steps == 30  # any metric of the record, lower is better
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
    assert ratio_interval(z60, g20, "seconds") == (3.0, 3.0)
    assert ratio_interval(s200, g20) == (10.0, INF)  # scratch needs > 200 steps: ratio >= 10
    assert ratio_interval(s200, g20, "seconds") == (9.0, INF)  # > 9 s against 1 s
    assert ratio_interval(g20, s200) == (0.0, 0.1)  # the other way round: an upper bound
    assert ratio_interval(s200, s200) == (0.0, INF)
    at0 = Hit(0, 0.0, 200, 9)
    assert ratio_interval(z60, at0) == (60.0, INF) and ratio_interval(at0, at0) == (1.0, 1.0)
    assert ratio_interval(z60, at0, "seconds") == (300.0, INF)  # 3 s over the 0.01 s floor: a lower bound
    assert format_interval(median_interval([(10.0, INF), (3.0, 3.0), (20.0, 20.0)]), 1, lower=">=") == "10.0-20.0"
    assert format_interval(median_interval([(10.0, INF), (12.0, INF), (3.0, 3.0)]), 1, lower=">=") == ">=10.0"
    assert [compare_steps(g20, z60), compare_steps(z60, g20), compare_steps(g20, Hit(20, 2, 200, 9))] == [
        "fewer", "more", "tie"]
    assert compare_steps(g20, s200) == "fewer" and compare_steps(s200, g20) == "more"
    assert compare_steps(s200, s200) == "both-censored"
    assert compare_steps(Hit(150, 1, 200, 9), Hit(None, None, 100, 9)) == "unknown"  # budgets differ


# -- bootstrap, rank correlation, gap recovered -------------------------------------------------------------------

def test_bootstrap_interval_contains_the_median_and_is_seeded():
    rng = np.random.default_rng(3)
    for n in (5, 12, 33):
        values = rng.lognormal(1.5, 0.6, size=n)
        intervals = [(v, v) for v in values]
        lo, hi = bootstrap_interval(intervals, seed=0)
        median = float(np.median(values))
        assert lo <= median <= hi and lo < hi
        assert lo >= values.min() and hi <= values.max()
        assert bootstrap_interval(intervals, seed=0) == (lo, hi)  # seeded: the same interval every time
    # more concepts, a narrower interval around the same centre
    wide = bootstrap_interval([(v, v) for v in rng.normal(10, 2, size=8)])
    narrow = bootstrap_interval([(v, v) for v in rng.normal(10, 2, size=400)])
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2


def test_bootstrap_keeps_censoring_a_lower_bound():
    # scratch censored at 15x the generated steps on every concept: the median ratio is >= 15, top open
    censored = [(15.0, INF)] * 10
    assert bootstrap_interval(censored) == (15.0, INF)
    s = summarize_intervals(censored)
    assert s["text"] == ">=15.0" and s["ci95_text"] == "[15.0, inf]" and s["median"] == [15.0, INF]
    # most exact, a few censored: the interval's bottom comes from the exact values, its top may open
    mixed = [(4.0, 4.0), (5.0, 5.0), (6.0, 6.0), (7.0, 7.0), (8.0, INF), (9.0, INF)]
    lo, hi = bootstrap_interval(mixed)
    med = median_interval(mixed)
    assert lo <= med[0] and hi >= med[1] and hi == INF
    # all exact but one upper-bounded (the baseline was faster than a censored product): never above the bound
    lo, hi = bootstrap_interval([(0.0, 0.5), (0.0, 0.5), (2.0, 2.0)])
    assert lo == 0.0 and hi == 2.0
    assert format_ci((1.234, INF), 2) == "[1.23, inf]"


def test_median_band_brackets_the_median_curve():
    values = np.random.default_rng(0).normal(1.0, 0.2, size=(9, 30)).cumsum(1)  # 9 concepts, 30 points
    median, lo, hi = median_band(values)
    assert median.shape == lo.shape == hi.shape == (30,)
    assert np.all(lo <= median) and np.all(median <= hi) and np.any(lo < hi)
    assert np.allclose(median, np.median(values, axis=0))


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=40).astype(float)  # many ties
    y = x + rng.normal(0, 1.0, size=40)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_gap_recovered():
    assert gap_recovered(base=0.20, init=0.20, oracle=0.10) == 0.0  # the base itself
    assert gap_recovered(0.20, 0.10, 0.10) == 1.0  # the oracle's quality
    assert gap_recovered(0.20, 0.15, 0.10) == pytest.approx(0.5)
    assert gap_recovered(0.20, 0.30, 0.10) == pytest.approx(-1.0)  # worse than the base
    assert gap_recovered(0.20, 0.15, 0.20) is None and gap_recovered(0.20, 0.15, 0.25) is None  # no gap


def test_targets_are_the_oracle_and_a_fraction_of_its_gain():
    assert TARGETS["oracle-l1"].value(0.2, 0.1, 0.9) == 0.1
    assert TARGETS["gain-style"].value(3.0, 2.0, 0.9) == pytest.approx(2.1)
    assert Target("l1", "gain").value(0.2, 0.25, 0.9) == pytest.approx(0.245)  # no gain: above the base


# -- the schedule and the budgets --------------------------------------------------------------------------------

def test_dense_schedule():
    schedule = parse_schedule("1:50,2:100,10")
    assert schedule == ((1, 50), (2, 100), (10, None))
    steps = schedule_steps(schedule, 200)
    assert steps[:50] == list(range(1, 51))  # every step while the curves separate
    assert steps[50:75] == list(range(52, 101, 2)) and steps[75:] == list(range(110, 201, 10))
    assert schedule_steps(schedule, 30) == list(range(1, 31))
    assert schedule_steps(parse_schedule("10"), 35) == [10, 20, 30]
    assert schedule_steps(parse_schedule("3:7,5"), 20) == [3, 6, 12, 17]
    for bad in ("", "1:50", "0:10,5", "a", "2:50,3:40,10", "1:50:3,10", "5,10"):
        with pytest.raises(USER_ERRORS, match="eval_schedule"):
            parse_schedule(bad)


def _cfg(**kw):
    return BenchConfig(zoo="z", out="o", **{"steps": 100, "max_steps": 2000, "eval_schedule": "1:50,2:100,10",
                                            "full_every": 10, **kw})


def test_budgets_are_multiples_of_the_generated_steps_to_target():
    cfg = _cfg(scratch_multiple=15, lora_multiple=6)
    reached = {"oracle-l1": {"reached": True, "steps": 40}, "gain-l1": {"reached": True, "steps": 0},
               "oracle-style": {"reached": False, "steps": None}, "gain-style": {"reached": True, "steps": 200}}
    assert target_caps(cfg, "scratch", reached) == {"oracle-l1": 600, "gain-l1": 100, "oracle-style": 100,
                                                    "gain-style": 2000}  # 15 x 200 = 3000, capped at max_steps
    assert target_caps(cfg, "zero", reached) == {"oracle-l1": 240, "gain-l1": 100, "oracle-style": 100,
                                                 "gain-style": 1200}
    assert target_caps(cfg, "generated", reached) == dict.fromkeys(TARGETS, 100)  # the product: the common budget
    assert target_caps(cfg, "zero", None) == dict.fromkeys(TARGETS, 100)  # no product run: nothing to multiply
    points, full = evaluation_steps(cfg, target_caps(cfg, "zero", reached))
    assert points[:50] == list(range(1, 51)) and 240 in points and 1200 in points and points[-1] == 1200
    assert {0, 100, 240, 1200} <= full and 51 not in full and all(s in points for s in full - {0})
    odd = evaluation_steps(_cfg(steps=37, eval_schedule="10"), {"oracle-l1": 45, "gain-l1": 37,
                                                                 "oracle-style": 37, "gain-style": 37})[0]
    assert odd == [10, 20, 30, 37, 40, 45]  # the common budget and every cap are evaluated exactly


def test_config_checks_echo_the_bad_value():
    for bad, field in (({"scratch_multiple": 0.5}, "scratch_multiple"), ({"gain_fraction": 1.0}, "gain_fraction"),
                       ({"max_steps": 50}, "max_steps"), ({"eval_pairs": 0}, "eval_pairs"),
                       ({"val_crops": 0}, "val_crops"), ({"full_every": 0}, "full_every"),
                       ({"editor": "magic"}, "editor"), ({"reference_steps": -3}, "reference_steps")):
        with pytest.raises(USER_ERRORS, match=field):
            _cfg(**bad)
    with pytest.raises(USER_ERRORS, match="concepts file"):
        _cfg(concepts_pairs="pairs")
    assert _cfg(seconds=0).seconds is None


# -- claims and the paper ----------------------------------------------------------------------------------------

def _run(cid, method, hit, room=True):
    targets = {t: {"room": room} for t in TARGETS}
    return {"concept_id": cid, "method": method, "hits": dict.fromkeys(TARGETS, hit.to_dict()),
            "oracle": {"targets": targets}}


def test_claims_are_met_only_when_censoring_cannot_undo_them():
    results = {f"c{i}": {"generated": _run(f"c{i}", "generated", Hit(10, 1, 200, 9)),
                         "scratch": _run(f"c{i}", "scratch", Hit(None, None, 200, 9))} for i in range(4)}
    v = versus(results, "generated", "scratch")
    assert v["ratio"] == [20.0, INF] and v["counts"]["fewer"] == 4 and v["ci95"] == [20.0, INF]
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


def test_concepts_without_room_leave_the_ratios():
    results = {f"c{i}": {"generated": _run(f"c{i}", "generated", Hit(10, 1, 200, 9), room=i > 0),
                         "zero": _run(f"c{i}", "zero", Hit(50 + i, 1, 200, 9), room=i > 0)} for i in range(3)}
    v = versus(results, "generated", "zero")
    assert v["n"] == 2 and set(v["per_concept"]) == {"c1", "c2"} and v["ratio"] == [5.15, 5.15]
    for i in range(3):
        for by in results[f"c{i}"].values():
            by["oracle"]["targets"] = {t: {"room": False} for t in TARGETS}
    assert versus(results, "generated", "zero") is None


def test_paper_figures_in_one_place():
    assert {m: (r.seconds, r.fid) for m, r in PAPER_ROWS.items()} == {
        "scratch": (659.8, 99.20), "zero": (198.5, 93.86), "generated": (43.3, 89.93)}
    assert paper_speedup("generated", "scratch") == pytest.approx(15.24, abs=0.01)
    assert paper_speedup("generated", "zero") == pytest.approx(4.58, abs=0.01)
    assert paper_speedup("mean", "zero") is None
