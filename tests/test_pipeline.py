"""`weightgen pipeline`: configs/tiny.toml end to end, resume after an interruption, changed configs, config errors."""

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import tomllib

from weightgen.errors import USER_ERRORS
from weightgen.pipeline.config import (
    PipelineConfig,
    config_from_dict,
    load_config,
    to_toml,
)
from weightgen.pipeline.runner import Pipeline
from weightgen.pipeline.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
ENCODERS: dict = {}  # one MiniLM for every pipeline in this module


def write_config(folder: Path, work: Path, target: Path, edit=lambda text: text) -> Path:
    """configs/tiny.toml with its work and ship target pointed into `folder`."""
    text = (ROOT / "configs" / "tiny.toml").read_text()
    text = re.sub(r'(?m)^work = .*$', f'work = "{work}"', text)
    text = re.sub(r'(?m)^target = .*$', f'target = "{target}"', text)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    path.write_text(edit(text))
    return path


def states(pipe: Pipeline) -> dict[str, str]:
    return {s.stage: s.state for s in pipe.inspect()}


def mtimes(*folders: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for f in folders for p in f.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny pipeline, run once: (config path, pipeline, run statuses)."""
    root = tmp_path_factory.mktemp("pipeline")
    path = write_config(root, root / "work", root / "assets")
    pipe = Pipeline.from_file(path, encoders=ENCODERS)
    return path, pipe, pipe.run(progress=False)


def copy_run(tiny_run, dest: Path, edit=lambda text: text) -> Pipeline:
    """The fixture's work folder copied under `dest`, with a (possibly edited) config of its own."""
    _, pipe, _ = tiny_run
    shutil.copytree(pipe.work, dest / "work")
    return Pipeline.from_file(write_config(dest, dest / "work", dest / "assets", edit), encoders=ENCODERS)


def test_tiny_config_end_to_end(tiny_run):
    path, pipe, final = tiny_run
    assert [(s.stage, s.state) for s in final] == [(s, "done") for s in STAGES]
    work = pipe.work
    assert (work / "base" / "weightgen.json").is_file() and (work / "pairs" / "manifest.json").is_file()
    manifest = json.loads((work / "zoo" / "manifest.json").read_text())
    assert manifest["complete"]
    assert sorted(c["split"] for c in manifest["concepts"].values()) == ["heldout", "train", "train"]
    assert (work / "chunks" / "chunks.safetensors").is_file()
    assert json.loads((work / "generator-run" / "training" / "state.json").read_text())["step"] == 20
    # validation ran on the held-out concept and was logged by the trainer
    log = [json.loads(line) for line in (work / "generator-run" / "training" / "log.jsonl").read_text().splitlines()]
    assert any("validation" in r and "val_l1" in r["validation"] for r in log)
    # the shipped folder loads: generator (with the base it names) and the zoo reference
    from weightgen.finetune.starts import ZooReference
    from weightgen.generator.pipeline import WeightGenPipeline

    target = path.parent / "assets"
    gen = WeightGenPipeline.from_pretrained(target / "generator", text_encoder=ENCODERS[("minilm", None)])
    gen.check_compatible(base=json.loads((target / "base" / "weightgen.json").read_text()))
    assert ZooReference.load(target / "zoo_reference").texts == ["warm sepia", "cold blue"]
    events = [json.loads(line) for line in (work / "pipeline_log.jsonl").read_text().splitlines()]
    assert [e["stage"] for e in events if e["event"] == "finish"] == list(STAGES[1:])
    assert all(e["seconds"] >= 0 for e in events if e["event"] == "finish")
    recorded = json.loads((work / "pipeline_state.json").read_text())["stages"]
    assert set(recorded) == set(STAGES[1:]) and recorded["zoo"]["config"]["zoo.k"] == 2


def test_rerun_through_the_cli_skips_every_stage(tiny_run, capsys):
    from weightgen.cli import main

    path, pipe, _ = tiny_run
    before = mtimes(pipe.work, path.parent / "assets")
    with pytest.raises(SystemExit) as exit_:
        main(["pipeline", str(path), "--no-progress"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert re.search(rf"{stage}: done, skipped", out), out
    after = mtimes(pipe.work, path.parent / "assets")
    log = str(pipe.work / "pipeline_log.jsonl")
    assert {k: v for k, v in after.items() if k != log} == {k: v for k, v in before.items() if k != log}
    assert after[log] != before[log]


def test_dry_run_prints_the_plan(tiny_run, tmp_path, capsys):
    from weightgen.cli import main

    path, _, _ = tiny_run
    with pytest.raises(SystemExit) as exit_:
        main(["pipeline", str(path), "--dry-run"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert lines[1].split() == ["stage", "status", "output", "detail"]
    assert [rows[s][1] for s in STAGES] == ["done"] * len(STAGES)
    assert rows["zoo"][2].endswith("work/zoo") and rows["generator"][3:] == ["step", "20/20"]

    fresh = write_config(tmp_path, tmp_path / "work", tmp_path / "assets")
    with pytest.raises(SystemExit):
        main(["pipeline", str(fresh), "--dry-run"])
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert [rows[s][1] for s in STAGES] == ["done", "todo", "todo", "todo", "todo", "todo"]
    assert not (tmp_path / "work").exists()  # a dry run writes nothing


def test_interrupted_zoo_resumes(tiny_run, tmp_path, monkeypatch):
    import weightgen.zoo.build as zoo_build

    pipe = copy_run(tiny_run, tmp_path)
    for name in ("zoo", "chunks", "generator-run"):
        shutil.rmtree(pipe.work / name)
    real, trained = zoo_build.train_concept, []

    def interrupted(concept, *args, **kwargs):  # the run dies after the first concept
        if trained:
            raise RuntimeError("killed")
        trained.append(concept.id)
        return real(concept, *args, **kwargs)

    monkeypatch.setattr(zoo_build, "train_concept", interrupted)
    with pytest.raises(RuntimeError, match="killed"):
        pipe.run("zoo", progress=False)
    zoo = next(s for s in pipe.inspect() if s.stage == "zoo")
    assert (zoo.state, zoo.detail) == ("partial", "1/3 concepts")
    first = pipe.work / "zoo" / trained[0] / "entry.json"
    stamp = first.stat().st_mtime_ns
    events = [json.loads(line) for line in (pipe.work / "pipeline_log.jsonl").read_text().splitlines()]
    assert events[-1]["stage"] == "zoo" and events[-1]["event"] == "fail" and "killed" in events[-1]["error"]

    monkeypatch.setattr(zoo_build, "train_concept", real)
    pipe.run("zoo", progress=False)
    assert states(pipe)["zoo"] == "done" and first.stat().st_mtime_ns == stamp  # resumed, not redone
    assert states(pipe)["chunks"] == "todo"


def test_changed_config_is_refused_then_overwritten(tiny_run, tmp_path):
    pipe = copy_run(tiny_run, tmp_path, edit=lambda t: t.replace("block_size = 64", "block_size = 32"))
    plan = {s.stage: s for s in pipe.inspect()}
    assert plan["chunks"].state == "changed" and "chunks.block_size was 64, now 32" in plan["chunks"].detail
    assert plan["generator"].state == "changed" and plan["zoo"].state == "done"
    with pytest.raises(USER_ERRORS, match=r"stage chunks was built with another config: chunks.block_size was 64"):
        pipe.run(progress=False)
    pipe.run("chunks", overwrite_changed=True, progress=False)
    from weightgen.chunks.layout import ChunkLayout

    assert ChunkLayout.load(pipe.work / "chunks").block_size == 32
    assert states(pipe)["chunks"] == "done" and states(pipe)["generator"] == "changed"  # its input changed
    with pytest.raises(USER_ERRORS, match="its input chunks changed since it was built"):
        pipe.run("generator", progress=False)


def test_resumable_keys_resume_instead_of_refusing(tiny_run, tmp_path):
    pipe = copy_run(tiny_run, tmp_path, edit=lambda t: t.replace("steps = 20", "steps = 25").replace(
        "log_every = 10", "log_every = 5"))
    plan = {s.stage: s for s in pipe.inspect()}
    assert (plan["generator"].state, plan["generator"].detail) == ("partial", "step 20/25")
    assert plan["ship"].state == "todo"  # a copy: redone when what it copies changes


def test_outputs_without_a_record_need_adopt(tiny_run, tmp_path):
    pipe = copy_run(tiny_run, tmp_path)
    (pipe.work / "pipeline_state.json").unlink()
    plan = {s.stage: s for s in pipe.inspect()}
    assert plan["base"].state == "changed" and "not built by this pipeline" in plan["base"].detail
    with pytest.raises(USER_ERRORS, match="--adopt"):
        pipe.run("base", progress=False)
    pipe.run("base,zoo", adopt=True, progress=False)
    assert states(pipe)["base"] == "done" and states(pipe)["zoo"] == "done" and states(pipe)["chunks"] == "changed"


def test_stage_selection_and_launcher_errors(tmp_path, monkeypatch):
    pipe = Pipeline.from_file(write_config(tmp_path, tmp_path / "work", tmp_path / "assets"), encoders=ENCODERS)
    with pytest.raises(USER_ERRORS, match="stage chunks needs zoo, which is todo"):
        pipe.run("chunks", progress=False)
    with pytest.raises(USER_ERRORS, match=r"unknown stage\(s\) \['zoos'\]"):
        pipe.run("base,zoos")
    no_ship = Pipeline(replace(pipe.config, ship=replace(pipe.config.ship, target="")), tmp_path)
    assert "ship" not in no_ship.stages() and no_ship.inspect()[-1].state == "off"
    with pytest.raises(USER_ERRORS, match="ship needs a target"):
        no_ship.stages("ship")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(USER_ERRORS, match="only the zoo stage"):
        pipe.run("base,zoo")
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("data, message", [
    ({"zoo": {"stepz": 400}}, "unknown key 'stepz' in [zoo]; known: n_train, n_heldout"),
    ({"zooo": {}}, "unknown key 'zooo' in the top level of the config; known: work, prompts"),
    ({"zoo": {"train": {"max_steps": "many"}}},
     "bad value for 'max_steps' in [zoo.train]: 'many' (expected an integer)"),
    ({"zoo": {"k": 0}}, "[zoo]: `k` should be a positive integer, got 0"),
    ({"zoo": {"k": 5, "train": {"max_steps": 3}}}, "cannot place k=5 distinct checkpoints"),
    ({"generator": {"steps": -1}}, "[generator]: steps must be a positive integer, got -1"),
    ({"generator": {"model_size": "huge"}}, "model_size must be one of"),
    ({"pairs": {"image_size": 30}}, "`image_size` 30 is not divisible by 2**n_downsample = 4"),
    ({"pairs": {"editor": "magic"}}, "[pairs]: unknown editor 'magic'"),
    ({"base": {"generator": {"image_size": 32}}}, "key 'image_size' in [base.generator] is set by the pipeline"),
    ({"base": {"concepts": "warm sepia"}}, "bad value for 'concepts' in [base]: 'warm sepia' (expected a list)"),
    ({"ship": {"max_mb": 0}}, "[ship]: `max_mb` should be positive, got 0.0"),
    ({"work": 3}, "bad value for 'work' in the top level of the config: 3 (expected a string)"),
])
def test_config_errors_name_the_key_and_echo_the_value(data, message):
    with pytest.raises(USER_ERRORS) as err:
        config_from_dict(data)
    assert message in str(err.value)


def test_config_file_errors_through_the_cli(tmp_path, capsys):
    from weightgen.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[zoo]\nstepz = 3\n")
    with pytest.raises(SystemExit) as exit_:
        main(["pipeline", str(bad), "--dry-run"])
    assert exit_.value.code == 1 and "error: unknown key 'stepz' in [zoo]" in capsys.readouterr().err
    bad.write_text("[zoo\n")
    with pytest.raises(USER_ERRORS, match="cannot parse"):
        load_config(bad)
    (tmp_path / "c.json").write_text(json.dumps({"zoo": {"k": 3}}))
    assert load_config(tmp_path / "c.json").zoo.k == 3
    with pytest.raises(USER_ERRORS, match="pipeline config not found"):
        load_config(tmp_path / "missing.toml")


def test_print_config_round_trips_and_default_toml_is_the_default_zoo(capsys):
    from weightgen.cli import main

    with pytest.raises(SystemExit):
        main(["pipeline", "--print-config"])
    text = capsys.readouterr().out
    assert config_from_dict(tomllib.loads(text)) == PipelineConfig()
    assert to_toml(PipelineConfig()) == text
    # configs/default.toml is the default config (scripts/build_zoo.sh's recipe) with a work folder and a ship target
    default = load_config(ROOT / "configs" / "default.toml")
    assert replace(default, work="work", ship=replace(default.ship, target="")) == PipelineConfig()
    assert (default.base.n_concepts, default.base.train.max_steps, default.pairs.image_size) == (8, 1000, 64)
    assert (default.zoo.n_train, default.zoo.n_heldout, default.zoo.k, default.zoo.train.max_steps) == (64, 16, 5, 400)
    pipe = Pipeline(default, ROOT / "configs")
    assert pipe.output("ship") == ROOT / "weightgen" / "assets" and pipe.work == (ROOT / "runs").resolve()


@pytest.mark.slow
def test_zoo_stage_sharded_over_two_ranks_with_accelerate_launch(tiny_run, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    pipe = copy_run(tiny_run, tmp_path, edit=lambda t: t.replace("max_steps = 6\n", "max_steps = 6\ncpu = true\n"))
    for name in ("zoo", "chunks", "generator-run"):
        shutil.rmtree(pipe.work / name)
    with socket.socket() as s:  # a free port: other jobs on this machine may hold accelerate's default
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           "-m", "weightgen", "pipeline", pipe.source, "--stages", "zoo", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((pipe.work / "zoo" / "manifest.json").read_text())
    ranks = sorted(json.loads((pipe.work / "zoo" / c / "entry.json").read_text())["rank"] for c in manifest["concepts"])
    assert manifest["complete"] and ranks == [0, 0, 1]
    assert proc.stdout.count("zoo: finished") == 1  # the main rank reports, the other is quiet
    assert states(pipe)["zoo"] == "done"
