"""`weightgen bench --concepts-file`: concepts with no zoo oracle, timed against a reference fine-tune the bench
makes itself and caches (resumably), on pairs it is given or builds."""

import json

import pytest
import torch

from prompts.identity import concept_id
from weightgen.bench.config import BenchConfig
from weightgen.bench.reference import (
    make_reference,
    reference_recipe,
    reference_settings,
)
from weightgen.bench.runner import run_bench, run_path
from weightgen.errors import USER_ERRORS

FILE_CONCEPTS = ["soft amber", "warm sepia"]  # a new concept, and one the zoo trained the generator on
TINY = {"steps": 2, "eval_schedule": "1", "eval_pairs": 2, "full_every": 2, "max_steps": 4, "val_crops": 4,
        "ddim_steps": 3, "batch_size": 4, "methods": ("zero", "generated")}


@pytest.fixture(scope="module")
def file_pairs(tmp_path_factory):
    from weightgen.pairs.synthetic import write_synthetic_pairs

    root = tmp_path_factory.mktemp("file-concepts")
    pairs = write_synthetic_pairs(root / "pairs", FILE_CONCEPTS, n_train=8, n_test=4, image_size=32, seed=5)
    concepts = root / "concepts.txt"
    concepts.write_text("# my concepts\nsoft amber\n\nwarm  sepia\nSoft Amber\n")  # spacing and case: one concept
    return pairs, concepts


def _config(world, out, concepts_file, **kw):
    return BenchConfig(zoo=str(world.zoo), out=str(out), generator=str(world.generator),
                       concepts_file=str(concepts_file), **{**TINY, **kw})


def test_concepts_file_benches_against_cached_reference_fine_tunes(tiny_world, file_pairs, tmp_path, monkeypatch):
    pairs, concepts = file_pairs
    out = tmp_path / "bench"
    summary = run_bench(_config(tiny_world, out, concepts, concepts_pairs=str(pairs)), progress=False)
    assert summary["n_concepts"] == 2 and set(summary["concepts"]) == {concept_id(t) for t in FILE_CONCEPTS}
    zoo = json.loads((tiny_world.zoo / "manifest.json").read_text())
    for text in FILE_CONCEPTS:
        cid = concept_id(text)
        folder = out / "references" / cid
        record = json.loads((folder / "reference.json").read_text())
        # the zoo's recipe, its step count and its checkpoint placement (no --reference-steps given)
        assert [c["step"] for c in record["checkpoints"]] == zoo["train"]["checkpoint_steps"]
        assert record["steps"] == zoo["train"]["max_steps"] and not (folder / "state").exists()
        run = json.loads(run_path(out, cid, "zero").read_text())
        oracle = run["oracle"]
        assert oracle["source"] == "reference" and run["concept_source"] == "file"
        assert [c["path"] for c in oracle["checkpoints"]] == [f"references/{cid}/ckpt-{i}" for i in range(2)]
        assert oracle["test"]["l1"] < oracle["base"]["test"]["l1"]  # the reference learned the concept
    md = (out / "bench.md").read_text()
    assert "on 2 concepts of a concepts file" in md and "a training concept of the zoo" in md
    assert "its own reference LoRA" in md

    # cached: a rerun from scratch (runs discarded) reuses both references instead of training them again
    from weightgen.bench import reference

    mtimes = {p: p.stat().st_mtime_ns for p in (out / "references").rglob("*.safetensors")}

    class NoTraining:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a cached reference fine-tune was trained again")

    monkeypatch.setattr(reference, "Pix2PixTrainer", NoTraining)
    again = run_bench(_config(tiny_world, out, concepts, concepts_pairs=str(pairs), overwrite=True), progress=False)
    assert again["n_concepts"] == 2 and {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    monkeypatch.undo()

    # a reference made with other settings is made again, not reused
    other = run_bench(_config(tiny_world, out, concepts, concepts_pairs=str(pairs), overwrite=True,
                              reference_steps=4), progress=False)
    record = json.loads((out / "references" / concept_id("soft amber") / "reference.json").read_text())
    assert [c["step"] for c in record["checkpoints"]] == [2, 4] and record["steps"] == 4
    assert other["concepts"][concept_id("soft amber")]["oracle"]["chosen"]["l1"]["step"] in (2, 4)


def test_reference_fine_tune_resumes_to_the_same_weights(tiny_world, file_pairs, tmp_path):
    from gan.base import read_base_meta
    from gan.config import LoraSettings
    from gan.data import PairedData
    from weightgen.chunks.adapters import read_adapter

    pairs, _ = file_pairs
    zoo = json.loads((tiny_world.zoo / "manifest.json").read_text())
    train = reference_recipe(zoo["train"], None, cpu=True)
    lora = LoraSettings.from_dict(zoo["lora"])
    data = PairedData.load(pairs, ["soft amber"])
    settings = reference_settings(train, lora, read_base_meta(tiny_world.base), "pairs-digest")
    whole = make_reference(tmp_path / "whole", data, tiny_world.base, lora, train, settings)
    assert not whole["resumed"]

    def kill_at_last_checkpoint(step, record):
        if step == train.checkpoint_steps[-1]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_reference(tmp_path / "cut", data, tiny_world.base, lora, train, settings, state_every=0.0,
                       callback=kill_at_last_checkpoint)
    assert (tmp_path / "cut" / "ckpt-0").is_dir() and not (tmp_path / "cut" / "ckpt-1").exists()
    assert (tmp_path / "cut" / "state").is_dir() and not (tmp_path / "cut" / "reference.json").exists()
    resumed = make_reference(tmp_path / "cut", data, tiny_world.base, lora, train, settings)
    assert resumed["resumed"] and resumed["checkpoints"] == whole["checkpoints"]
    for ck in whole["checkpoints"]:
        a, _ = read_adapter(tmp_path / "whole" / ck["path"])
        b, _ = read_adapter(tmp_path / "cut" / ck["path"])
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [h["step"] for h in resumed["history"]] == [h["step"] for h in whole["history"]]


def test_concepts_file_pairs_are_built_with_the_editor(tiny_world, tmp_path, monkeypatch):
    from weightgen.pairs import editors
    from weightgen.pairs.synthetic import colour_transform

    class Tint:
        name = "tint"

        def describe(self):
            return {"name": "tint"}

        def edit(self, images, concept, seed=None):
            return colour_transform(images, 11)

    monkeypatch.setitem(editors.REGISTRY, "tint", lambda **options: Tint())
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("amber haze\n")
    out = tmp_path / "bench"
    summary = run_bench(_config(tiny_world, out, concepts, editor="tint", methods=("zero",), reference_steps=4),
                        progress=False)
    cid = concept_id("amber haze")
    manifest = json.loads((out / "pairs" / cid / "manifest.json").read_text())
    assert manifest["image_size"] == 32 and cid in manifest["concepts"]  # at the base's image size
    assert summary["concepts"][cid]["oracle"]["source"] == "reference"

    class Broken(Tint):
        def edit(self, images, concept, seed=None):
            raise RuntimeError("out of memory\n(traceback tail)")

    monkeypatch.setitem(editors.REGISTRY, "tint", lambda **options: Broken())
    concepts.write_text("amber haze\nnew thing\n")
    with pytest.raises(USER_ERRORS, match="editor 'tint' could not make pairs for 'new thing': RuntimeError: out of memory$"):
        run_bench(_config(tiny_world, out, concepts, editor="tint", methods=("zero",), reference_steps=4),
                  progress=False)


def test_concepts_file_errors(tiny_world, file_pairs, tmp_path):
    pairs, _ = file_pairs
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(USER_ERRORS, match="has no concepts"):
        run_bench(_config(tiny_world, tmp_path / "a", empty, concepts_pairs=str(pairs)), progress=False)
    with pytest.raises(USER_ERRORS, match="concepts file not found"):
        run_bench(_config(tiny_world, tmp_path / "b", tmp_path / "missing.txt"), progress=False)
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("not in those pairs\n")
    with pytest.raises(USER_ERRORS, match="not in the pairs folder"):
        run_bench(_config(tiny_world, tmp_path / "c", unknown, concepts_pairs=str(pairs)), progress=False)
    assert not (tmp_path / "c").exists()  # refused before anything is written
    with pytest.raises(USER_ERRORS, match="not in the concepts file"):
        run_bench(_config(tiny_world, tmp_path / "d", file_pairs[1], concepts_pairs=str(pairs),
                          concepts=["pink glow"]), progress=False)
