"""Pairs stage: concept ids, source photos and their split, the dataset writer, resume, the CLI verb."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gan.io import load_tensors, read_json
from prompts.identity import concept_id
from weightgen.cli import main as cli_main
from weightgen.errors import USER_ERRORS
from weightgen.pairs.build import build_pairs, read_concepts_file
from weightgen.pairs.config import PairsConfig
from weightgen.pairs.sources import (
    BUNDLED_PHOTOS,
    SourceConfig,
    build_sources,
    load_photos,
)


def _photo(path, mode="RGB", size=(96, 80), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([xx * 255 / size[0], yy * 255 / size[1], (xx + yy) % 64 * 4], -1)
    img = Image.fromarray((base + rng.integers(0, 30, base.shape)).clip(0, 255).astype(np.uint8))
    img.convert(mode).save(path)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Six small user photos: RGB, grayscale and RGBA, in a nested folder."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    for i, mode in enumerate(["RGB", "RGB", "L", "RGBA", "RGB", "P"]):
        _photo(root / ("sub" if i % 2 else "") / f"p{i}.png", mode=mode, seed=i)
    return root


@pytest.fixture(scope="module")
def editor():
    from weightgen.pairs.editors.procedural import ProceduralEditor

    return ProceduralEditor()


def test_concept_id_format():
    cid = concept_id("Van  Gogh Style")
    assert cid == concept_id("van gogh style") and cid.startswith("van-gogh-style-")
    assert len(cid.split("-")[-1]) == 8
    assert concept_id("Café au lait!").startswith("cafe-au-lait-")
    assert concept_id("東京の夜").startswith("concept-")
    long = concept_id("x" * 100 + " style")
    assert len(long) == 40 + 1 + 8 and all(c.isalnum() or c == "-" for c in long)
    assert concept_id("van gogh style") != concept_id("van gogh style!")
    with pytest.raises(USER_ERRORS, match="empty"):
        concept_id("  ")


def test_bundled_photos_load_offline_and_split_by_photo():
    s = build_sources(SourceConfig(image_size=32, n_train=20, n_test=6, seed=1))
    assert len(s.train_photos) + len(s.test_photos) == len(BUNDLED_PHOTOS) >= 10
    assert not set(s.train_photos) & set(s.test_photos)
    assert set(s.train_crop_photos) <= set(s.train_photos) and set(s.test_crop_photos) <= set(s.test_photos)
    assert s.train.shape == (20, 3, 32, 32) and s.test.shape == (6, 3, 32, 32) and s.train.dtype == torch.uint8
    again = build_sources(SourceConfig(image_size=32, n_train=20, n_test=6, seed=1))
    assert torch.equal(s.train, again.train) and s.test_photos == again.test_photos
    other = build_sources(SourceConfig(image_size=32, n_train=20, n_test=6, seed=2))
    assert other.test_photos != s.test_photos or not torch.equal(other.train, s.train)


def test_user_folder_converts_and_skips_bad_images(tmp_path, photo_dir):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(photo_dir, folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    _photo(folder / "tiny.png", size=(20, 20))
    (folder / "notes.txt").write_text("ignored: not an image")
    with pytest.warns(UserWarning) as caught:
        ps = load_photos(folder, min_size=32)
    assert {name for name, _ in ps.skipped} == {"broken.jpg", "tiny.png"}
    assert any("broken.jpg" in str(w.message) for w in caught)
    assert len(ps.photos) == 6 and all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in ps.photos.values())
    gray = ps.photos["p2.png"]
    assert np.array_equal(gray[..., 0], gray[..., 1])  # grayscale repeated into RGB
    with pytest.raises(USER_ERRORS, match="sources folder not found"):
        load_photos(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(USER_ERRORS, match="at least 2 usable source photos"):
        build_sources(SourceConfig(folder=str(empty)))


def test_build_writes_the_agreed_format(tmp_path, photo_dir, editor):
    out = tmp_path / "ds"
    cfg = PairsConfig(out=str(out), editor="procedural", image_size=32, n_train=6, n_test=3, seed=0,
                      sources=str(photo_dir))
    with pytest.warns(UserWarning, match="duplicate concept 'Van Gogh style'"):
        report = build_pairs(["van gogh style", "at night", "Van Gogh  style"], cfg, editor=editor)
    m = read_json(out / "manifest.json")
    assert (m["format"], m["version"], m["image_size"], m["canvas_size"], m["editor"], m["seed"]) == (
        "weightgen-pairs", 2, 32, 64, "procedural", 0)
    assert list(m["concepts"]) == [concept_id("van gogh style"), concept_id("at night")] == report.built
    entry = m["concepts"][concept_id("at night")]
    assert entry["text"] == "at night" and (entry["n_train"], entry["n_test"]) == (6, 3)
    assert entry["ops"] == editor.explain("at night") and next(iter(entry["ops"])) == "night"
    assert not set(entry["sources_train"]) & set(entry["sources_test"])
    assert m["sources"]["origin"] == str(photo_dir) and sorted(m["sources"]["train"]) == sorted(entry["sources_train"])
    t = load_tensors(out / concept_id("at night") / "pairs.safetensors")
    for key, n, side in [("train_source", 6, 64), ("train_target", 6, 64), ("test_source", 3, 32), ("test_target", 3, 32)]:
        assert t[key].dtype == torch.uint8 and t[key].shape == (n, 3, side, side), key  # train: canvases
    assert not torch.equal(t["train_source"], t["train_target"])
    other = load_tensors(out / concept_id("van gogh style") / "pairs.safetensors")
    assert torch.equal(other["test_source"], t["test_source"])  # one set of test crops for every concept
    from safetensors import safe_open

    with safe_open(str(out / concept_id("at night") / "pairs.safetensors"), "pt") as f:
        assert f.metadata() == {"concept": "at night"}
    from gan.data import PairedData  # the reader on the other side of the contract

    data = PairedData.load(out)
    assert data.train_source.shape == (12, 3, 64, 64) and data.image_shape == (3, 32, 32)
    src, tgt = next(data.sampler(5, seed=0))
    assert src.shape == tgt.shape == (5, 3, 32, 32)


class _Interrupting:
    """Wraps an editor; raises KeyboardInterrupt on the n-th concept, like Ctrl-C mid-run."""

    def __init__(self, inner, fail_on):
        self.inner, self.fail_on, self.calls, self.name = inner, fail_on, 0, inner.name

    def describe(self):
        return self.inner.describe()

    def edit(self, sources, concept, seed=None):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        return self.inner.edit(sources, concept, seed)


def test_interrupted_run_resumes_and_leaves_nothing_half_written(tmp_path, photo_dir, editor):
    out = tmp_path / "ds"
    cfg = PairsConfig(out=str(out), editor="procedural", image_size=32, n_train=4, n_test=2, seed=0,
                      sources=str(photo_dir))
    concepts = ["pencil sketch", "made of gold", "in the rain"]
    with pytest.raises(KeyboardInterrupt):
        build_pairs(concepts, cfg, editor=_Interrupting(editor, fail_on=2))
    assert list(read_json(out / "manifest.json")["concepts"]) == [concept_id("pencil sketch")]
    assert not list(out.rglob("*.tmp")) and not (out / concept_id("made of gold")).exists()
    first = (out / concept_id("pencil sketch") / "pairs.safetensors").read_bytes()

    report = build_pairs(concepts, cfg, editor=editor)
    assert report.resumed == [concept_id("pencil sketch")]
    assert report.built == [concept_id("made of gold"), concept_id("in the rain")]
    assert (out / concept_id("pencil sketch") / "pairs.safetensors").read_bytes() == first
    assert len(read_json(out / "manifest.json")["concepts"]) == 3

    # same folder, other settings: refused with the reason, unless --overwrite
    with pytest.raises(USER_ERRORS, match=r"seed=0 \(asked 1\).*--overwrite"):
        build_pairs(concepts[:1], PairsConfig(**{**cfg.__dict__, "seed": 1}), editor=editor)
    report = build_pairs(concepts[:1], PairsConfig(**{**cfg.__dict__, "seed": 1, "overwrite": True}), editor=editor)
    m = read_json(out / "manifest.json")
    assert m["seed"] == 1 and list(m["concepts"]) == report.built == [concept_id("pencil sketch")]
    assert not (out / concept_id("in the rain")).exists()


def test_bad_concept_lists(tmp_path, editor):
    cfg = PairsConfig(out=str(tmp_path / "ds"), editor="procedural", image_size=32, n_train=2, n_test=1)
    with pytest.raises(USER_ERRORS, match="concept #2 is empty"):
        build_pairs(["at night", "   "], cfg, editor=editor)
    assert not (tmp_path / "ds").exists()
    with pytest.raises(USER_ERRORS, match="no concepts"):
        build_pairs([], cfg, editor=editor)
    with pytest.raises(USER_ERRORS, match="unknown editor"):
        PairsConfig(out="x", editor="dall-e")
    text_file = tmp_path / "c.txt"
    text_file.write_text("# my concepts\nvan gogh style\n\n  at night  \n")
    assert read_concepts_file(text_file) == ["van gogh style", "at night"]
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"concepts": [{"text": "made of gold"}, {"text": "pixel art"}]}))
    assert read_concepts_file(json_file) == ["made of gold", "pixel art"]
    json_file.write_text("[1, 2")
    with pytest.raises(USER_ERRORS, match="corrupt JSON"):
        read_concepts_file(json_file)


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    return e.value.code, capsys.readouterr()


def test_cli_builds_resumes_and_reports_errors(tmp_path, photo_dir, capsys):
    out = tmp_path / "ds"
    args = ["pairs", "-o", str(out), "--image-size", "32", "--n-train", "3", "--n-test", "2", "--sources", str(photo_dir)]
    code, io = _cli(args + ["-c", "film noir", "-c", "東京の夜"], capsys)
    assert code in (0, None), io.err
    assert "2 concept(s) built" in io.err
    m = read_json(out / "manifest.json")
    assert m["editor"] == "bank" and m["editor_config"]["name"] == "bank"  # the default editor
    assert m["editor_options"]["style_image_sha256"] is None and m["editor_options"]["top_k"] == 3
    assert "film noir: noir 1.00" in io.err  # each concept's ops and weights, printed while building
    code, io = _cli(args + ["-c", "film noir", "-c", "golden hour"], capsys)
    assert code in (0, None) and "1 concept(s) built, 1 already present" in io.err
    assert len(read_json(out / "manifest.json")["concepts"]) == 3

    code, io = _cli(args + ["-c", "  "], capsys)
    assert code == 1 and "error: concept #1 is empty" in io.err
    code, io = _cli(["pairs", "-o", str(out), "--sources", str(tmp_path / "missing"), "-c", "x"], capsys)
    assert code == 1 and "error: sources folder not found" in io.err
    code, io = _cli(["pairs", "-o", str(out)], capsys)
    assert code == 1 and "no concepts" in io.err
    code, io = _cli(args + ["--seed", "5", "-c", "film noir"], capsys)
    assert code == 1 and "--overwrite" in io.err


def test_cli_reads_a_prompt_set_split(tmp_path, photo_dir, capsys):
    concepts = [
        {"id": concept_id(t), "text": t, "category": "style", "parent": None, "paraphrases": [f"{t} look"], "split": s}
        for t, s in [("pixel art", "train"), ("watercolor painting", "heldout"), ("at night", "heldout")]
    ]
    prompt_file = tmp_path / "concepts.json"
    prompt_file.write_text(json.dumps({"format": "weightgen-prompts", "version": "1", "build_command": "test",
                                       "categories": ["style", "character", "appearance"], "concepts": concepts}))
    out = tmp_path / "ds"
    code, io = _cli(["pairs", "-o", str(out), "--prompt-set", "heldout", "--prompt-file", str(prompt_file),
                     "--image-size", "32", "--n-train", "2", "--n-test", "1", "--sources", str(photo_dir)], capsys)
    assert code in (0, None), io.err
    texts = [c["text"] for c in read_json(out / "manifest.json")["concepts"].values()]
    assert texts == ["watercolor painting", "at night"]
