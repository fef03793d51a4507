"""The instruct-pix2pix editor on a tiny random pipeline built offline (as diffusers' tests do)."""

import pytest
import torch

from gan.io import load_tensors, read_json
from prompts.identity import concept_id
from weightgen.errors import USER_ERRORS
from weightgen.pairs.build import build_pairs
from weightgen.pairs.config import PairsConfig
from weightgen.pairs.editors.instruct_pix2pix import (
    InstructPix2PixEditor,
    clip_tokenizer_from_open_clip,
    save_tiny_random_pipeline,
)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    return save_tiny_random_pipeline(tmp_path_factory.mktemp("ip2p") / "tiny")


def test_clip_tokenizer_from_open_clip_vocab(tmp_path):
    import open_clip

    tok = clip_tokenizer_from_open_clip(tmp_path)
    assert len(tok) == 49408
    text = "make it van gogh style"
    reference = open_clip.get_tokenizer("ViT-B-32")([text])[0]
    ids = tok(text)["input_ids"]
    assert ids == reference[: len(ids)].tolist()


def test_tiny_pipeline_edits_batched_and_seeded(tiny_pipeline):
    editor = InstructPix2PixEditor(model=str(tiny_pipeline), steps=2, work_size=32, batch_size=2, device="cpu")
    src = (torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    out = editor.edit(src, "van gogh style", seed=0)
    assert out.shape == src.shape and out.dtype == torch.uint8
    assert torch.equal(out, editor.edit(src, "van gogh style", seed=0))
    assert not torch.equal(out, editor.edit(src, "van gogh style", seed=1))
    # each image has its own generator: the batch size does not change the result
    one_by_one = InstructPix2PixEditor(pipeline=editor.pipe, steps=2, work_size=32, batch_size=1, device="cpu")
    assert (one_by_one.edit(src, "van gogh style", seed=0).int() - out.int()).abs().max() <= 2
    with pytest.raises(USER_ERRORS, match="empty concept"):
        editor.edit(src, " ")


def test_pairs_with_the_diffusion_editor(tmp_path, tiny_pipeline):
    options = {"model": str(tiny_pipeline), "steps": 2, "work_size": 32, "batch_size": 4, "device": "cpu"}
    cfg = PairsConfig(out=str(tmp_path / "ds"), editor="instruct-pix2pix", image_size=32, n_train=3, n_test=2,
                      editor_options=options)
    report = build_pairs(["at night"], cfg)
    assert report.built == [concept_id("at night")]
    m = read_json(tmp_path / "ds" / "manifest.json")
    assert m["editor"] == "instruct-pix2pix" and m["editor_config"]["steps"] == 2
    t = load_tensors(tmp_path / "ds" / concept_id("at night") / "pairs.safetensors")
    assert t["train_target"].shape == (3, 3, 64, 64) and t["test_target"].shape == (2, 3, 32, 32)  # canvases, crops


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(USER_ERRORS, match="model folder not found"):
        InstructPix2PixEditor(model=str(tmp_path / "nope"))
    with pytest.raises(USER_ERRORS, match="local Hugging Face cache"):
        InstructPix2PixEditor(model="someone/not-a-cached-model")
